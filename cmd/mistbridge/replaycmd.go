package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/term"

	"github.com/mistbridge/mistbridge/bridge"
	"github.com/mistbridge/mistbridge/bridge/archive"
	"github.com/mistbridge/mistbridge/codec"
	"github.com/mistbridge/mistbridge/sinks"
	"github.com/mistbridge/mistbridge/sinks/kafkasink"
	"github.com/mistbridge/mistbridge/sinks/natssink"
)

// replayUsage is printed by `mistbridge replay -h` and on a usage error.
const replayUsage = `Usage: mistbridge replay --since TIME [--until TIME] [--topic PATTERN]
                         [--receiver NAME] [--dry-run] [--data-dir DIR]

Publishes again the events of the webhook requests the bridge archived
(it archives only with MISTBRIDGE_ARCHIVE_RETENTION set; see
docs/archive.md): each request received in [--since, --until) is split
again, with the topic it was split with then, and its events are
published with the sinks, routes and retry policy the same MISTBRIDGE_
variables give the bridge (run it in the bridge's environment).

The events get the CloudEvent ids they got the first time (the id comes
from the topic and the event's bytes), so copies are duplicates a reader
can drop: JetStream drops a message whose Nats-Msg-Id (the CloudEvent id)
it stored within its duplicate window (MISTBRIDGE_NATS_DUPLICATE_WINDOW);
Kafka keeps every copy, so Kafka consumers must deduplicate on the ce_id
header. A refused event goes to the dead-letter destination, as in the
bridge.

  --since TIME      the first receive time replayed (required)
  --until TIME      the end of the window, excluded [now]
  --topic PATTERN   only events of topics matching this shell pattern
                    (e.g. "device-*")
  --receiver NAME   only requests to this receiver
  --dry-run         read and split, publish nothing
  --data-dir DIR    the bridge's data directory [$MISTBRIDGE_DATA_DIR, ./data];
                    the archive is DIR/archive unless MISTBRIDGE_ARCHIVE_DIR is set

TIME is RFC 3339 (2026-03-01T12:00:00Z), or relative to now: -2h, -90m,
-7d; --until also takes "now". To publish to one sink only, set
MISTBRIDGE_SINKS (and MISTBRIDGE_ROUTES) for the run.

Progress (count, rate, ETA) is shown when stderr is a terminal. Replaying
stops at the first batch the brokers do not acknowledge and prints the
--since to resume with. Exit codes: 0 done, 1 an event was not published
or the archive could not be read, 2 bad usage or configuration.
`

// replayBatchEvents and replayBatchBytes bound one delivery of replayed
// events, as the spool bounds its own (MISTBRIDGE_SPOOL_BATCH_*).
const (
	replayBatchEvents = 500
	replayBatchBytes  = 4 << 20
)

// replayStats are what a replay did.
type replayStats struct {
	Requests      int64 // archived requests read in the window (after --receiver)
	Events        int64 // events split from them (after --topic)
	Published     int64 // acknowledged by every sink they are routed to
	Failed        int64 // not acknowledged
	DeadLettered  int64 // refused by a sink and written to its dead letter (counted per sink)
	Unsplittable  int64 // requests codec.Split refuses now
	Unrouted      int64 // events of a topic no route sends anywhere
	NotAllowed    int64 // events of a topic the default receiver does not accept
	UnreadableB   int64 // bytes of torn or corrupt records skipped
	UnreadableSeg int   // ranges skipped
}

