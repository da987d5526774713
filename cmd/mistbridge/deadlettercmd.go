package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mistbridge/mistbridge/codec"
	"github.com/mistbridge/mistbridge/sinks"
	"github.com/mistbridge/mistbridge/sinks/kafkasink"
	"github.com/mistbridge/mistbridge/sinks/natssink"
)

// deadletterUsage is printed by `mistbridge deadletter -h` and on a usage error.
const deadletterUsage = `Usage: mistbridge deadletter list [--json] [--limit N] [--sink nats|kafka]
       mistbridge deadletter replay (--id ID ... | --all) [--sink nats|kafka]

Events a broker refused permanently (too large, an invalid or forbidden
destination) are kept in the dead-letter destination of the sink that
refused them, with their CloudEvent headers, their data and the headers
mistbridge-error (why) and mistbridge-sink (which sink):
  NATS   the JetStream stream that captures MISTBRIDGE_NATS_DEADLETTER_SUBJECT
         (mistbridge.deadletter; by default the stream MIST), read with an
         ordered consumer;
  Kafka  the topic MISTBRIDGE_KAFKA_DEADLETTER_TOPIC (mistbridge.deadletter),
         read from its start.
The sinks and their connections come from the same MISTBRIDGE_ variables
as the bridge (run it in the bridge's environment); with
MISTBRIDGE_NATS_URL unset it reads the running bridge's embedded server.

list     prints each dead letter, oldest first per sink: id, when it was
         dead-lettered, type, sink and reason (--json: one JSON object a line).
         --limit N prints at most N (default 100; 0 for all).
replay   rebuilds each chosen event from its dead letter (the same CloudEvent
         id, attributes and data) and writes it again through the sink named
         in its mistbridge-sink header, retrying transient errors for up to
         MISTBRIDGE_DELIVERY_TIMEOUT; fix the cause first (raise the size
         limit, grant the permission). --id picks events by CloudEvent id
         (repeat it), --all takes every dead letter. An event refused again
         is reported and stays in the dead letter. Progress is shown when
         stderr is a terminal.

Dead letters are never deleted, by replay or anything else in mistbridge:
age them out with the stream's or topic's retention. Replaying twice
writes twice; JetStream drops the copy within its duplicate window
(Nats-Msg-Id is the CloudEvent id), Kafka consumers deduplicate on ce_id.

Exit codes: 0 done, 1 a dead letter could not be read or an event was not
written again (or an --id was not found), 2 bad usage or configuration.
`

// deadLetter is one message of a dead-letter destination.
type deadLetter struct {
	// ID, Type, Source and Topic are the event's CloudEvent id, type,
	// source and misttopic.
	ID     string `json:"id"`
	Type   string `json:"type"`
	Source string `json:"source,omitempty"`
	Topic  string `json:"topic"`
	// EventTime is the event's CloudEvent time, when it has one.
	EventTime time.Time `json:"event_time,omitzero"`
	// Time is when it was dead-lettered: the broker's timestamp.
	Time time.Time `json:"time"`
	// Sink refused it (the mistbridge-sink header); Reason is why (mistbridge-error).
	Sink   string `json:"sink"`
	Reason string `json:"reason"`
	// Where locates the message: the stream and sequence, or the topic,
	// partition and offset.
	Where string `json:"where"`
	// Bytes is the size of the event's data.
	Bytes int `json:"bytes"`

	attrs map[string]string // CloudEvent attributes by name, decoded; nil in structured mode
	body  []byte            // the message payload
	err   error             // why the event cannot be rebuilt
}

