package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/IBM/sarama"
	"github.com/caarlos0/env/v11"
	"github.com/cloudevents/sdk-go/protocol/kafka_sarama/v2"
	cejs "github.com/cloudevents/sdk-go/protocol/nats_jetstream/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/term"

	"github.com/mistbridge/mistbridge/codec"
	"github.com/mistbridge/mistbridge/sinks/kafkasink"
	"github.com/mistbridge/mistbridge/sinks/natssink"
)

// tailUsage is printed by `mistbridge tail -h` and on a usage error.
const tailUsage = `Usage: mistbridge tail [--kafka [--from-beginning]] [--topic T[,T...]] [--org ID] [--site ID]
                       [--json] [--count N] [--color auto|always|never]
                       [--nats-url URL] [--nats-creds FILE] [--brokers HOST:PORT[,...]]

Prints the CloudEvents the bridge publishes, one line each, as a consumer
reads them (decoded with the CloudEvents SDK's NATS or Kafka binding):

  2023-11-14T22:13:20Z device-events site=<site> type=AP_RESTARTED mac=... text="..."

time, webhook topic, site, then the event's type, mac and text members
when it has them, else its first 80 bytes. Colour when stdout is a terminal
(unless NO_COLOR is set). --json prints each whole CloudEvent in its
structured JSON form instead, one per line.

NATS (the default): a core subscription on <prefix>.<topic>.<org>.<site>
(default <prefix>.>), so it shows events as they are published, with core
NATS or JetStream alike; it has no history. With MISTBRIDGE_NATS_URL unset
it reads the embedded server at MISTBRIDGE_NATS_EMBEDDED_ADDR.

Kafka (--kafka): the topics of MISTBRIDGE_KAFKA_TOPIC_TEMPLATE (every
mist.<topic> by default, topics created later included), from now (records
stamped after tail started) or, with --from-beginning, from the start.

Connection settings are the bridge's own variables: MISTBRIDGE_NATS_URL,
_CREDS_FILE, _TOKEN, _TLS_CA_FILE, _SUBJECT_PREFIX; MISTBRIDGE_KAFKA_BROKERS,
_TOPIC_TEMPLATE, _TLS, _TLS_CA_FILE, _TLS_CERT_FILE, _TLS_KEY_FILE,
_TLS_INSECURE_SKIP_VERIFY, _SASL_MECHANISM, _SASL_USERNAME, _SASL_PASSWORD.
The flags override the addresses. Stops after --count events, or on Ctrl-C.

Flags:
  --kafka            read Kafka instead of NATS
  --from-beginning   Kafka only: read each topic from its start
  --topic T          webhook topic(s), e.g. device-events (repeat or comma-separate)
  --org ID           only this org id (as the event gives it)
  --site ID          only this site id (as the event gives it)
  --json             print each CloudEvent as a JSON line
  --count N          stop after N events (0: never)
  --color MODE       auto (default), always or never
  --nats-url URL     overrides MISTBRIDGE_NATS_URL
  --nats-creds FILE  overrides MISTBRIDGE_NATS_CREDS_FILE
  --brokers LIST     overrides MISTBRIDGE_KAFKA_BROKERS
`

// exitTailFailed is tail's exit code when it cannot connect or read.
const exitTailFailed = 1

// Bounds of tail's work and output.
const (
	// tailSummaryBytes is how much of an event's data a line shows when the
	// event has none of the members tail picks out.
	tailSummaryBytes = 80
	// tailMaxShownRunes cuts a long text or site on a line.
	tailMaxShownRunes = 120
	// tailConnectTimeout bounds the first connection to NATS or Kafka, so a
	// wrong address fails instead of waiting in silence.
	tailConnectTimeout = 10 * time.Second
	// tailNatsPending bounds the messages waiting to be printed: past it
	// nats.go drops messages (tail says how many) rather than block its
	// reader or grow without bound.
	tailNatsPending = 4096
	// tailKafkaMetadataMaxAge is how soon a topic created while tail runs is
	// found (the client's default is 5 minutes).
	tailKafkaMetadataMaxAge = 5 * time.Second
)

