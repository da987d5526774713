// Package kafkasink publishes CloudEvents to Kafka with
// github.com/segmentio/kafka-go, in the CloudEvents Kafka protocol binding
// ([codec.KafkaRecord]): one record per event, keyed by the event's
// partition key and partitioned with Murmur2 as the Java client does,
// acknowledged by all in-sync replicas.
//
// kafka-go's Writer would make every Write wait for its BatchTimeout; the
// sink instead sends produce requests itself over kafka-go's Client and
// Transport, one partition at a time, each as soon as the partition has no
// request in flight, so that concurrent Writes share requests under load
// and a lone Write waits for no timer (see producer.go).
//
// The sink does not retry: a failed record comes back as an error,
// [sinks.Permanent] when the broker's answer means that sending it again
// cannot succeed, and the caller (sinks.Retrying) decides what to do.
package kafkasink

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/segmentio/kafka-go"
	metadataAPI "github.com/segmentio/kafka-go/protocol/metadata"

	"github.com/mistbridge/mistbridge/codec"
	"github.com/mistbridge/mistbridge/sinks"
)

// Name is what [Sink.Name] returns and what a dead-letter record carries in
// its [sinks.HeaderDeadLetterSink] header.
const Name = "kafka"

// maxRequestBytes bounds the records of one produce request, counted with
// recordSizeBound: the brokers' default message.max.bytes. A record larger
// than that alone is refused by Write before any request.
const maxRequestBytes = 1 << 20

// Sink writes events to Kafka. It is safe for concurrent use; concurrent
// Writes share produce requests (see producer.go).
type Sink struct {
	cfg         Config
	mode        codec.Mode
	compression kafka.Compression
	transport   *kafka.Transport
	client      *kafka.Client
	balancer    kafka.Murmur2Balancer
	log         *slog.Logger

	partsMu sync.RWMutex
	parts   map[topicPartition]*partition

	calls   *gate // Write, DeadLetter and Ready calls in progress
	workers *gate // producer goroutines

	// spawn starts the producer goroutine of a partition with the context
	// of the sink's producers, which abort cancels when Close gives up
	// waiting. Producers outlive the calls that start them, so their
	// context cannot come from a call.
	spawn func(p *partition)
	abort context.CancelFunc

	hooks testHooks
}