// deadletterCommand runs `mistbridge deadletter ...` with args (after
// "deadletter") and returns the exit code.
func deadletterCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		if len(args) == 0 {
			fmt.Fprint(stderr, deadletterUsage)
			return exitUsage
		}
		fmt.Fprint(stdout, deadletterUsage)
		return exitOK
	}
	sub := args[0]
	if sub != "list" && sub != "replay" {
		fmt.Fprintf(stderr, "mistbridge deadletter: unknown subcommand %q\n\n%s", sub, deadletterUsage)
		return exitUsage
	}
	flags := flag.NewFlagSet("mistbridge deadletter "+sub, flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	asJSON := flags.Bool("json", false, "")
	limit := flags.Int("limit", 100, "")
	only := flags.String("sink", "", "")
	all := flags.Bool("all", false, "")
	var ids idList
	flags.Var(&ids, "id", "")
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "mistbridge deadletter %s: "+format+"\n\n%s", append(append([]any{sub}, a...), deadletterUsage)...)
		return exitUsage
	}
	if err := flags.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, deadletterUsage)
			return exitOK
		}
		return usage("%v", err)
	}
	if flags.NArg() > 0 {
		return usage("unexpected argument %q", flags.Arg(0))
	}
	set := map[string]bool{}
	flags.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch sub {
	case "list":
		if set["all"] || set["id"] {
			return usage("--id and --all are for replay")
		}
		if *limit < 0 {
			return usage("--limit %d: want 0 (all) or more", *limit)
		}
	case "replay":
		if set["json"] || set["limit"] {
			return usage("--json and --limit are for list")
		}
		if *all == (len(ids) > 0) {
			return usage("give --id ID (repeatable) or --all")
		}
	}
	cfg, _, err := loadConfig(environMap())
	if err != nil {
		fmt.Fprintf(stderr, "mistbridge deadletter: invalid configuration:\n%s\n", indent(err.Error()))
		return exitUsage
	}
	names := cfg.Sinks
	if *only != "" {
		if !slices.Contains(cfg.Sinks, *only) {
			return usage("--sink %q is not a configured sink (MISTBRIDGE_SINKS=%s)", *only, strings.Join(cfg.Sinks, ","))
		}
		names = []string{*only}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if sub == "list" {
		return listDeadLetters(ctx, cfg, names, *limit, *asJSON, stdout, stderr)
	}
	return replayDeadLetters(ctx, cfg, names, ids, stdout, stderr)
}

// idList is a repeatable --id flag; a value may also list ids separated
// by commas.
type idList []string

func (l *idList) String() string { return strings.Join(*l, ",") }

func (l *idList) Set(s string) error {
	for _, id := range strings.Split(s, ",") {
		if id = strings.TrimSpace(id); id != "" {
			*l = append(*l, id)
		}
	}
	return nil
}

func listDeadLetters(ctx context.Context, cfg config, names []string, limit int, asJSON bool, stdout, stderr io.Writer) int {
	code := exitOK
	var out []deadLetter
	more := false
	for _, name := range names {
		if more {
			break
		}
		err := readDeadLetters(ctx, cfg, name, func(d deadLetter) bool {
			if limit > 0 && len(out) == limit {
				more = true
				return false
			}
			out = append(out, d)
			return true
		})
		if err != nil {
			fmt.Fprintf(stderr, "mistbridge deadletter list: %s: %v\n", name, err)
			code = exitAPI
		}
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		for _, d := range out {
			if err := enc.Encode(d); err != nil {
				fmt.Fprintf(stderr, "mistbridge deadletter list: %v\n", err)
				return exitAPI
			}
		}
	} else {
		printDeadLetters(stdout, out)
	}
	if more {
		fmt.Fprintf(stderr, "more dead letters past the first %d: --limit 0 lists them all\n", limit)
	}
	return code
}