// tailOptions is tail's command line.
type tailOptions struct {
	kafka         bool
	fromBeginning bool
	topics        []string
	org, site     string
	orgSet        bool // --org was given (an empty id is a filter too)
	siteSet       bool
	json          bool
	count         int
	color         string
	natsURL       string
	natsCreds     string
	brokers       string

	// onRead, when set, is called after each message is read and handled
	// (shown or filtered out), with the totals so far. Tests synchronise on it.
	onRead func(read, shown int)
}

// tailCommand runs `mistbridge tail` with args (after "tail") until SIGINT
// or SIGTERM, or --count events, and returns the exit code: 0 when it
// stopped so, 2 for a usage or configuration error, 1 when it could not
// connect or read.
func tailCommand(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runTail(ctx, args, environMap(), stdout, stderr, nil)
}

// runTail is tailCommand with its context, environment and, for tests,
// an onRead hook.
func runTail(ctx context.Context, args []string, environ map[string]string, stdout, stderr io.Writer, onRead func(read, shown int)) int {
	errw := &tailLockedWriter{w: stderr} // nats.go's handlers write from their own goroutines
	o, code := parseTailArgs(args, stdout, errw)
	if code >= 0 {
		return code
	}
	o.onRead = onRead
	p := &tailPrinter{w: stdout, json: o.json, color: tailUseColor(stdout, o.color, environ)}
	if o.kafka {
		return tailKafka(ctx, o, environ, p, errw)
	}
	return tailNATS(ctx, o, environ, p, errw)
}

// parseTailArgs parses args; a code of 0 or more means stop with it.
func parseTailArgs(args []string, stdout, stderr io.Writer) (tailOptions, int) {
	var o tailOptions
	fs := flag.NewFlagSet("mistbridge tail", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.BoolVar(&o.kafka, "kafka", false, "")
	fs.BoolVar(&o.fromBeginning, "from-beginning", false, "")
	fs.Func("topic", "", func(s string) error {
		for _, t := range strings.Split(s, ",") {
			if t = strings.TrimSpace(t); t != "" {
				o.topics = append(o.topics, t)
			}
		}
		return nil
	})
	fs.Func("org", "", func(s string) error { o.org, o.orgSet = s, true; return nil })
	fs.Func("site", "", func(s string) error { o.site, o.siteSet = s, true; return nil })
	fs.BoolVar(&o.json, "json", false, "")
	fs.IntVar(&o.count, "count", 0, "")
	fs.StringVar(&o.color, "color", "auto", "")
	fs.StringVar(&o.natsURL, "nats-url", "", "")
	fs.StringVar(&o.natsCreds, "nats-creds", "", "")
	fs.StringVar(&o.brokers, "brokers", "", "")
	usage := func(format string, a ...any) (tailOptions, int) {
		fmt.Fprintf(stderr, "mistbridge tail: "+format+"\n\n%s", append(a, tailUsage)...)
		return o, exitUsage
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, tailUsage)
			return o, exitOK
		}
		return usage("%v", err)
	}
	switch {
	case fs.NArg() > 0:
		return usage("unexpected argument %q", fs.Arg(0))
	case o.count < 0:
		return usage("--count=%d: want 0 (no limit) or more", o.count)
	case o.color != "auto" && o.color != "always" && o.color != "never":
		return usage("--color=%q: want auto, always or never", o.color)
	case o.fromBeginning && !o.kafka:
		return usage("--from-beginning needs --kafka: a NATS subscription has no history (JetStream keeps it: nats stream view)")
	case o.kafka && (o.natsURL != "" || o.natsCreds != ""):
		return usage("--nats-url and --nats-creds are for NATS, not --kafka")
	case !o.kafka && o.brokers != "":
		return usage("--brokers needs --kafka")
	}
	for _, t := range o.topics {
		if err := codec.ValidateTopic(t); err != nil {
			return usage("--topic %q: %v", t, err)
		}
	}
	return o, -1
}