// testHooks let tests synchronise on what the producers do. They are nil
// outside tests.
type testHooks struct {
	queued  func(tp topicPartition) // a call queued its records for tp
	linger  func()                  // a producer waits BatchTimeout for more records
	closing func()                  // Close refuses new calls and waits for the others
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
	mode, _ := codec.ParseMode(cfg.ContentMode) // checked by Validate
	compression, _ := parseCompression(cfg.Compression)
	tlsCfg, err := cfg.TLSConfig()
	if err != nil {
		return nil, fmt.Errorf("kafkasink: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("sink", Name)
	if cfg.SASLMechanism != "" && tlsCfg == nil {
		log.Warn("SASL without TLS sends credentials and records in clear", "mechanism", cfg.SASLMechanism)
	}

	transport := &kafka.Transport{
		ClientID: "mistbridge",
		TLS:      tlsCfg,
		SASL:     cfg.saslMechanism(),
	}
	produceCtx, abort := context.WithCancel(context.Background())
	s := &Sink{
		cfg:         cfg,
		mode:        mode,
		compression: compression,
		transport:   transport,
		client:      &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: transport, Timeout: cfg.WriteTimeout},
		// Consistent hashes a nil key too, where the Java client would
		// pick a partition at random; every record has a key anyway.
		balancer: kafka.Murmur2Balancer{Consistent: true},
		log:      log,
		parts:    make(map[topicPartition]*partition),
		calls:    newGate(),
		workers:  newGate(),
		abort:    abort,
	}
	s.spawn = func(p *partition) { go s.produce(produceCtx, p) }
	log.Info("kafka sink configured", "config", cfg)
	return s, nil
}

// Name returns "kafka".
func (s *Sink) Name() string { return Name }

// Write sends one record per event and blocks until the brokers
// acknowledge each (acks=all) or it fails. It returns nil, a
// [sinks.WriteErrors] in the order of events, or an error for the whole
// call (no broker reachable, ctx done before any answer,
// [sinks.ErrClosed]).
//
// Records are sent as soon as their partition has no produce request in
// flight; records of concurrent Writes that queue up meanwhile share the
// next request (at most BatchSize records and 1 MiB). The records of one
// key keep the order of events, within a Write and across sequential
// Writes: a partition has one request in flight at a time, and when a
// request fails, this Write's later records for that partition fail with
// it, unsent.
//
// A record that cannot be sent fails alone and permanently, before any
// request: its topic name is invalid (over 249 characters, or a character
// other than letters, digits, '.', '_' and '-'; the error wraps
// kafka.InvalidTopic), or it is larger than the 1 MiB request limit
// (kafka.MessageSizeTooLarge). A record the brokers refuse for its size is
// sent again alone, so an event is never reported as too large because it
// shared a batch with a large one; a topic the brokers refuse
// (authorization, invalid name) fails only the events bound for it.
//
// When ctx ends first, Write returns at once: records not yet sent are
// taken out of the queue and never sent; a record already in a request
// may still be written, and the events' deterministic ids let consumers
// drop the duplicate a retry then makes. Write copies what it sends, so it
// never reads the events after it returns.
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
	recs := make([]record, len(events))
	a := newArena(events, s.mode)
	var topic, from string
	for i, ev := range events {
		if i == 0 || ev.Topic != from {
			from, topic = ev.Topic, codec.KafkaTopic(s.cfg.TopicTemplate, ev.Topic)
		}
		r, err := s.record(ctx, ev, topic, &a)
		if err != nil {
			fail(i, err)
			continue
		}
		recs[i] = r
	}

	// Partition the records, and group them into one segment per
	// partition, in the order of events.
	part := make([]int32, len(events)) // segment of each record; -1: none
	var dests []*partition
	type topicSize struct {
		topic string
		n     int
	}
	var sizes []topicSize // the partition counts of the call's topics, usually one
	for i := range recs {
		part[i] = -1
		if out != nil && out[i] != nil {
			continue
		}
		r := &recs[i]
		k := slices.IndexFunc(sizes, func(ts topicSize) bool { return ts.topic == r.topic })
		if k < 0 {
			n, err := s.partitionCount(ctx, r.topic)
			if err != nil {
				if whole := s.failTopic(events, recs, r.topic, err, fail); whole != nil {
					return whole
				}
				continue
			}
			k = len(sizes)
			sizes = append(sizes, topicSize{r.topic, n})
		}
		tp := topicPartition{r.topic, s.balancer.Balance(kafka.Message{Key: r.key}, partitionIDs(sizes[k].n)...)}
		j := slices.IndexFunc(dests, func(p *partition) bool { return p.tp == tp })
		if j < 0 {
			j = len(dests)
			dests = append(dests, s.partition(tp))
		}
		part[i] = int32(j)
	}
	if len(dests) == 0 {
		return out // every event failed
	}
	segs := make([]segment, len(dests))
	idx := make([]int, 0, len(events))
	for j, p := range dests {
		start := len(idx)
		for i, sj := range part {
			if sj == int32(j) {
				idx = append(idx, i)
			}
		}
		segs[j] = segment{p: p, idx: idx[start:len(idx):len(idx)]}
	}
	errs, answered := s.deliver(ctx, recs, segs)
	if !answered && out == nil {
		return classify(fmt.Errorf("kafkasink: write %d records: %w", len(events), ctx.Err()))
	}
	for i, err := range errs {
		if err != nil {
			fail(i, produceError(events[i].ID, recs[i].topic, err))
		}
	}
	if out != nil {
		return out
	}
	return nil
}

// failTopic fails every event bound for topic with err, the error of its
// metadata. When that is every event of the call, it returns the error
// for the whole call instead.
func (s *Sink) failTopic(events []*codec.Event, recs []record, topic string, err error, fail func(int, error)) error {
	var n int
	for i := range recs {
		if recs[i].topic == topic {
			n++
		}
	}
	err = classify(fmt.Errorf("kafkasink: write %d records: %w", n, err))
	if n == len(events) {
		return err
	}
	for i := range recs {
		if recs[i].topic == topic {
			fail(i, err)
		}
	}
	return nil
}

// deliver queues segs, the segments of a call whose records are recs, and
// waits until every record has an outcome or ctx ends. It returns the
// outcome of each record (nil for those not in segs), and false when ctx
// ended before any record had one.
func (s *Sink) deliver(ctx context.Context, recs []record, segs []segment) ([]error, bool) {
	c := newCall(recs, len(segs))
	closed := fmt.Errorf("not sent: %w", sinks.ErrClosed)
	for j := range segs {
		seg := &segs[j]
		seg.c = c
		if !s.enqueue(seg) {
			for _, i := range seg.idx {
				c.errs[i] = closed
			}
			seg.acked = len(seg.idx)
			c.settled()
		}
	}
	select {
	case <-c.done:
		return c.errs, true
	case <-ctx.Done():
		return abandon(c, segs, ctx.Err())
	}
}

