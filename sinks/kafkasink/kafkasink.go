// Package kafkasink publishes CloudEvents to Kafka with franz-go's producer
// (github.com/twmb/franz-go/pkg/kgo), in the CloudEvents Kafka protocol
// binding ([codec.KafkaRecord]): one record per event, keyed by the
// event's partition key and partitioned with Murmur2 as the Java client
// does, acknowledged by all in-sync replicas.
//
// The producer is idempotent: it keeps several produce requests in flight
// per broker, each carrying a batch for every partition it leads, and the
// brokers keep each partition's records in the order they were produced,
// retries included. With the default BatchTimeout (0) a lone Write waits
// for no timer, and the records that arrive while requests are in flight
// go together in the next ones, so batches grow with the load (see
// produce.go).
//
// The producer retries what it can (a leader election, a request timeout)
// until WriteTimeout; the sink itself does not: a failed record comes back
// as an error, [sinks.Permanent] when the broker's answer means that
// sending it again cannot succeed, and the caller (sinks.Retrying) decides
// what to do.
package kafkasink

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/mistbridge/mistbridge/codec"
	"github.com/mistbridge/mistbridge/sinks"
)

// Name is what [Sink.Name] returns and what a dead-letter record carries in
// its [sinks.HeaderDeadLetterSink] header.
const Name = "kafka"

// clientID is the client id the sink's connections announce.
const clientID = "mistbridge"

// batchOverhead is what a record batch takes besides its records: its
// header (61 bytes) with room to spare. The producer counts it in its
// bound on a batch, so that a record of BatchBytes fits one.
const batchOverhead = 128

// Sink writes events to Kafka. It is safe for concurrent use; concurrent
// Writes share produce requests.
type Sink struct {
	cfg  Config
	mode codec.Mode
	log  *slog.Logger

	// cl produces the records of Writes. alone produces one record at a
	// time, each in a batch of its own (see produceAlone): dead letters,
	// and records sent again after a batch refusal. Both are closed by
	// Close.
	cl    *kgo.Client
	alone *kgo.Client
	// aloneSem holds a token while alone has a record in flight.
	aloneSem chan struct{}

	calls *gate         // Write, DeadLetter and Ready calls in progress
	abort chan struct{} // closed when Close gives up waiting for calls

	hooks testHooks
}

// testHooks let tests synchronise on what the sink does. They are nil
// outside tests.
type testHooks struct {
	produced func(n int) // a Write handed its n records to the producer
	closing  func()      // Close refuses new calls and waits for the others
}

var _ sinks.Sink = (*Sink)(nil)

// New validates cfg, applies its defaults and returns a Sink. It does not
// contact the brokers (use [Sink.Ready] for that), so the bridge can start
// before Kafka. It fails when cfg is invalid or a TLS file cannot be read.
// A nil log discards.
func New(cfg Config, log *slog.Logger) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kafkasink: %w", err)
	}
	cfg = cfg.withDefaults()
	brokers := make([]string, len(cfg.Brokers))
	for i, b := range cfg.Brokers {
		brokers[i] = strings.TrimSpace(b)
	}
	cfg.Brokers = brokers
	mode, _ := codec.ParseMode(cfg.ContentMode)         // checked by Validate
	compression, _ := parseCompression(cfg.Compression) // checked by Validate
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("sink", Name)
	opts, err := cfg.ClientOptions(clientID)
	if err != nil {
		return nil, fmt.Errorf("kafkasink: %w", err)
	}
	if cfg.SASLMechanism != "" && !cfg.TLS {
		log.Warn("SASL without TLS sends credentials and records in clear", "mechanism", cfg.SASLMechanism)
	}
	opts = append(opts,
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(javaPartitioner),
		kgo.ProducerLinger(cfg.BatchTimeout),
		kgo.ProducerBatchMaxBytes(int32(cfg.BatchBytes+batchOverhead)),
		kgo.ProducerBatchCompression(compression),
		kgo.ProduceRequestTimeout(cfg.WriteTimeout),
		kgo.RecordDeliveryTimeout(cfg.WriteTimeout),
		kgo.WithLogger(kgoLogger{log}),
		// No KIP-714 metrics pushed to the brokers: the bridge exports its
		// own, and the final push would hold Close up to a second.
		kgo.DisableClientMetrics(),
		kgo.MaxVersions(produceByName()),
		// The producer refreshes metadata before it retries a refused
		// batch (a leader may have moved), and no sooner than this after
		// the last refresh: franz-go's default, 5s, would hold a retry
		// past WriteTimeout. 100ms is the Java client's retry.backoff.ms.
		kgo.MetadataMinAge(100*time.Millisecond),
	)
	if cfg.AutoCreateTopics {
		opts = append(opts, kgo.AllowAutoTopicCreation())
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafkasink: %w", err)
	}
	alone, err := kgo.NewClient(opts...)
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("kafkasink: %w", err)
	}
	s := &Sink{
		cfg:      cfg,
		mode:     mode,
		log:      log,
		cl:       cl,
		alone:    alone,
		aloneSem: make(chan struct{}, 1),
		calls:    newGate(),
		abort:    make(chan struct{}),
	}
	log.Info("kafka sink configured", "config", cfg)
	return s, nil
}