// tailNATS subscribes and prints until ctx ends or o.count events.
func tailNATS(ctx context.Context, o tailOptions, environ map[string]string, p *tailPrinter, stderr io.Writer) int {
	var cfg natssink.Config
	if err := env.ParseWithOptions(&cfg, env.Options{Prefix: envPrefix + "NATS_", Environment: environ}); err != nil {
		fmt.Fprintf(stderr, "mistbridge tail: invalid configuration:\n%s\n", indent(explainParseError(err, environ).Error()))
		return exitUsage
	}
	if o.natsURL != "" {
		cfg.URL = o.natsURL
	}
	if o.natsCreds != "" {
		cfg.CredsFile, cfg.Token = o.natsCreds, ""
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "mistbridge tail: invalid configuration:\n%s\n", indent(err.Error()))
		return exitUsage
	}
	url := cfg.URL
	if url == "" {
		url = tailEmbeddedURL(cmp.Or(cfg.EmbeddedAddr, natssink.DefaultEmbeddedAddr))
	}
	prefix := cmp.Or(cfg.SubjectPrefix, natssink.DefaultSubjectPrefix)

	opts := []nats.Option{
		nats.Name("mistbridge-tail"),
		nats.Timeout(tailConnectTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				fmt.Fprintf(stderr, "tail: disconnected from NATS: %v (reconnecting)\n", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			fmt.Fprintf(stderr, "tail: reconnected to %s; events published meanwhile were missed\n", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrSlowConsumer) && sub != nil {
				if n, err := sub.Dropped(); err == nil {
					fmt.Fprintf(stderr, "tail: too slow to keep up: %d messages dropped so far on %s\n", n, sub.Subject)
					return
				}
			}
			fmt.Fprintf(stderr, "tail: NATS: %v\n", err)
		}),
	}
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.Token != "" {
		opts = append(opts, nats.Token(cfg.Token))
	}
	if cfg.TLSCAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.TLSCAFile))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		fmt.Fprintf(stderr, "mistbridge tail: connect to NATS at %s: %v\n", natssink.RedactURL(url), err)
		return exitTailFailed
	}
	defer nc.Close()

	msgs := make(chan *nats.Msg, tailNatsPending)
	subjects := tailNatsSubjects(prefix, o)
	for _, s := range subjects {
		if _, err := nc.ChanSubscribe(s, msgs); err != nil {
			fmt.Fprintf(stderr, "mistbridge tail: subscribe to %s: %v\n", s, err)
			return exitTailFailed
		}
	}
	// Once the server has answered a flush, it has every subscription:
	// what is published from now on is shown.
	if err := nc.FlushTimeout(tailConnectTimeout); err != nil {
		fmt.Fprintf(stderr, "mistbridge tail: subscribe on %s: %v\n", nc.ConnectedUrlRedacted(), err)
		return exitTailFailed
	}
	fmt.Fprintf(stderr, "tail: subscribed to %s on %s (Ctrl-C to stop)\n", strings.Join(subjects, ", "), nc.ConnectedUrlRedacted())

	var read, shown int
	defer func() { fmt.Fprintf(stderr, "tail: %d events shown\n", shown) }()
	for o.count == 0 || shown < o.count {
		var m *nats.Msg
		select {
		case <-ctx.Done():
			return exitOK
		case m = <-msgs:
		}
		read++
		ev, err := binding.ToEvent(ctx, cejs.NewMessage(tailPercentDecoded(m)))
		if err != nil {
			fmt.Fprintf(stderr, "tail: skipped a message on %s: not a CloudEvent: %v\n", tailClean(m.Subject), err)
		} else {
			if err := p.print(ev); err != nil {
				fmt.Fprintf(stderr, "mistbridge tail: %v\n", err)
				return exitTailFailed
			}
			shown++
		}
		if o.onRead != nil {
			o.onRead(read, shown)
		}
	}
	return exitOK
}

// tailPercentDecoded is m with its ce- header values percent-decoded, as
// the CloudEvents NATS binding (section 3.1.3.2) has binary-mode values
// written and the bridge writes them. The SDK's nats_jetstream binding
// (v2.16.2) reads the values as they are, so an id with a space would show
// as "%20" and the source's own escapes twice encoded. A value that is not
// valid percent-encoding is kept as it is.
func tailPercentDecoded(m *nats.Msg) *nats.Msg {
	if m.Header.Get(codec.NATSPrefix+"specversion") == "" {
		return m // structured mode: the attributes are in the body
	}
	h := make(nats.Header, len(m.Header))
	for k, vs := range m.Header {
		if !strings.HasPrefix(k, codec.NATSPrefix) {
			h[k] = vs
			continue
		}
		out := make([]string, len(vs))
		for i, v := range vs {
			if d, err := url.PathUnescape(v); err == nil && utf8.ValidString(d) {
				v = d
			}
			out[i] = v
		}
		h[k] = out
	}
	return &nats.Msg{Subject: m.Subject, Reply: m.Reply, Header: h, Data: m.Data}
}