func printDeadLetters(w io.Writer, dls []deadLetter) {
	if len(dls) == 0 {
		fmt.Fprintln(w, "no dead letters")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tDEAD-LETTERED\tTYPE\tSINK\tREASON")
	for _, d := range dls {
		reason := d.Reason
		if len(reason) > 100 {
			reason = reason[:97] + "..."
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.ID, d.Time.UTC().Format(time.RFC3339), d.Type, d.Sink, reason)
	}
	tw.Flush()
}

// readDeadLetters calls fn with each dead letter of the sink named, oldest
// first, until fn returns false or every message there when it started
// has been read.
func readDeadLetters(ctx context.Context, cfg config, name string, fn func(deadLetter) bool) error {
	switch name {
	case natssink.Name:
		return readNATSDeadLetters(ctx, natsConfig(cfg), fn)
	case kafkasink.Name:
		return readKafkaDeadLetters(ctx, cfg.Kafka, fn)
	}
	return fmt.Errorf("unknown sink %q", name)
}

// readIdle bounds the wait for the next messages of a dead-letter
// destination known to hold more.
const readIdle = 10 * time.Second

func readNATSDeadLetters(ctx context.Context, cfg natssink.Config, fn func(deadLetter) bool) error {
	subject := cfg.DeadLetterSubject
	if subject == "" {
		subject = natssink.DefaultDeadLetterSubject
	}
	opts := []nats.Option{nats.Name("mistbridge-deadletter"), nats.Timeout(5 * time.Second)}
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.Token != "" {
		opts = append(opts, nats.Token(cfg.Token))
	}
	if cfg.TLSCAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.TLSCAFile))
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", natssink.RedactURL(cfg.URL), err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	name, err := js.StreamNameBySubject(ctx, subject)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("no JetStream stream captures %s: NATS keeps dead letters only in a stream (with MISTBRIDGE_NATS_JETSTREAM=false they are published and kept nowhere)", subject)
	}
	if err != nil {
		return fmt.Errorf("find the stream of %s: %w", subject, err)
	}
	stream, err := js.Stream(ctx, name)
	if err != nil {
		return fmt.Errorf("stream %s: %w", name, err)
	}
	last, err := stream.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stream %s: the last message on %s: %w", name, subject, err)
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		return fmt.Errorf("stream %s: ordered consumer: %w", name, err)
	}
	idle := time.Now()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch, err := cons.Fetch(256, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return fmt.Errorf("stream %s: fetch: %w", name, err)
		}
		got := false
		for msg := range batch.Messages() {
			got = true
			meta, err := msg.Metadata()
			if err != nil {
				return fmt.Errorf("stream %s: %w", name, err)
			}
			d := natsDeadLetter(msg.Headers(), msg.Data())
			d.Time = meta.Timestamp
			d.Where = fmt.Sprintf("stream %s seq %d", name, meta.Sequence.Stream)
			if !fn(d) || meta.Sequence.Stream >= last.Sequence {
				return nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("stream %s: fetch: %w", name, err)
		}
		if got {
			idle = time.Now()
		} else if time.Since(idle) > readIdle {
			return fmt.Errorf("stream %s: no message for %v before sequence %d", name, readIdle, last.Sequence)
		}
	}
}

// natsDeadLetter reads a dead letter of the NATS binding: ce- headers with
// percent-encoded values.
func natsDeadLetter(h nats.Header, data []byte) deadLetter {
	get := func(k string) (string, bool) {
		vs, ok := h[k]
		if !ok || len(vs) == 0 {
			return "", false
		}
		return vs[0], true
	}
	attrs := map[string]string{}
	for k, vs := range h {
		if name, ok := strings.CutPrefix(k, codec.NATSPrefix); ok && len(vs) > 0 {
			v, err := url.PathUnescape(vs[0])
			if err != nil {
				v = vs[0]
			}
			attrs[name] = v
		}
	}
	ct, _ := get(codec.ContentTypeHeader)
	reason, _ := get(sinks.HeaderDeadLetterReason)
	sink, _ := get(sinks.HeaderDeadLetterSink)
	return newDeadLetter(attrs, ct, data, reason, sink)
}

// newDeadLetter fills a dead letter from its CloudEvent attributes (binary
// mode) or, for content type application/cloudevents+json, its body.
func newDeadLetter(attrs map[string]string, contentType string, body []byte, reason, sink string) deadLetter {
	d := deadLetter{Reason: reason, Sink: sink, body: body, attrs: attrs}
	if strings.HasPrefix(contentType, "application/cloudevents+json") {
		s, err := structuredAttrs(body)
		if err != nil {
			d.err = err
			return d
		}
		d.attrs, d.body = s.attrs, s.data
	}
	d.ID, d.Type, d.Source, d.Topic = d.attrs["id"], d.attrs["type"], d.attrs["source"], d.attrs[codec.ExtTopic]
	if t, err := time.Parse(time.RFC3339Nano, d.attrs["time"]); err == nil {
		d.EventTime = t
	}
	d.Bytes = len(d.body)
	if d.ID == "" || d.Topic == "" {
		d.err = errors.New("not a mistbridge dead letter: it has no CloudEvent id or misttopic")
	}
	return d
}