// produceByName is the newest versions of every request the client knows,
// but produce requests at most at version 12, which names each topic:
// version 13 (Kafka 4.1, KIP-516) names topics by id only. Kafka 3.9, the
// version the end-to-end suite runs, answers version 11 at most anyway; a
// name keeps the sink's requests legible to what inspects them on the way
// (the fault injection of sinks/retry_test.go matches topics by name).
func produceByName() *kversion.Versions {
	v := kversion.Stable()
	if max, ok := v.LookupMaxKeyVersion(int16(kmsg.Produce)); ok && max > 12 {
		v.SetMaxKeyVersion(int16(kmsg.Produce), 12)
	}
	return v
}

// javaPartitioner puts a record where the Java client's default
// partitioner puts a record with its key: murmur2 of the key, high bit
// cleared, modulo the partition count. A record with no key is hashed as
// the empty key, where the Java client would pick a partition at random;
// every record the sink writes has a key anyway.
var javaPartitioner = kgo.BasicConsistentPartitioner(func(topic string) func(*kgo.Record, int) int {
	p := kgo.StickyKeyPartitioner(nil).ForTopic(topic) // murmur2 for a non-nil key
	return func(r *kgo.Record, n int) int {
		if r.Key == nil {
			return p.Partition(&kgo.Record{Key: []byte{}}, n)
		}
		return p.Partition(r, n)
	}
})

// Name returns "kafka".
func (s *Sink) Name() string { return Name }

// Write sends one record per event and blocks until the brokers
// acknowledge each (acks=all) or it fails. It returns nil, a
// [sinks.WriteErrors] in the order of events, or an error for the whole
// call (ctx done, or Close giving up, before any answer; [sinks.ErrClosed]
// after Close).
//
// Records are sent as soon as the producer has room for a request in
// flight (after BatchTimeout when it is set); records of concurrent Writes
// share requests. The records of one key keep the order of events, within
// a Write and across sequential Writes. The producer retries transient
// errors itself until WriteTimeout; when a record fails, the producer
// fails the records buffered behind it on its partition too, so a retry
// of them does not land behind later records.
//
// A record that cannot be sent fails alone and permanently, before it is
// sent: its topic name is invalid (over 249 characters, or a character
// other than letters, digits, '.', '_' and '-'; the error wraps
// kerr.InvalidTopicException), or it is larger than the batch bound
// (BatchBytes, at most 1 MiB; kerr.MessageTooLarge). A record the
// brokers refuse with its batch (too large, invalid) is sent again alone,
// so an event is never reported as too large because it shared a batch
// with a large one; a topic the brokers refuse (authorization, invalid
// name) fails only the events bound for it.
//
// When ctx ends first, Write returns at once, with an error for each
// record not yet acknowledged: a record not yet in a request is dropped by
// the producer (with the records buffered behind it on its partition,
// which fail transiently); one in a request may still be written, and the
// events' deterministic ids let consumers drop the duplicate a retry then
// makes. Write copies what it sends, so it never reads the events after
// it returns.
func (s *Sink) Write(ctx context.Context, events []*codec.Event) error {
	if len(events) == 0 {
		return nil
	}
	if !s.calls.enter() {
		return fmt.Errorf("kafkasink: write: %w", sinks.ErrClosed)
	}
	defer s.calls.leave()

	var out sinks.WriteErrors // allocated on the first failure
	fail := func(i int, err error) {
		if out == nil {
			out = make(sinks.WriteErrors, len(events))
		}
		out[i] = err
	}
	c := newCall(len(events))
	a := newArena(events, s.mode)
	var topic, from string
	for i, ev := range events {
		if i == 0 || ev.Topic != from {
			from, topic = ev.Topic, codec.KafkaTopic(s.cfg.TopicTemplate, ev.Topic)
		}
		if err := s.record(ctx, &c.recs[i], ev, topic, &a); err != nil {
			fail(i, err)
			c.errs[i] = err // not produced: no outcome to wait for
			continue
		}
		c.pending++
	}
	if c.pending == 0 {
		return out // every event failed
	}
	local := out != nil // some records were refused here
	s.produce(ctx, c)

	abandoned := false
	select {
	case <-c.done:
	case <-ctx.Done():
		abandoned = true
	case <-s.abort:
		abandoned = true
	}
	if abandoned {
		select {
		case <-c.done: // every outcome arrived after all
			abandoned = false
		default:
		}
	}
	errs, answered := c.outcomes(abandoned, func() error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return sinks.ErrClosed
	})
	if abandoned && !answered && !local {
		if ctx.Err() != nil {
			return fmt.Errorf("kafkasink: write %d records: %w", len(events), ctx.Err())
		}
		return fmt.Errorf("kafkasink: write %d records: %w", len(events), sinks.ErrClosed)
	}
	if !abandoned {
		s.isolate(ctx, c, errs, func(i int) bool { return out != nil && out[i] != nil })
	}

	for i, err := range errs {
		if err != nil && (out == nil || out[i] == nil) {
			fail(i, produceError(events[i].ID, c.recs[i].Topic, recordError(ctx, err)))
		}
	}
	if out != nil {
		return out
	}
	return nil
}