// tailNatsSubjects are the subjects to subscribe to: the bridge's subject
// layout with each filter encoded as the bridge encodes it, "*" for the
// others; "<prefix>.>" without filters.
func tailNatsSubjects(prefix string, o tailOptions) []string {
	if len(o.topics) == 0 && !o.orgSet && !o.siteSet {
		return []string{prefix + ".>"}
	}
	org, site := "*", "*"
	if o.orgSet {
		org = codec.SubjectToken(o.org, true)
	}
	if o.siteSet {
		site = codec.SubjectToken(o.site, true)
	}
	topics := o.topics
	if len(topics) == 0 {
		topics = []string{"*"}
	}
	out := make([]string, len(topics))
	for i, t := range topics {
		// Topics passed ValidateTopic, so the bridge writes them as they are.
		out[i] = prefix + "." + t + "." + org + "." + site
	}
	return out
}

// tailEmbeddedURL is where a client on this host reaches an embedded server
// listening on addr: a wildcard host becomes the loopback address.
func tailEmbeddedURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "nats://" + addr // Validate accepted it; let nats.go say what is wrong
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "nats://" + net.JoinHostPort(host, port)
}

// tailKafka consumes and prints until ctx ends or o.count events.
func tailKafka(ctx context.Context, o tailOptions, environ map[string]string, p *tailPrinter, stderr io.Writer) int {
	var cfg kafkasink.Config
	if err := env.ParseWithOptions(&cfg, env.Options{Prefix: envPrefix + "KAFKA_", Environment: environ}); err != nil {
		fmt.Fprintf(stderr, "mistbridge tail: invalid configuration:\n%s\n", indent(explainParseError(err, environ).Error()))
		return exitUsage
	}
	if o.brokers != "" {
		cfg.Brokers = strings.Split(o.brokers, ",")
	}
	for i := range cfg.Brokers {
		cfg.Brokers[i] = strings.TrimSpace(cfg.Brokers[i])
	}
	if len(cfg.Brokers) == 0 {
		fmt.Fprintf(stderr, "mistbridge tail: no Kafka brokers: set --brokers or %sKAFKA_BROKERS (host:port[,host:port...])\n", envPrefix)
		return exitUsage
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "mistbridge tail: invalid configuration:\n%s\n", indent(err.Error()))
		return exitUsage
	}
	template := cmp.Or(cfg.TopicTemplate, kafkasink.DefaultTopicTemplate)

	opts, err := kafkaClientOptions(cfg, "mistbridge-tail")
	if err != nil {
		fmt.Fprintf(stderr, "mistbridge tail: %v\n", err)
		return exitUsage
	}
	opts = append(opts, kgo.MetadataMaxAge(tailKafkaMetadataMaxAge), kgo.FetchMaxWait(500*time.Millisecond))
	var what string
	if len(o.topics) > 0 {
		topics := make([]string, len(o.topics))
		for i, t := range o.topics {
			topics[i] = codec.KafkaTopic(template, t)
		}
		opts = append(opts, kgo.ConsumeTopics(topics...))
		what = "topics " + strings.Join(topics, ", ")
	} else {
		re := tailKafkaTopicRegex(template)
		opts = append(opts, kgo.ConsumeRegex(), kgo.ConsumeTopics(re))
		what = "topics matching " + re
	}
	if o.fromBeginning {
		opts = append(opts, kgo.ConsumeStartOffset(kgo.NewOffset().AtStart()))
		what += " from the beginning"
	} else {
		// The end of the partitions that exist, and the start of those
		// created later, without a gap between starting and listing the
		// end offsets (franz-go's own recipe).
		opts = append(opts, kgo.ConsumeStartOffset(kgo.NewOffset().AfterMilli(time.Now().UnixMilli())))
		what += " from now"
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		fmt.Fprintf(stderr, "mistbridge tail: kafka: %v\n", err)
		return exitUsage
	}
	defer cl.Close()
	pctx, cancel := context.WithTimeout(ctx, tailConnectTimeout)
	err = cl.Ping(pctx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return exitOK
		}
		fmt.Fprintf(stderr, "mistbridge tail: reach Kafka at %s: %v\n", strings.Join(cfg.Brokers, ","), err)
		return exitTailFailed
	}
	fmt.Fprintf(stderr, "tail: reading Kafka %s (Ctrl-C to stop)\n", what)

	f := tailKafkaFilter{org: o.org, site: o.site, orgSet: o.orgSet, siteSet: o.siteSet}
	var read, shown int
	defer func() { fmt.Fprintf(stderr, "tail: %d events shown (%d records read)\n", shown, read) }()
	warned := map[string]bool{}
	for o.count == 0 || shown < o.count {
		fs := cl.PollFetches(ctx)
		if fs.IsClientClosed() || ctx.Err() != nil {
			return exitOK
		}
		var fatal error
		fs.EachError(func(topic string, part int32, err error) {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return
			}
			var ke *kerr.Error
			if errors.As(err, &ke) && !ke.Retriable {
				fatal = fmt.Errorf("%s[%d]: %w", topic, part, err)
				return
			}
			// The client retries these by itself; say so once.
			if msg := err.Error(); !warned[msg] {
				warned[msg] = true
				fmt.Fprintf(stderr, "tail: kafka: %s (retrying)\n", msg)
			}
		})
		if fatal != nil {
			fmt.Fprintf(stderr, "mistbridge tail: kafka: %v\n", fatal)
			return exitTailFailed
		}
		for it := fs.RecordIter(); !it.Done(); {
			rec := it.Next()
			read++
			ev, err := binding.ToEvent(ctx, kafka_sarama.NewMessageFromConsumerMessage(tailConsumerMessage(rec)))
			switch {
			case err != nil:
				fmt.Fprintf(stderr, "tail: skipped record %s[%d]@%d: not a CloudEvent: %v\n", rec.Topic, rec.Partition, rec.Offset, err)
			case f.match(ev):
				if err := p.print(ev); err != nil {
					fmt.Fprintf(stderr, "mistbridge tail: %v\n", err)
					return exitTailFailed
				}
				shown++
			}
			if o.onRead != nil {
				o.onRead(read, shown)
			}
			if o.count > 0 && shown >= o.count {
				return exitOK
			}
		}
	}
	return exitOK
}