type structured struct {
	attrs map[string]string
	data  []byte
}

// structuredAttrs reads a CloudEvent in the JSON event format: its
// attributes as strings and its data as the exact bytes of "data".
func structuredAttrs(body []byte) (structured, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return structured{}, fmt.Errorf("structured CloudEvent: %w", err)
	}
	s := structured{attrs: map[string]string{}}
	for k, v := range m {
		switch k {
		case "data":
			s.data = v
		case "data_base64":
			var enc string
			if err := json.Unmarshal(v, &enc); err != nil {
				return structured{}, fmt.Errorf("structured CloudEvent: data_base64: %w", err)
			}
			b, err := base64.StdEncoding.DecodeString(enc)
			if err != nil {
				return structured{}, fmt.Errorf("structured CloudEvent: data_base64: %w", err)
			}
			s.data = b
		default:
			var str string
			if json.Unmarshal(v, &str) == nil {
				s.attrs[k] = str
			}
		}
	}
	return s, nil
}

// event rebuilds the event the bridge published. The CloudEvent id is a
// function of the topic and the data, so mapping the data again gives the
// very event (the org and site ids unbounded, given-but-empty ids told
// from missing ones) whenever it gives the same id; otherwise (an event a
// different codec version mapped) it is built from the headers.
func (d *deadLetter) event() (codec.Event, error) {
	if d.err != nil {
		return codec.Event{}, d.err
	}
	if ev := codec.Map(d.Topic, d.body); ev.ID == d.ID {
		return ev, nil
	}
	org, orgSet := d.attrs[codec.ExtOrg]
	site, siteSet := d.attrs[codec.ExtSite]
	return codec.Event{
		ID: d.ID, Type: d.Type, Source: d.Source, Time: d.EventTime, Topic: d.Topic,
		Org: org, OrgSet: orgSet, Site: site, SiteSet: siteSet, Data: d.body,
	}, nil
}

func readKafkaDeadLetters(ctx context.Context, cfg kafkasink.Config, fn func(deadLetter) bool) error {
	topic := cfg.DeadLetterTopic
	if topic == "" {
		topic = kafkasink.DefaultDeadLetterTopic
	}
	opts, err := kafkaClientOptions(cfg, "mistbridge-deadletter")
	if err != nil {
		return err
	}
	starts, ends, err := kafkaBounds(ctx, opts, topic)
	if err != nil {
		return err
	}
	consume := map[int32]kgo.Offset{}
	for p, end := range ends {
		if end > starts[p] {
			consume[p] = kgo.NewOffset().At(starts[p])
		}
	}
	if len(consume) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(append(opts,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: consume}),
		kgo.FetchMaxWait(time.Second),
	)...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	// The records of each partition, read in offset order; the partitions
	// are merged by offset within each fetch, so a partition's order holds.
	idle := time.Now()
	for len(consume) > 0 {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fetches := cl.PollFetches(pctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return err
		}
		for _, fe := range fetches.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) && !errors.Is(fe.Err, context.Canceled) {
				return fmt.Errorf("topic %s partition %d: %w", fe.Topic, fe.Partition, fe.Err)
			}
		}
		stop := false
		got := false
		fetches.EachRecord(func(r *kgo.Record) {
			if stop {
				return
			}
			if _, want := consume[r.Partition]; !want || r.Offset >= ends[r.Partition] {
				return
			}
			got = true
			d := kafkaDeadLetter(r)
			if !fn(d) {
				stop = true
				return
			}
			if r.Offset+1 >= ends[r.Partition] {
				delete(consume, r.Partition)
			}
		})
		if stop {
			return nil
		}
		if got {
			idle = time.Now()
		} else if time.Since(idle) > readIdle {
			return fmt.Errorf("topic %s: no record for %v with %d partitions not read to their end", topic, readIdle, len(consume))
		}
	}
	return nil
}