// record encodes ev for topic into r, its bytes copied into a, with extra
// headers after the CloudEvent ones. A topic Kafka cannot hold
// ([checkTopic]) or a record over the batch bound is refused here, with a
// permanent error, before it is sent: the sink does not rely on every
// broker refusing an invalid topic name (kfake accepts one).
func (s *Sink) record(ctx context.Context, r *kgo.Record, ev *codec.Event, topic string, a *arena, extra ...kgo.RecordHeader) error {
	if err := checkTopic(topic); err != nil {
		return sinks.Permanent(fmt.Errorf("kafkasink: event %s: %w", ev.ID, err))
	}
	r.Topic = topic
	r.Key = a.copyString(ev.PartitionKey()) // never nil: see javaPartitioner
	if s.mode == codec.Binary {
		r.Headers = a.binaryHeaders(ev, extra)
		r.Value = a.copy(ev.Data)
	} else {
		hs, value, err := codec.KafkaRecord(ctx, ev, s.mode)
		if err != nil {
			return sinks.Permanent(fmt.Errorf("kafkasink: event %s: %w", ev.ID, err))
		}
		r.Headers = a.headers(hs, extra)
		r.Value = value // the SDK's own encoding, not ev's memory
	}
	if n, limit := recordSizeBound(r), s.cfg.BatchBytes; n > limit {
		return sinks.Permanent(fmt.Errorf("kafkasink: event %s: a record of up to %d bytes exceeds the %d-byte batch limit: %w",
			ev.ID, n, limit, kerr.MessageTooLarge))
	}
	return nil
}

// recordSizeBound is at least what r takes in a record batch (length
// prefixes are counted at their widest).
func recordSizeBound(r *kgo.Record) int {
	n := 4 + 1 + 1 + 8 + 4 + len(r.Key) + 4 + len(r.Value) + 5
	for _, h := range r.Headers {
		n += 5 + len(h.Key) + 5 + len(h.Value)
	}
	return n
}

// arena holds the bytes and headers of a call's records: a few
// allocations per call rather than several per record. What it hands out
// stays valid as it grows (a full block is left as it is).
type arena struct {
	b  []byte
	h  []kgo.RecordHeader
	hs []codec.Header // scratch for codec.AppendKafkaHeaders
}

// headersPerRecord is about how many headers a record has in binary mode.
const headersPerRecord = 12

// headerBytes is about what the binary-mode header values of ev take:
// its attributes, and room for the fixed ones and the time.
func headerBytes(ev *codec.Event) int {
	return 96 + len(ev.ID) + len(ev.Type) + 2*len(ev.Source) + len(ev.Topic) + 2*len(ev.Org) + 2*len(ev.Site)
}

func newArena(events []*codec.Event, mode codec.Mode) arena {
	n := 0
	for _, ev := range events {
		n += len(ev.PartitionKey())
		if mode == codec.Binary {
			n += len(ev.Data) + headerBytes(ev)
		}
	}
	return arena{b: make([]byte, 0, n), h: make([]kgo.RecordHeader, 0, len(events)*headersPerRecord)}
}

func (a *arena) copy(p []byte) []byte {
	a.grow(len(p))
	start := len(a.b)
	a.b = append(a.b, p...)
	return a.b[start:len(a.b):len(a.b)]
}

func (a *arena) copyString(s string) []byte {
	a.grow(len(s))
	start := len(a.b)
	a.b = append(a.b, s...)
	return a.b[start:len(a.b):len(a.b)]
}

func (a *arena) grow(n int) {
	if cap(a.b)-len(a.b) < n {
		a.b = make([]byte, 0, max(n, 2*cap(a.b)))
	}
}

// binaryHeaders writes ev's binary-mode headers, then extra, into a.
func (a *arena) binaryHeaders(ev *codec.Event, extra []kgo.RecordHeader) []kgo.RecordHeader {
	a.grow(headerBytes(ev)) // so that the values rarely move the block
	a.hs, a.b = codec.AppendKafkaHeaders(a.hs[:0], a.b, ev)
	return a.headers(a.hs, extra)
}