// replayCommand runs `mistbridge replay ...` with args (after "replay") and
// returns the exit code: 0 when every event was published, 1 when some
// were not or the archive could not be read, 2 for bad usage or
// configuration.
func replayCommand(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("mistbridge replay", flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	since := flags.String("since", "", "")
	until := flags.String("until", "now", "")
	topic := flags.String("topic", "", "")
	receiver := flags.String("receiver", "", "")
	dryRun := flags.Bool("dry-run", false, "")
	dataDir := flags.String("data-dir", "", "")
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "mistbridge replay: "+format+"\n\n%s", append(a, replayUsage)...)
		return exitUsage
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, replayUsage)
			return exitOK
		}
		return usage("%v", err)
	}
	if flags.NArg() > 0 {
		return usage("unexpected argument %q", flags.Arg(0))
	}
	now := time.Now()
	if *since == "" {
		return usage("--since is required")
	}
	from, err := parseWhen(*since, now)
	if err != nil {
		return usage("--since %v", err)
	}
	to, err := parseWhen(*until, now)
	if err != nil {
		return usage("--until %v", err)
	}
	if !from.Before(to) {
		return usage("--since %s is not before --until %s", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	if *topic != "" {
		if _, err := path.Match(*topic, ""); err != nil {
			return usage("--topic %q: %v", *topic, err)
		}
	}

	environ := environMap()
	// The sinks are built from the variables the bridge reads, checked as
	// the bridge checks them; a dry run needs only the directories.
	cfg, _, err := loadConfig(environ)
	if err != nil && !*dryRun {
		fmt.Fprintf(stderr, "mistbridge replay: invalid configuration:\n%s\n", indent(err.Error()))
		return exitUsage
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	dir, err := archiveDir(environ, cfg.DataDir)
	if err != nil {
		fmt.Fprintf(stderr, "mistbridge replay: invalid configuration:\n%s\n", indent(err.Error()))
		return exitUsage
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(stderr, "mistbridge replay: no archive in %s: the bridge archives request bodies only with MISTBRIDGE_ARCHIVE_RETENTION set (see --data-dir)\n", dir)
		return exitAPI
	}
	rd, err := archive.NewReader(dir, from, to)
	if err != nil {
		fmt.Fprintf(stderr, "mistbridge replay: %v\n", err)
		return exitAPI
	}
	defer rd.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r := &replayer{
		receiver: *receiver, topic: *topic, dryRun: *dryRun,
		progress: newProgress(stderr),
		stderr:   stderr,
		allowed:  receiverTopics(cfg.Bridge),
	}
	if !*dryRun {
		log := commandLogger(stderr, cfg)
		set, err := openSinks(ctx, cfg, cfg.Sinks, log)
		if err != nil {
			fmt.Fprintf(stderr, "mistbridge replay: %v\n", err)
			return exitAPI
		}
		defer set.Close()
		r.set = set
		r.timeout = cfg.Bridge.DeliveryTimeout
	}
	code := r.run(ctx, rd)
	r.progress.clear()
	st := r.stats
	for _, s := range rd.Skipped() {
		st.UnreadableB += s.Bytes
		st.UnreadableSeg++
		fmt.Fprintf(stderr, "mistbridge replay: %s: %d bytes from offset %d skipped: %s\n", s.Segment, s.Bytes, s.Offset, s.Reason)
	}
	if r.set != nil {
		st.DeadLettered = r.set.deadLetters()
	}
	printReplaySummary(stdout, st, from, to, *dryRun)
	if code == exitOK && st.Failed > 0 {
		code = exitAPI
	}
	return code
}

// receiverTopics reports whether a receiver accepts a topic now, as far as
// the command can tell: the default receiver by MISTBRIDGE_TOPICS (and
// Mist's ping, always). The server archives a body before it checks the
// topic, so a refused request is in the archive too; a managed receiver's
// topics live in the bridge's receivers store and are not checked.
func receiverTopics(c bridge.Config) func(receiver, topic string) bool {
	return func(receiver, topic string) bool {
		if receiver != c.Receiver || len(c.Topics) == 0 || topic == bridge.PingTopic {
			return true
		}
		for _, p := range c.Topics {
			if ok, _ := path.Match(strings.TrimSpace(p), topic); ok {
				return true
			}
		}
		return false
	}
}

// archiveDir is MISTBRIDGE_ARCHIVE_DIR, else <dataDir>/archive, as the
// bridge resolves it.
func archiveDir(environ map[string]string, dataDir string) (string, error) {
	var acfg archive.Config
	if err := env.ParseWithOptions(&acfg, env.Options{Prefix: envPrefix, Environment: environ}); err != nil {
		return "", explainParseError(err, environ)
	}
	if acfg.Dir != "" {
		return acfg.Dir, nil
	}
	if dataDir == "" {
		dataDir = "./data"
	}
	return filepath.Join(dataDir, "archive"), nil
}

// replayer publishes the events of archived requests in batches, in the
// order they were archived.
type replayer struct {
	receiver, topic string
	dryRun          bool
	allowed         func(receiver, topic string) bool
	set             *sinkSet
	timeout         time.Duration
	progress        *progress
	stderr          io.Writer
	stats           replayStats

	pending      []codec.Event
	pendingBytes int
	oldest       time.Time // receive time of the oldest request in pending
}

// run reads rd to its end, publishing as it goes; it returns the exit code.
func (r *replayer) run(ctx context.Context, rd *archive.Reader) int {
	for rd.Next() {
		rec := rd.Record()
		if ctx.Err() != nil {
			r.progress.clear()
			r.stats.Failed += int64(len(r.pending))
			fmt.Fprintf(r.stderr, "mistbridge replay: interrupted; resume with --since %s\n", r.resumePoint(rec.Received))
			return exitAPI
		}
		if r.receiver != "" && rec.Receiver != r.receiver {
			continue
		}
		r.stats.Requests++
		batch, err := codec.Split(rec.Body, rec.Topic)
		if err != nil {
			// The body was split when it was archived: the codec changed.
			r.stats.Unsplittable++
			fmt.Fprintf(r.stderr, "mistbridge replay: request to %s received %s no longer splits: %v\n",
				rec.Receiver, rec.Received.Format(time.RFC3339Nano), err)
			continue
		}
		if r.topic != "" {
			if ok, _ := path.Match(r.topic, batch.Topic); !ok {
				continue
			}
		}
		if len(batch.Events) == 0 {
			continue
		}
		r.stats.Events += int64(len(batch.Events))
		if !r.allowed(rec.Receiver, batch.Topic) {
			r.stats.NotAllowed += int64(len(batch.Events))
			continue
		}
		if r.set != nil {
			if err := r.set.router.Check(batch.Topic); err != nil {
				r.stats.Unrouted += int64(len(batch.Events))
				continue
			}
		}
		if r.dryRun {
			r.show(rd)
			continue
		}
		if len(r.pending) == 0 || rec.Received.Before(r.oldest) {
			r.oldest = rec.Received
		}
		for i := range batch.Events {
			ev := batch.Event(i)
			r.pending = append(r.pending, ev)
			r.pendingBytes += ev.Size()
		}
		if len(r.pending) >= replayBatchEvents || r.pendingBytes >= replayBatchBytes {
			if !r.flush(ctx) {
				return exitAPI
			}
		}
		r.show(rd)
	}
	if err := rd.Err(); err != nil {
		r.flush(ctx)
		fmt.Fprintf(r.stderr, "mistbridge replay: %v\n", err)
		return exitAPI
	}
	if !r.flush(ctx) {
		return exitAPI
	}
	r.show(rd)
	return exitOK
}

// flush delivers the pending events; false when the brokers did not
// acknowledge them all, after printing where to resume.
func (r *replayer) flush(ctx context.Context) bool {
	if len(r.pending) == 0 {
		return true
	}
	ptrs := make([]*codec.Event, len(r.pending))
	for i := range r.pending {
		ptrs[i] = &r.pending[i]
	}
	dctx, cancel := context.WithTimeout(ctx, r.timeout)
	err := r.set.router.Deliver(dctx, ptrs)
	cancel()
	n := int64(len(r.pending))
	r.pending, r.pendingBytes = r.pending[:0], 0
	if err != nil {
		r.stats.Failed += n
		r.progress.clear()
		fmt.Fprintf(r.stderr, "mistbridge replay: %d events not acknowledged: %v\nstopped; resume with --since %s\n",
			n, err, r.resumePoint(r.oldest))
		return false
	}
	r.stats.Published += n
	return true
}

// resumePoint is a --since that replays every request not published yet
// when the first of them was received at t, or the request at t was
// being read: the archive is in the order requests were archived, and one
// received up to archive.LateSlack earlier may come after it. The events
// published twice are duplicates with the same ids.
func (r *replayer) resumePoint(t time.Time) string {
	if len(r.pending) > 0 && r.oldest.Before(t) {
		t = r.oldest
	}
	return t.Add(-archive.LateSlack).UTC().Format(time.RFC3339Nano)
}

// show updates the progress line.
func (r *replayer) show(rd *archive.Reader) {
	if !r.progress.due() {
		return
	}
	done := r.stats.Published
	verb := "published"
	if r.dryRun {
		done, verb = r.stats.Events, "read"
	}
	el := r.progress.elapsed()
	r.progress.show(fmt.Sprintf("replay: %d requests, %d events %s, %s, %s", r.stats.Requests, done, verb,
		formatRate(done, el, "events"), formatETA(rd.Offset(), rd.Size(), el)))
}

func printReplaySummary(w io.Writer, st replayStats, from, to time.Time, dryRun bool) {
	fmt.Fprintf(w, "replayed %s to %s", from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))
	if dryRun {
		fmt.Fprint(w, " (dry run: nothing published)")
	}
	fmt.Fprintf(w, "\nrequests %d, events %d, published %d, failed %d\n", st.Requests, st.Events, st.Published, st.Failed)
	var notes []string
	if st.DeadLettered > 0 {
		notes = append(notes, fmt.Sprintf("%d of them refused by a sink and written to its dead letter instead (mistbridge deadletter list)", st.DeadLettered))
	}
	if st.NotAllowed > 0 {
		notes = append(notes, fmt.Sprintf("%d events of topics the receiver does not accept (MISTBRIDGE_TOPICS) skipped", st.NotAllowed))
	}
	if st.Unrouted > 0 {
		notes = append(notes, fmt.Sprintf("%d events of topics no route sends anywhere (MISTBRIDGE_ROUTES) skipped", st.Unrouted))
	}
	if st.Unsplittable > 0 {
		notes = append(notes, fmt.Sprintf("%d requests that no longer split skipped", st.Unsplittable))
	}
	if st.UnreadableB > 0 {
		notes = append(notes, fmt.Sprintf("%d unreadable bytes in %d ranges skipped (torn or corrupt records)", st.UnreadableB, st.UnreadableSeg))
	}
	for _, n := range notes {
		fmt.Fprintf(w, "  %s\n", n)
	}
}

// parseWhen reads an RFC 3339 time, "now", or a time relative to now: a
// Go duration or whole days with a leading '-' (-2h, -90m, -7d).
func parseWhen(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "now" {
		return now, nil
	}
	if rel, ok := strings.CutPrefix(s, "-"); ok {
		if days, ok := strings.CutSuffix(rel, "d"); ok {
			if n, err := strconv.Atoi(days); err == nil && n >= 0 {
				return now.Add(-time.Duration(n) * 24 * time.Hour), nil
			}
		} else if d, err := time.ParseDuration(rel); err == nil && d >= 0 {
			return now.Add(-d), nil
		}
	} else if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q: want RFC 3339 (2026-03-01T12:00:00Z) or a time relative to now (-2h, -90m, -7d)", s)
}

// commandLogger logs what the sinks report to stderr: warnings and errors
// only, unless MISTBRIDGE_LOG_LEVEL asks for debug, so progress and
// results stay readable.
func commandLogger(stderr io.Writer, cfg config) *slog.Logger {
	level := slog.LevelWarn
	if strings.EqualFold(cfg.LogLevel, "debug") {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
}

// sinkSet is the sinks a command built from the bridge's variables.
type sinkSet struct {
	sinks   map[string]sinks.Sink
	order   []string
	router  *bridge.Router
	reg     *prometheus.Registry
	metrics *sinks.Metrics
	log     *slog.Logger
}

// openSinks builds the sinks named (of "nats", "kafka") as the bridge
// does, each behind the bridge's retry policy, routed by
// MISTBRIDGE_ROUTES, and waits until each accepts writes, at most
// cfg.Bridge.DeliveryTimeout. It starts no embedded NATS server: with
// MISTBRIDGE_NATS_URL unset it connects to the one of the running bridge,
// on MISTBRIDGE_NATS_EMBEDDED_ADDR. Close the set when done.
func openSinks(ctx context.Context, cfg config, names []string, log *slog.Logger) (*sinkSet, error) {
	set := &sinkSet{sinks: map[string]sinks.Sink{}, reg: prometheus.NewRegistry(), log: log}
	set.metrics = sinks.NewMetrics(set.reg)
	policy := sinks.RetryPolicy{Initial: cfg.Bridge.RetryInitial, Max: cfg.Bridge.RetryMax}
	var outputs []bridge.Output
	for _, name := range names {
		var s sinks.Sink
		switch name {
		case natssink.Name:
			ncfg := natsConfig(cfg)
			ns, err := natssink.New(ctx, ncfg, log)
			if err != nil {
				set.Close()
				return nil, err
			}
			s = ns
		case kafkasink.Name:
			ks, err := kafkasink.New(cfg.Kafka, log)
			if err != nil {
				set.Close()
				return nil, err
			}
			s = ks
		default:
			set.Close()
			return nil, fmt.Errorf("unknown sink %q: want nats or kafka (MISTBRIDGE_SINKS)", name)
		}
		set.sinks[name] = s
		set.order = append(set.order, name)
		outputs = append(outputs, sinks.NewRetrying(s, policy, set.metrics, log))
	}
	router, err := bridge.NewRouter(cfg.Bridge.Routes, outputs...)
	if err != nil {
		set.Close()
		return nil, err
	}
	set.router = router
	for _, name := range set.order {
		if err := waitReady(ctx, set.sinks[name], cfg.Bridge.DeliveryTimeout); err != nil {
			set.Close()
			if name == natssink.Name && cfg.NATS.URL == "" {
				return nil, fmt.Errorf("%w (MISTBRIDGE_NATS_URL is unset: is the bridge, with its embedded NATS server on %s, running?)", err, cfg.NATS.EmbeddedAddr)
			}
			return nil, err
		}
	}
	return set, nil
}

// natsConfig is cfg's NATS configuration, pointed at the running bridge's
// embedded server when no URL is set.
func natsConfig(cfg config) natssink.Config {
	n := cfg.NATS
	if n.URL == "" {
		addr := n.EmbeddedAddr
		if addr == "" {
			addr = natssink.DefaultEmbeddedAddr
		}
		n.URL = "nats://" + addr
	}
	return n
}

// waitReady polls s.Ready until it succeeds or timeout passes.
func waitReady(ctx context.Context, s sinks.Sink, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		err := s.Ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not ready after %v: %w", s.Name(), timeout, err)
		case <-t.C:
		}
	}
}