func kafkaDeadLetter(r *kgo.Record) deadLetter {
	attrs := map[string]string{}
	var ct, reason, sink string
	for _, h := range r.Headers {
		switch {
		case strings.HasPrefix(h.Key, codec.KafkaPrefix):
			attrs[strings.TrimPrefix(h.Key, codec.KafkaPrefix)] = string(h.Value)
		case h.Key == codec.ContentTypeHeader:
			ct = string(h.Value)
		case h.Key == sinks.HeaderDeadLetterReason:
			reason = string(h.Value)
		case h.Key == sinks.HeaderDeadLetterSink:
			sink = string(h.Value)
		}
	}
	d := newDeadLetter(attrs, ct, r.Value, reason, sink)
	d.Time = r.Timestamp
	d.Where = fmt.Sprintf("topic %s partition %d offset %d", r.Topic, r.Partition, r.Offset)
	return d
}

// kafkaBounds returns the first and the next offset of every partition of
// topic; none when the topic does not exist.
func kafkaBounds(ctx context.Context, opts []kgo.Opt, topic string) (starts, ends map[int32]int64, err error) {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	mreq := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	mreq.Topics = append(mreq.Topics, mt)
	mresp, err := mreq.RequestWith(ctx, cl)
	if err != nil {
		return nil, nil, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	if len(mresp.Topics) != 1 {
		return nil, nil, fmt.Errorf("metadata of %s: %d topics in the answer", topic, len(mresp.Topics))
	}
	if err := kerr.ErrorForCode(mresp.Topics[0].ErrorCode); err != nil {
		if errors.Is(err, kerr.UnknownTopicOrPartition) {
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	offsets := func(ts int64) (map[int32]int64, error) {
		req := kmsg.NewPtrListOffsetsRequest()
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = topic
		for _, p := range mresp.Topics[0].Partitions {
			rp := kmsg.NewListOffsetsRequestTopicPartition()
			rp.Partition = p.Partition
			rp.Timestamp = ts
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return nil, fmt.Errorf("offsets of %s: %w", topic, err)
		}
		out := map[int32]int64{}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					return nil, fmt.Errorf("offsets of %s partition %d: %w", topic, p.Partition, err)
				}
				out[p.Partition] = p.Offset
			}
		}
		return out, nil
	}
	if starts, err = offsets(-2); err != nil { // earliest
		return nil, nil, err
	}
	if ends, err = offsets(-1); err != nil { // latest
		return nil, nil, err
	}
	return starts, ends, nil
}

// dlKey names one event of one sink: the same event dead-lettered twice
// is written again once.
type dlKey struct{ sink, id string }