// tailKafkaTopicRegex matches the Kafka topics template yields for every
// webhook topic ([codec.ValidateTopic]'s alphabet), and no others: not the
// dead-letter topic.
func tailKafkaTopicRegex(template string) string {
	before, after, _ := strings.Cut(template, codec.TopicPlaceholder)
	return "^" + regexp.QuoteMeta(before) + "[A-Za-z0-9_-]+" + regexp.QuoteMeta(after) + "$"
}

// tailConsumerMessage is rec as the sarama consumer would have returned it,
// which the CloudEvents kafka_sarama binding reads.
func tailConsumerMessage(rec *kgo.Record) *sarama.ConsumerMessage {
	cm := &sarama.ConsumerMessage{
		Topic:     rec.Topic,
		Partition: rec.Partition,
		Offset:    rec.Offset,
		Key:       rec.Key,
		Value:     rec.Value,
		Timestamp: rec.Timestamp,
		Headers:   make([]*sarama.RecordHeader, len(rec.Headers)),
	}
	for i, h := range rec.Headers {
		cm.Headers[i] = &sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value}
	}
	return cm
}

// tailKafkaFilter selects events by the mistorg and mistsite attributes (the
// ce_mistorg and ce_mistsite headers in binary mode), which carry the ids
// through [codec.BoundValue]. An empty id is never carried, so --org ""
// selects the events without one.
type tailKafkaFilter struct {
	org, site       string
	orgSet, siteSet bool
}

func (f tailKafkaFilter) match(ev *event.Event) bool {
	return (!f.orgSet || tailExtension(ev, codec.ExtOrg) == codec.BoundValue(f.org)) &&
		(!f.siteSet || tailExtension(ev, codec.ExtSite) == codec.BoundValue(f.site))
}