// deadLetters is how many events the sinks sent to their dead letter.
func (s *sinkSet) deadLetters() int64 {
	mfs, err := s.reg.Gather()
	if err != nil {
		return 0
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() == "mistbridge_sink_dead_letters_total" {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return int64(n)
}

// Close closes every sink, waiting at most 10s for each to flush.
func (s *sinkSet) Close() {
	for _, name := range slices.Backward(s.order) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := s.sinks[name].Close(ctx); err != nil {
			s.log.Warn("closing sink", "sink", name, "err", err)
		}
		cancel()
	}
}

// progress draws one line on a terminal, rewritten in place at most four
// times a second; on anything else it draws nothing.
type progress struct {
	w     io.Writer
	on    bool
	start time.Time
	last  time.Time
	drawn bool
}

func newProgress(w io.Writer) *progress {
	return &progress{w: w, on: isTerminal(w), start: time.Now()}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// due reports whether a new line should be drawn now.
func (p *progress) due() bool {
	return p.on && time.Since(p.last) >= 250*time.Millisecond
}

func (p *progress) elapsed() time.Duration { return time.Since(p.start) }

func (p *progress) show(line string) {
	if !p.on {
		return
	}
	p.last = time.Now()
	p.drawn = true
	fmt.Fprintf(p.w, "\r\033[K%s", line)
}

// clear erases the line, before other output.
func (p *progress) clear() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
}

// formatRate is n per second over elapsed, e.g. "1234 events/s".
func formatRate(n int64, elapsed time.Duration, unit string) string {
	if elapsed <= 0 {
		return "- " + unit + "/s"
	}
	return fmt.Sprintf("%.0f %s/s", float64(n)/elapsed.Seconds(), unit)
}

// formatETA is the time left to do total at the pace done took elapsed,
// with the share done, e.g. "42% of 1.2 MiB, ETA 1m30s".
func formatETA(done, total int64, elapsed time.Duration) string {
	if total <= 0 {
		return "ETA -"
	}
	done = min(done, total)
	pct := 100 * done / total
	eta := "-"
	if done > 0 {
		left := time.Duration(float64(elapsed) * float64(total-done) / float64(done))
		eta = left.Round(time.Second).String()
	}
	return fmt.Sprintf("%d%% of %s, ETA %s", pct, formatBytes(total), eta)
}

func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
