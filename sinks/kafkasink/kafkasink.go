// Package kafkasink publishes CloudEvents to Kafka with
// github.com/segmentio/kafka-go, in the CloudEvents Kafka protocol binding
// ([codec.KafkaRecord]): one record per event, keyed by the event's
// partition key and partitioned with Murmur2 as the Java client does,
// acknowledged by all in-sync replicas.
//
// The sink does not retry: a failed record comes back as an error,
// [sinks.Permanent] when the broker's answer means that sending it again
// cannot succeed, and the caller (sinks.Retrying) decides what to do.
package kafkasink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/segmentio/kafka-go"

	"github.com/mistbridge/mistbridge/codec"
	"github.com/mistbridge/mistbridge/sinks"
)

// Name is what [Sink.Name] returns and what a dead-letter record carries in
// its [sinks.HeaderDeadLetterSink] header.
const Name = "kafka"

// maxRequestBytes is kafka-go's limit on one record (Writer.BatchBytes,
// left at its default, which matches the brokers' default
// message.max.bytes). A record above it would make kafka-go fail the
// whole WriteMessages call, so Write refuses it alone, before sending.
const maxRequestBytes = 1 << 20

// Sink writes events to Kafka. It is safe for concurrent use; concurrent
// Writes share one kafka-go Writer, so their records are batched together.
type Sink struct {
	cfg       Config
	mode      codec.Mode
	transport *kafka.Transport
	w         *kafka.Writer // batches records: BatchSize, BatchTimeout
	solo      *kafka.Writer // one record per request: see isolate
	client    *kafka.Client
	log       *slog.Logger
	closed    atomic.Bool
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
	tlsCfg, err := cfg.tlsConfig()
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
	addr := kafka.TCP(cfg.Brokers...)
	newWriter := func(batchSize int) *kafka.Writer {
		return &kafka.Writer{
			Addr:     addr,
			Balancer: &kafka.Murmur2Balancer{},
			// Retries happen above the sink, where backoff and the
			// dead-letter decision live.
			MaxAttempts:            1,
			BatchSize:              batchSize,
			BatchBytes:             maxRequestBytes,
			BatchTimeout:           cfg.BatchTimeout,
			WriteTimeout:           cfg.WriteTimeout,
			RequiredAcks:           kafka.RequireAll,
			Async:                  false,
			Compression:            compression,
			Transport:              transport,
			AllowAutoTopicCreation: cfg.AutoCreateTopics,
		}
	}
	s := &Sink{
		cfg:       cfg,
		mode:      mode,
		transport: transport,
		w:         newWriter(cfg.BatchSize),
		solo:      newWriter(1),
		client:    &kafka.Client{Addr: addr, Transport: transport, Timeout: cfg.WriteTimeout},
		log:       log,
	}
	log.Info("kafka sink configured", "config", cfg)
	return s, nil
}

// Name returns "kafka".
func (s *Sink) Name() string { return Name }

// Write sends one record per event, in one kafka-go WriteMessages call, and
// blocks until the brokers acknowledge them (acks=all) or they fail. It
// returns nil, a [sinks.WriteErrors] in the order of events, or an error for
// the whole call (no broker reachable, ctx done, [sinks.ErrClosed]).
//
// A record that cannot be sent fails alone and permanently, before any
// request: its topic name is invalid (over 249 characters, or a character
// other than letters, digits, '.', '_' and '-'; the error wraps
// kafka.InvalidTopic), or it is larger than kafka-go's 1 MiB request limit
// (kafka.MessageSizeTooLarge). A record the brokers refuse for its size is
// sent again alone, so an event is never reported as too large because it
// shared a batch with a large one, and when the brokers refuse a topic
// (authorization, invalid name) only the events bound for that topic fail.
// When ctx ends first, Write returns ctx's error, and the records may
// still be written afterwards; the events' deterministic ids let consumers
// drop the duplicates a retry then makes. Write copies what it hands to
// kafka-go, so it never reads the events after it returns.
func (s *Sink) Write(ctx context.Context, events []*codec.Event) error {
	if len(events) == 0 {
		return nil
	}
	if s.closed.Load() {
		return fmt.Errorf("kafkasink: write: %w", sinks.ErrClosed)
	}
	out := make(sinks.WriteErrors, len(events))
	msgs := make([]kafka.Message, len(events))
	send := make([]int, 0, len(events))
	var arena []byte
	if s.mode == codec.Binary {
		n := 0
		for _, ev := range events {
			n += len(ev.Data)
		}
		arena = make([]byte, 0, n)
	}
	for i, ev := range events {
		m, err := s.record(ctx, ev, codec.KafkaTopic(s.cfg.TopicTemplate, ev.Topic), &arena)
		if err != nil {
			out[i] = err
			continue
		}
		msgs[i] = m
		send = append(send, i)
	}
	if len(send) > 0 {
		if err := s.produce(ctx, events, msgs, send, out); err != nil {
			if len(send) == len(events) {
				return err
			}
			for _, i := range send {
				out[i] = err
			}
		}
	}
	for _, err := range out {
		if err != nil {
			return out
		}
	}
	return nil
}