// tailExtension is ev's extension name as a string, "" when it has none.
func tailExtension(ev *event.Event, name string) string {
	v, ok := ev.Extensions()[name]
	if !ok {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

// tailUseColor decides colour: never for "never", always for "always", and
// for "auto" when w is a terminal and NO_COLOR (no-color.org) is unset.
func tailUseColor(w io.Writer, mode string, environ map[string]string) bool {
	switch mode {
	case "always":
		return true
	case "never":
		return false
	}
	if v, ok := environ["NO_COLOR"]; ok && v != "" {
		return false
	}
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// ANSI SGR sequences of the readable lines.
const (
	tailSgrDim    = "\x1b[2m"
	tailSgrCyan   = "\x1b[36m"
	tailSgrYellow = "\x1b[33m"
	tailSgrReset  = "\x1b[0m"
)

// tailPrinter writes events to w, one line each. Everything an event carries
// is escaped before it reaches a terminal: a sender cannot write control
// sequences there.
type tailPrinter struct {
	w     io.Writer
	json  bool
	color bool
	buf   []byte
}

func (p *tailPrinter) print(ev *event.Event) error {
	var line []byte
	if p.json {
		b, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("event %s as JSON: %w", tailClean(ev.ID()), err)
		}
		line = append(b, '\n')
	} else {
		line = p.appendLine(p.buf[:0], ev)
		p.buf = line
	}
	if _, err := p.w.Write(line); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// appendLine appends the readable line of ev: time, topic, site, summary.
func (p *tailPrinter) appendLine(b []byte, ev *event.Event) []byte {
	when := "-"
	if t := ev.Time(); !t.IsZero() {
		when = t.UTC().Format(time.RFC3339Nano)
	}
	topic, ok := strings.CutPrefix(ev.Type(), codec.TypePrefix)
	if !ok {
		topic = ev.Type()
	}
	site := "-"
	if s := tailExtension(ev, codec.ExtSite); s != "" {
		site = tailValue(s)
	}
	b = p.appendField(b, tailSgrDim, when)
	b = append(b, ' ')
	b = p.appendField(b, tailSgrCyan, tailClean(tailShorten(topic)))
	b = append(b, " site="...)
	b = p.appendField(b, tailSgrYellow, site)
	if s := tailSummary(ev.Data()); s != "" {
		b = append(b, ' ')
		b = append(b, s...)
	}
	return append(b, '\n')
}

func (p *tailPrinter) appendField(b []byte, sgr, s string) []byte {
	if !p.color {
		return append(b, s...)
	}
	b = append(b, sgr...)
	b = append(b, s...)
	return append(b, tailSgrReset...)
}

// tailSummaryMembers are the members of a Mist event a line shows, in order.
var tailSummaryMembers = []string{"type", "mac", "text"}

// tailSummary is type=... mac=... text=... for the members data has (strings,
// numbers or booleans at its top level), else its first tailSummaryBytes bytes
// with whitespace runs folded.
func tailSummary(data []byte) string {
	var obj map[string]json.RawMessage
	if json.Unmarshal(data, &obj) == nil {
		var parts []string
		for _, k := range tailSummaryMembers {
			raw, ok := obj[k]
			if !ok {
				continue
			}
			var v any
			if json.Unmarshal(raw, &v) != nil {
				continue
			}
			switch v := v.(type) {
			case string:
				parts = append(parts, k+"="+tailValue(v))
			case float64, bool:
				parts = append(parts, k+"="+string(raw))
			}
		}
		if len(parts) > 0 {
			return strings.Join(parts, " ")
		}
	}
	s := strings.Join(strings.Fields(string(data)), " ")
	if len(s) > tailSummaryBytes {
		cut := tailSummaryBytes
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return tailClean(s[:cut]) + "…"
	}
	return tailClean(s)
}

// tailValue is s as a logfmt value: bare when it is a plain token, else
// quoted with Go's escapes (which leave no control character).
func tailValue(s string) string {
	s = tailShorten(s)
	if s == "" {
		return `""`
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.:/@+", c) >= 0) {
			return strconv.Quote(s)
		}
	}
	return s
}

// tailShorten cuts s to tailMaxShownRunes runes, marking the cut with "…".
func tailShorten(s string) string {
	if utf8.RuneCountInString(s) <= tailMaxShownRunes {
		return s
	}
	n := 0
	for i := range s {
		if n == tailMaxShownRunes {
			return s[:i] + "…"
		}
		n++
	}
	return s
}

// tailClean escapes what is not printable in s (control characters, invalid
// UTF-8) as Go does in a quoted string, without quoting the rest.
func tailClean(s string) string {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size <= 1 || !unicode.IsPrint(r) {
			return tailCleanSlow(s)
		}
		i += size
	}
	return s
}

func tailCleanSlow(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case !unicode.IsPrint(r):
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// tailLockedWriter serialises writes to w.
type tailLockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *tailLockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