// abandon gives up on c when ctx ended with cause: what was not sent is
// taken out of the queues and never sent. It returns the outcome of every
// record, and whether any has one from the brokers.
func abandon(c *call, segs []segment, cause error) ([]error, bool) {
	errs := make([]error, len(c.recs))
	answered := false
	for j := range segs {
		seg := &segs[j]
		seg.p.mu.Lock()
		for n, i := range seg.idx {
			switch {
			case n < seg.acked:
				errs[i] = c.errs[i]
				answered = true
			case n < seg.next:
				errs[i] = fmt.Errorf("no answer yet (the record may still be written): %w", cause)
			default:
				errs[i] = fmt.Errorf("not sent: %w", cause)
			}
		}
		seg.dropped = true
		seg.p.mu.Unlock()
	}
	return errs, answered
}

// record encodes ev for topic, its bytes copied into a, with extra headers
// after the CloudEvent ones. A topic Kafka cannot hold ([checkTopic]) or a
// record over the request limit is refused here, with a permanent error,
// before any request: the sink does not rely on every broker refusing an
// invalid topic name (kfake accepts one).
func (s *Sink) record(ctx context.Context, ev *codec.Event, topic string, a *arena, extra ...kafka.Header) (record, error) {
	if err := checkTopic(topic); err != nil {
		return record{}, sinks.Permanent(fmt.Errorf("kafkasink: event %s: %w", ev.ID, err))
	}
	hs, value, err := codec.KafkaRecord(ctx, ev, s.mode)
	if err != nil {
		return record{}, sinks.Permanent(fmt.Errorf("kafkasink: event %s: %w", ev.ID, err))
	}
	r := record{topic: topic, key: a.copyString(ev.PartitionKey()), value: value, headers: a.headers(hs, extra)}
	if s.mode == codec.Binary {
		r.value = a.copy(value) // the value is ev.Data itself
	}
	r.size = recordSizeBound(&r)
	if r.size > maxRequestBytes {
		return record{}, sinks.Permanent(fmt.Errorf("kafkasink: event %s: a record of up to %d bytes exceeds the %d-byte request limit: %w",
			ev.ID, r.size, maxRequestBytes, kafka.MessageSizeTooLarge))
	}
	return r, nil
}

// recordSizeBound is at least what r takes in a record batch (length
// prefixes are counted at their widest).
func recordSizeBound(r *record) int {
	n := 4 + 1 + 1 + 8 + 4 + len(r.key) + 4 + len(r.value) + 5
	for _, h := range r.headers {
		n += 5 + len(h.Key) + 5 + len(h.Value)
	}
	return n
}

// arena holds the bytes and headers of a call's records: a few
// allocations per call rather than several per record. What it hands out
// stays valid as it grows (a full block is left as it is).
type arena struct {
	b []byte
	h []kafka.Header
}

// headersPerRecord is about how many headers a record has in binary mode.
const headersPerRecord = 12