func (a *arena) headers(hs []codec.Header, extra []kgo.RecordHeader) []kgo.RecordHeader {
	n := len(hs) + len(extra)
	if cap(a.h)-len(a.h) < n {
		a.h = make([]kgo.RecordHeader, 0, max(n, 2*cap(a.h)))
	}
	start := len(a.h)
	for _, h := range hs {
		a.h = append(a.h, kgo.RecordHeader{Key: h.Key, Value: h.Value})
	}
	a.h = append(a.h, extra...)
	return a.h[start:len(a.h):len(a.h)]
}

// DeadLetter writes ev to the dead-letter topic as Write would have
// written it (same key, value and CloudEvent headers), plus the
// [sinks.HeaderDeadLetterReason] and [sinks.HeaderDeadLetterSink] headers.
// The record is sent in a batch of its own. If it is too large for the
// dead-letter topic too, the error is permanent; give that topic a larger
// max.message.bytes than the event topics.
func (s *Sink) DeadLetter(ctx context.Context, ev *codec.Event, cause error) error {
	if !s.calls.enter() {
		return fmt.Errorf("kafkasink: dead-letter: %w", sinks.ErrClosed)
	}
	defer s.calls.leave()
	topic := s.cfg.DeadLetterTopic
	a := newArena([]*codec.Event{ev}, s.mode)
	r := new(kgo.Record)
	err := s.record(ctx, r, ev, topic, &a,
		kgo.RecordHeader{Key: sinks.HeaderDeadLetterReason, Value: []byte(sinks.DeadLetterReason(cause))},
		kgo.RecordHeader{Key: sinks.HeaderDeadLetterSink, Value: []byte(Name)},
	)
	if err != nil {
		return err
	}
	if err := s.produceAlone(ctx, r); err != nil {
		return classify(fmt.Errorf("kafkasink: dead-letter event %s to %s: %w", ev.ID, topic, recordError(ctx, err)))
	}
	return nil
}

// Ready asks a broker for the cluster's brokers (a metadata request that
// names no topic) over the sink's connections, a round trip that proves
// the brokers accept this client (TLS and SASL included). It honours ctx's
// deadline.
func (s *Sink) Ready(ctx context.Context) error {
	if !s.calls.enter() {
		return fmt.Errorf("kafkasink: ready: %w", sinks.ErrClosed)
	}
	defer s.calls.leave()
	if err := s.cl.Ping(ctx); err != nil {
		return fmt.Errorf("kafkasink: brokers %s not ready: %w", strings.Join(s.cfg.Brokers, ","), err)
	}
	return nil
}

// Close stops new calls (they return [sinks.ErrClosed]), waits for the
// calls in progress to end (their records acknowledged or failed), waits
// up to WriteTimeout for the records of abandoned Writes still buffered
// to be sent, and closes the connections. When ctx ends first, Close makes the calls in
// progress return (their unacknowledged records fail with
// [sinks.ErrClosed]), fails what is still buffered, and returns ctx's
// error. Close is idempotent.
func (s *Sink) Close(ctx context.Context) error {
	if !s.calls.close() {
		return nil
	}
	if s.hooks.closing != nil {
		s.hooks.closing()
	}
	var err error
	select {
	case <-s.calls.done():
		s.flush(ctx)
		err = ctx.Err()
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		close(s.abort)
	}
	s.cl.Close()
	s.alone.Close()
	if err != nil {
		return fmt.Errorf("kafkasink: close: %w", err)
	}
	return nil
}

// flush gives the records still buffered, those of Writes that gave up,
// until ctx ends or WriteTimeout passes to reach the brokers. No caller
// waits for them; a record in a request to a broker that went away would
// hold a flush for ever (the idempotent producer does not give up on a
// record it may have written).
func (s *Sink) flush(ctx context.Context) {
	if s.cl.BufferedProduceRecords() == 0 && s.alone.BufferedProduceRecords() == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	defer cancel()
	err := s.cl.Flush(ctx)
	if aerr := s.alone.Flush(ctx); err == nil {
		err = aerr
	}
	if n := s.cl.BufferedProduceRecords() + s.alone.BufferedProduceRecords(); err != nil && n > 0 {
		s.log.Warn("closing with records of abandoned writes not acknowledged", "records", n, "err", err)
	}
}

// kgoLogger passes franz-go's warnings and errors to the sink's log.
// franz-go logs no secret: SASL is logged by mechanism only.
type kgoLogger struct{ log *slog.Logger }

func (kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (l kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lvl := slog.LevelWarn
	if level == kgo.LogLevelError {
		lvl = slog.LevelError
	}
	l.log.Log(context.Background(), lvl, "kafka client: "+msg, keyvals...)
}