func replayDeadLetters(ctx context.Context, cfg config, names []string, ids []string, stdout, stderr io.Writer) int {
	code := exitOK
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	found := map[string]bool{}
	var picked []deadLetter
	seen := map[dlKey]bool{}
	letters := 0
	for _, name := range names {
		err := readDeadLetters(ctx, cfg, name, func(d deadLetter) bool {
			if len(want) > 0 && !want[d.ID] {
				return true
			}
			letters++
			found[d.ID] = true
			k := dlKey{d.Sink, d.ID}
			if !seen[k] {
				seen[k] = true
				picked = append(picked, d)
			}
			return true
		})
		if err != nil {
			fmt.Fprintf(stderr, "mistbridge deadletter replay: reading the dead letters of %s: %v\n", name, err)
			code = exitAPI
		}
	}
	for _, id := range ids {
		if !found[id] {
			fmt.Fprintf(stderr, "mistbridge deadletter replay: no dead letter of event %s\n", id)
			code = exitAPI
		}
	}
	if len(picked) == 0 {
		fmt.Fprintln(stdout, "no dead letters to replay")
		return code
	}

	// Group by the sink that refused each event, keeping their order.
	bySink := map[string][]*deadLetter{}
	var sinkNames []string
	failed := 0
	for i := range picked {
		d := &picked[i]
		if _, err := d.event(); err != nil {
			fmt.Fprintf(stderr, "mistbridge deadletter replay: %s (%s): %v\n", d.ID, d.Where, err)
			failed++
			continue
		}
		if !slices.Contains(cfg.Sinks, d.Sink) {
			fmt.Fprintf(stderr, "mistbridge deadletter replay: %s: its sink %q is not configured (MISTBRIDGE_SINKS=%s)\n", d.ID, d.Sink, strings.Join(cfg.Sinks, ","))
			failed++
			continue
		}
		if bySink[d.Sink] == nil {
			sinkNames = append(sinkNames, d.Sink)
		}
		bySink[d.Sink] = append(bySink[d.Sink], d)
	}
	replayed := 0
	if len(sinkNames) > 0 {
		set, err := openSinks(ctx, cfg, sinkNames, commandLogger(stderr, cfg))
		if err != nil {
			fmt.Fprintf(stderr, "mistbridge deadletter replay: %v\n", err)
			return exitAPI
		}
		defer set.Close()
		p := newProgress(stderr)
		total := len(picked) - failed
		for _, name := range sinkNames {
			dls := bySink[name]
			for start := 0; start < len(dls); start += replayBatchEvents {
				chunk := dls[start:min(start+replayBatchEvents, len(dls))]
				evs := make([]*codec.Event, len(chunk))
				for i, d := range chunk {
					ev, _ := d.event() // checked above
					evs[i] = &ev
				}
				errs := writeAgain(ctx, set.sinks[name], evs, cfg.Bridge.DeliveryTimeout, cfg.Bridge.RetryInitial, cfg.Bridge.RetryMax)
				for i, err := range errs {
					if err == nil {
						replayed++
						continue
					}
					failed++
					p.clear()
					how := "not acknowledged"
					if sinks.IsPermanent(err) {
						how = "refused again"
					}
					fmt.Fprintf(stderr, "mistbridge deadletter replay: %s %s by %s (it stays in the dead letter): %v\n", chunk[i].ID, how, name, err)
				}
				if p.due() {
					done := int64(replayed + failed)
					p.show(fmt.Sprintf("deadletter replay: %d of %d events, %s, %s", done, total,
						formatRate(done, p.elapsed(), "events"), formatETA(done, int64(total), p.elapsed())))
				}
			}
		}
		p.clear()
	}
	fmt.Fprintf(stdout, "dead letters %d (%d events), replayed %d, failed %d\n", letters, len(picked), replayed, failed)
	fmt.Fprintln(stdout, "the dead letters stay where they are: mistbridge never deletes them")
	if failed > 0 {
		code = exitAPI
	}
	return code
}

// writeAgain writes events through s (not through sinks.Retrying: an
// event refused again must not make a second dead letter), retrying those
// that fail transiently with jittered exponential backoff (initial to max)
// until timeout. It returns each event's last error, nil when acknowledged.
func writeAgain(ctx context.Context, s sinks.Sink, events []*codec.Event, timeout, initial, maxWait time.Duration) []error {
	if initial <= 0 {
		initial = 100 * time.Millisecond
	}
	if maxWait < initial {
		maxWait = max(initial, 2*time.Second)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	errs := make([]error, len(events))
	pending := make([]int, len(events))
	for i := range pending {
		pending[i] = i
	}
	wait := initial
	for {
		batch := make([]*codec.Event, len(pending))
		for j, i := range pending {
			batch[j] = events[i]
		}
		err := s.Write(ctx, batch)
		var werrs sinks.WriteErrors
		perEvent := errors.As(err, &werrs) && len(werrs) == len(batch)
		var retry []int
		for j, i := range pending {
			e := err
			if perEvent {
				e = werrs[j]
			}
			errs[i] = e
			if e != nil && !sinks.IsPermanent(e) {
				retry = append(retry, i)
			}
		}
		if len(retry) == 0 {
			return errs
		}
		pending = retry
		t := time.NewTimer(wait/2 + rand.N(wait/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			for _, i := range pending {
				errs[i] = fmt.Errorf("%w (last error: %w)", ctx.Err(), errs[i])
			}
			return errs
		case <-t.C:
		}
		wait = min(2*wait, maxWait)
	}
}