// record encodes ev for topic. In binary mode the value is ev.Data copied
// to the end of *arena, one allocation per Write rather than per event. A
// topic Kafka cannot hold ([checkTopic]) or a record over the request limit
// is refused here, with a permanent error, before kafka-go sees it: the
// sink does not rely on every broker refusing an invalid topic name (kfake
// accepts one), and an oversized record would fail the whole WriteMessages
// call.
func (s *Sink) record(ctx context.Context, ev *codec.Event, topic string, arena *[]byte) (kafka.Message, error) {
	if err := checkTopic(topic); err != nil {
		return kafka.Message{}, sinks.Permanent(fmt.Errorf("kafkasink: event %s: %w", ev.ID, err))
	}
	hs, value, err := codec.KafkaRecord(ctx, ev, s.mode)
	if err != nil {
		return kafka.Message{}, sinks.Permanent(fmt.Errorf("kafkasink: event %s: %w", ev.ID, err))
	}
	headers := make([]kafka.Header, len(hs), len(hs)+2)
	for i, h := range hs {
		headers[i] = kafka.Header{Key: h.Key, Value: h.Value}
	}
	if s.mode == codec.Binary {
		start := len(*arena)
		*arena = append(*arena, value...)
		value = (*arena)[start:len(*arena):len(*arena)]
	}
	m := kafka.Message{Topic: topic, Key: []byte(ev.PartitionKey()), Value: value, Headers: headers}
	if n := recordSizeBound(&m); n > maxRequestBytes {
		return kafka.Message{}, sinks.Permanent(fmt.Errorf("kafkasink: event %s: a record of up to %d bytes exceeds the %d-byte request limit: %w",
			ev.ID, n, maxRequestBytes, kafka.MessageSizeTooLarge))
	}
	return m, nil
}

// recordSizeBound is at least what kafka-go counts for m against BatchBytes
// (length prefixes are counted at their widest).
func recordSizeBound(m *kafka.Message) int {
	n := 4 + 1 + 1 + 8 + 4 + len(m.Key) + 4 + len(m.Value) + 5
	for _, h := range m.Headers {
		n += 5 + len(h.Key) + 5 + len(h.Value)
	}
	return n
}

// produce writes msgs[i], the record of events[i], for each i in idx with
// one WriteMessages call. It records each record's outcome in out[i] and
// returns a non-nil error only when the call failed as a whole.
func (s *Sink) produce(ctx context.Context, events []*codec.Event, msgs []kafka.Message, idx []int, out sinks.WriteErrors) error {
	batch := make([]kafka.Message, len(idx))
	for j, i := range idx {
		batch[j] = msgs[i]
	}
	err := s.w.WriteMessages(ctx, batch...)
	if err == nil {
		return nil
	}
	var werrs kafka.WriteErrors
	if errors.As(err, &werrs) && len(werrs) == len(batch) {
		var tooLarge []int
		for j, e := range werrs {
			switch {
			case e == nil:
			case isSizeError(e):
				tooLarge = append(tooLarge, idx[j])
			default:
				out[idx[j]] = produceError(events[idx[j]].ID, batch[j].Topic, e)
			}
		}
		s.isolate(ctx, events, msgs, tooLarge, out)
		return nil
	}
	if isSizeError(err) {
		s.isolate(ctx, events, msgs, idx, out)
		return nil
	}
	err = classify(s.wholeCallError(len(batch), err))
	if sinks.IsPermanent(err) {
		// A refused topic (authorization, invalid name) fails the call for
		// every topic in it; find out which topics are really refused.
		if groups := byTopic(msgs, idx); len(groups) > 1 {
			for _, g := range groups {
				if gerr := s.produce(ctx, events, msgs, g, out); gerr != nil {
					for _, i := range g {
						out[i] = gerr
					}
				}
			}
			return nil
		}
	}
	return err
}