func newArena(events []*codec.Event, mode codec.Mode) arena {
	n := 0
	for _, ev := range events {
		n += len(ev.PartitionKey())
		if mode == codec.Binary {
			n += len(ev.Data)
		}
	}
	return arena{b: make([]byte, 0, n), h: make([]kafka.Header, 0, len(events)*headersPerRecord)}
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

func (a *arena) headers(hs []codec.Header, extra []kafka.Header) []kafka.Header {
	n := len(hs) + len(extra)
	if cap(a.h)-len(a.h) < n {
		a.h = make([]kafka.Header, 0, max(n, 2*cap(a.h)))
	}
	start := len(a.h)
	for _, h := range hs {
		a.h = append(a.h, kafka.Header{Key: h.Key, Value: h.Value})
	}
	a.h = append(a.h, extra...)
	return a.h[start:len(a.h):len(a.h)]
}

// partitionCount returns the number of partitions of topic, from the
// transport's metadata cache when it has the topic (as kafka-go's Writer
// does), asking the brokers to create the topic when AutoCreateTopics is
// set.
func (s *Sink) partitionCount(ctx context.Context, topic string) (int, error) {
	r, err := s.transport.RoundTrip(ctx, s.client.Addr, &metadataAPI.Request{
		TopicNames:             []string{topic},
		AllowAutoTopicCreation: s.cfg.AutoCreateTopics,
	})
	if err != nil {
		return 0, err
	}
	for _, t := range r.(*metadataAPI.Response).Topics {
		if t.Name == topic {
			if t.ErrorCode != 0 {
				return 0, kafka.Error(t.ErrorCode)
			}
			if len(t.Partitions) == 0 {
				return 0, kafka.LeaderNotAvailable
			}
			return len(t.Partitions), nil
		}
	}
	return 0, kafka.UnknownTopicOrPartition
}

// partitionIDs returns [0, 1, ..., n-1], the partitions of a topic as a
// kafka.Balancer takes them, from a shared cache.
func partitionIDs(n int) []int {
	if ids := cachedIDs.Load(); ids != nil && len(*ids) >= n {
		return (*ids)[:n]
	}
	ids := make([]int, max(n, 256))
	for i := range ids {
		ids[i] = i
	}
	cachedIDs.Store(&ids)
	return ids[:n]
}

var cachedIDs atomic.Pointer[[]int]

// DeadLetter writes ev to the dead-letter topic as Write would have
// written it (same key, value and CloudEvent headers), plus the
// [sinks.HeaderDeadLetterReason] and [sinks.HeaderDeadLetterSink] headers.
// The record is sent in a request of its own. If it is too large for the
// dead-letter topic too, the error is permanent; give that topic a larger
// max.message.bytes than the event topics.
func (s *Sink) DeadLetter(ctx context.Context, ev *codec.Event, cause error) error {
	if !s.calls.enter() {
		return fmt.Errorf("kafkasink: dead-letter: %w", sinks.ErrClosed)
	}
	defer s.calls.leave()
	topic := s.cfg.DeadLetterTopic
	a := newArena([]*codec.Event{ev}, s.mode)
	r, err := s.record(ctx, ev, topic, &a,
		kafka.Header{Key: sinks.HeaderDeadLetterReason, Value: []byte(sinks.DeadLetterReason(cause))},
		kafka.Header{Key: sinks.HeaderDeadLetterSink, Value: []byte(Name)},
	)
	if err != nil {
		return err
	}
	n, err := s.partitionCount(ctx, topic)
	if err == nil {
		tp := topicPartition{topic, s.balancer.Balance(kafka.Message{Key: r.key}, partitionIDs(n)...)}
		var errs []error
		errs, _ = s.deliver(ctx, []record{r}, []segment{{p: s.partition(tp), idx: []int{0}, alone: true}})
		err = errs[0]
	}
	if err != nil {
		return classify(fmt.Errorf("kafkasink: dead-letter event %s to %s: %w", ev.ID, topic, err))
	}
	return nil
}

// Ready asks a broker for its API versions over the sink's connections, a
// round trip that needs no topic and proves the brokers accept this
// client (TLS and SASL included). It honours ctx's deadline.
func (s *Sink) Ready(ctx context.Context) error {
	if !s.calls.enter() {
		return fmt.Errorf("kafkasink: ready: %w", sinks.ErrClosed)
	}
	defer s.calls.leave()
	resp, err := s.client.ApiVersions(ctx, &kafka.ApiVersionsRequest{})
	if err == nil && resp.Error != nil {
		err = resp.Error
	}
	if err != nil {
		return fmt.Errorf("kafkasink: brokers %s not ready: %w", strings.Join(s.cfg.Brokers, ","), err)
	}
	return nil
}

// Close stops new calls (they return [sinks.ErrClosed]), waits for the
// calls in progress to end (their records acknowledged or failed), stops
// the producer goroutines and waits for them, and closes the connections.
// When ctx ends first, Close fails what is still queued or in flight,
// waits for the producers to stop (at once), and returns ctx's error.
// Close is idempotent.
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
	case <-ctx.Done():
		err = ctx.Err()
		s.abort()
	}
	// No call can start a producer any more, or Close has given up on
	// them and a call that tries fails with ErrClosed.
	s.workers.close()
	select {
	case <-s.workers.done():
	case <-ctx.Done():
		err = ctx.Err()
		s.abort()
		<-s.workers.done()
	}
	s.abort()
	s.transport.CloseIdleConnections()
	if err != nil {
		return fmt.Errorf("kafkasink: close: %w", err)
	}
	return nil
}