// isolate sends msgs[i] for each i in idx once more, each in a request of
// its own: the brokers refused a batch that held them for its size, and
// only a record refused alone is too large. Such a record is marked
// permanent; the others are written now.
func (s *Sink) isolate(ctx context.Context, events []*codec.Event, msgs []kafka.Message, idx []int, out sinks.WriteErrors) {
	if len(idx) == 0 {
		return
	}
	batch := make([]kafka.Message, len(idx))
	for j, i := range idx {
		batch[j] = msgs[i]
	}
	err := s.solo.WriteMessages(ctx, batch...)
	if err == nil {
		return
	}
	var werrs kafka.WriteErrors
	if errors.As(err, &werrs) && len(werrs) == len(batch) {
		for j, e := range werrs {
			if e != nil {
				out[idx[j]] = produceError(events[idx[j]].ID, batch[j].Topic, e)
			}
		}
		return
	}
	err = classify(s.wholeCallError(len(batch), err))
	for _, i := range idx {
		out[i] = err
	}
}

func (s *Sink) wholeCallError(n int, err error) error {
	if errors.Is(err, io.ErrClosedPipe) { // kafka-go's answer after Writer.Close
		err = sinks.ErrClosed
	}
	return fmt.Errorf("kafkasink: write %d records: %w", n, err)
}

// byTopic groups idx by the topic of msgs[i], in order of first appearance.
func byTopic(msgs []kafka.Message, idx []int) [][]int {
	var groups [][]int
	pos := make(map[string]int)
	for _, i := range idx {
		t := msgs[i].Topic
		g, ok := pos[t]
		if !ok {
			g = len(groups)
			pos[t] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	return groups
}

// DeadLetter writes ev to the dead-letter topic as Write would have
// written it (same key, value and CloudEvent headers), plus the
// [sinks.HeaderDeadLetterReason] and [sinks.HeaderDeadLetterSink] headers.
// The record is sent in a request of its own. If it is too large for the
// dead-letter topic too, the error is permanent; give that topic a larger
// max.message.bytes than the event topics.
func (s *Sink) DeadLetter(ctx context.Context, ev *codec.Event, cause error) error {
	if s.closed.Load() {
		return fmt.Errorf("kafkasink: dead-letter: %w", sinks.ErrClosed)
	}
	var arena []byte
	if s.mode == codec.Binary {
		arena = make([]byte, 0, len(ev.Data))
	}
	m, err := s.record(ctx, ev, s.cfg.DeadLetterTopic, &arena)
	if err != nil {
		return err
	}
	m.Headers = append(m.Headers,
		kafka.Header{Key: sinks.HeaderDeadLetterReason, Value: []byte(sinks.DeadLetterReason(cause))},
		kafka.Header{Key: sinks.HeaderDeadLetterSink, Value: []byte(Name)},
	)
	err = s.solo.WriteMessages(ctx, m)
	var werrs kafka.WriteErrors
	if errors.As(err, &werrs) && len(werrs) == 1 {
		err = werrs[0]
	}
	if err != nil {
		if errors.Is(err, io.ErrClosedPipe) {
			err = sinks.ErrClosed
		}
		return classify(fmt.Errorf("kafkasink: dead-letter event %s to %s: %w", ev.ID, s.cfg.DeadLetterTopic, err))
	}
	return nil
}

// Ready asks a broker for its API versions over the sink's connections, a
// round trip that needs no topic and proves the brokers accept this
// client (TLS and SASL included). It honours ctx's deadline.
func (s *Sink) Ready(ctx context.Context) error {
	if s.closed.Load() {
		return fmt.Errorf("kafkasink: ready: %w", sinks.ErrClosed)
	}
	resp, err := s.client.ApiVersions(ctx, &kafka.ApiVersionsRequest{})
	if err == nil && resp.Error != nil {
		err = resp.Error
	}
	if err != nil {
		return fmt.Errorf("kafkasink: brokers %s not ready: %w", strings.Join(s.cfg.Brokers, ","), err)
	}
	return nil
}

// Close stops new writes, waits for the records already handed to kafka-go
// to be acknowledged or to fail, and closes the connections. When ctx ends
// first it returns ctx's error; kafka-go then finishes in the background,
// bounded by WriteTimeout. Close is idempotent.
func (s *Sink) Close(ctx context.Context) error {
	if s.closed.Swap(true) {
		return nil
	}
	done := make(chan error, 1)
	go func() {
		err := errors.Join(s.w.Close(), s.solo.Close())
		s.transport.CloseIdleConnections()
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("kafkasink: close: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kafkasink: close: %w", ctx.Err())
	}
}
