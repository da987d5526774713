// Package natssink publishes CloudEvents to NATS with
// github.com/nats-io/nats.go, in the CloudEvents NATS protocol binding
// ([codec.NATSMessage]): one message per event on the subject
// <prefix>.<topic>.<org>.<site> ([codec.Subject]).
//
// With JetStream (the default) every message carries Nats-Msg-Id = the
// CloudEvent id, so the stream drops the duplicates that retries make, and
// Write returns only when the stream has acknowledged each message. With
// core NATS, Write returns once the server has received the messages; core
// NATS is at-most-once: nothing stores them and a subscriber that is not
// connected misses them.
//
// The sink does not retry: a failed message comes back as an error,
// [sinks.Permanent] when publishing it again cannot succeed, and the caller
// (sinks.Retrying) decides what to do.
package natssink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mistbridge/mistbridge/codec"
	"github.com/mistbridge/mistbridge/sinks"
)

// Name is what [Sink.Name] returns and what a dead-letter message carries
// in its [sinks.HeaderDeadLetterSink] header.
const Name = "nats"

// reconnectBufSize is how much the connection buffers while it reconnects.
const reconnectBufSize = 8 << 20

// deadLetterIDSuffix makes a dead letter's Nats-Msg-Id differ from the
// event's own: both subjects are in one stream, and the same id would make
// the stream drop the event itself if it were published after its dead
// letter within the duplicate window.
const deadLetterIDSuffix = ":deadletter"

// Sink writes events to NATS. It is safe for concurrent use.
type Sink struct {
	cfg  Config
	mode codec.Mode
	nc   *nats.Conn
	js   jetstream.JetStream // nil with core NATS
	log  *slog.Logger

	closed   atomic.Bool
	connGone chan struct{} // closed by the connection's ClosedHandler

	// The stream keeper (JetStream only) makes sure the stream exists when
	// the connection comes up, and again when a publish finds no stream.
	streamOK   atomic.Bool
	kick       chan struct{}
	stopKeeper context.CancelFunc
	keeper     sync.WaitGroup
}

var _ sinks.Sink = (*Sink)(nil)

// New validates cfg, applies its defaults, connects and returns a Sink.
//
// The connection retries forever, also when the first attempt fails, so
// the bridge can start before NATS; writes fail (transiently) until it is
// up. With JetStream, once connected, New makes sure the stream exists
// (creating it when cfg.CreateStream is set) within ctx; a stream that
// cannot be created for a reason other than a transient one (it is missing
// and CreateStream is false, its subjects overlap another stream's) fails
// New. When NATS is not reachable yet, a background keeper does it on
// connect. A nil log discards.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("natssink: %w", err)
	}
	if cfg.URL == "" {
		return nil, fmt.Errorf("natssink: %sURL is empty: start the embedded server (StartEmbedded) and pass its ClientURL", envPrefix)
	}
	cfg = cfg.withDefaults()
	mode, _ := codec.ParseMode(cfg.ContentMode) // checked by Validate
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("sink", Name)
	s := &Sink{
		cfg:      cfg,
		mode:     mode,
		log:      log,
		connGone: make(chan struct{}),
		kick:     make(chan struct{}, 1),
	}

	opts := []nats.Option{
		nats.Name("mistbridge"),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(time.Second),
		nats.ReconnectBufSize(reconnectBufSize),
		nats.ConnectHandler(func(nc *nats.Conn) {
			log.Info("connected to NATS", "url", nc.ConnectedUrlRedacted())
			s.checkStream()
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("reconnected to NATS", "url", nc.ConnectedUrlRedacted())
			s.checkStream()
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil && !s.closed.Load() {
				log.Warn("disconnected from NATS", "err", err)
			}
		}),
		// Core NATS reports a publish it refuses (a permissions violation)
		// only here, after the fact; it cannot be tied to a Write.
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Error("NATS refused an operation", "err", err)
		}),
		nats.ClosedHandler(func(*nats.Conn) { close(s.connGone) }),
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
	nc, err := nats.Connect(strings.Join(splitURLs(cfg.URL), ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("natssink: connect to %s: %w", redactURLs(cfg.URL), err)
	}
	s.nc = nc
	log.Info("nats sink configured", "config", cfg, "connected", nc.IsConnected())
	if !cfg.JetStream {
		return s, nil
	}

	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncTimeout(cfg.PublishTimeout),
		jetstream.WithPublishAsyncMaxPending(4096),
	)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("natssink: jetstream: %w", err)
	}
	s.js = js
	if nc.IsConnected() {
		if err := s.ensureStream(ctx); err != nil {
			var apiErr *jetstream.APIError
			if errors.Is(err, errNoStream) || errors.As(err, &apiErr) && apiErr.Code == 400 {
				nc.Close()
				return nil, err
			}
			log.Warn("stream not ready yet; will retry", "stream", cfg.Stream, "err", err)
		}
	}
	keeperCtx, stop := context.WithCancel(context.Background())
	s.stopKeeper = stop
	s.keeper.Add(1)
	go s.keepStream(keeperCtx)
	if !s.streamOK.Load() {
		s.checkStream()
	}
	return s, nil
}

// Name returns "nats".
func (s *Sink) Name() string { return Name }

// Write publishes one message per event and blocks until the stream
// acknowledges each (JetStream) or the server has received them all (core
// NATS: a flush), or ctx ends. It returns nil, a [sinks.WriteErrors] in the
// order of events, or an error for the whole call (not connected,
// [sinks.ErrClosed]). When the connection is down Write fails at once
// rather than buffering messages it could not confirm.
//
// With JetStream, a message whose PubAck does not arrive before ctx ends
// may still be stored; its Nats-Msg-Id makes the retry a duplicate the
// stream drops. nats.go copies each message when it is published, so Write
// never reads the events after it returns.
func (s *Sink) Write(ctx context.Context, events []*codec.Event) error {
	if len(events) == 0 {
		return nil
	}
	if s.closed.Load() {
		return fmt.Errorf("natssink: write: %w", sinks.ErrClosed)
	}
	if err := s.connected(); err != nil {
		return fmt.Errorf("natssink: publish %d messages: %w", len(events), err)
	}
	if s.js != nil {
		return s.writeJetStream(ctx, events)
	}
	return s.writeCore(ctx, events)
}

func (s *Sink) writeJetStream(ctx context.Context, events []*codec.Event) error {
	out := make(sinks.WriteErrors, len(events))
	futures := make([]jetstream.PubAckFuture, len(events))
	for i, ev := range events {
		msg, err := s.message(ctx, ev, codec.Subject(s.cfg.SubjectPrefix, ev))
		if err != nil {
			out[i] = err
			continue
		}
		// No retries inside nats.go: a retried publish would read the
		// message after Write may have returned, and retries belong to
		// sinks.Retrying.
		f, err := s.js.PublishMsgAsync(msg, jetstream.WithMsgID(ev.ID), jetstream.WithRetryAttempts(0))
		if err != nil {
			out[i] = s.publishError(msg.Subject, err)
			continue
		}
		futures[i] = f
	}
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			out[i] = s.publishError(f.Msg().Subject, err)
		case <-ctx.Done():
			// Keep the outcomes that are already known; the rest are unknown.
			for j := i; j < len(futures); j++ {
				if futures[j] == nil {
					continue
				}
				select {
				case <-futures[j].Ok():
				case err := <-futures[j].Err():
					out[j] = s.publishError(futures[j].Msg().Subject, err)
				default:
					out[j] = fmt.Errorf("natssink: publish to %s: waiting for the PubAck: %w", futures[j].Msg().Subject, ctx.Err())
				}
			}
			return out
		}
	}
	return nilIfNone(out)
}

func (s *Sink) writeCore(ctx context.Context, events []*codec.Event) error {
	out := make(sinks.WriteErrors, len(events))
	published := 0
	for i, ev := range events {
		msg, err := s.message(ctx, ev, codec.Subject(s.cfg.SubjectPrefix, ev))
		if err != nil {
			out[i] = err
			continue
		}
		// A stream that captures these subjects drops duplicates by this id.
		msg.Header.Set(jetstream.MsgIDHeader, ev.ID)
		if err := s.nc.PublishMsg(msg); err != nil {
			out[i] = s.publishError(msg.Subject, err)
			continue
		}
		published++
	}
	if published > 0 {
		if err := s.flush(ctx); err != nil {
			for i, e := range out {
				if e == nil {
					out[i] = err
				}
			}
		}
	}
	return nilIfNone(out)
}

// flush waits until the server has processed everything published so
// far, at most PublishTimeout: while the connection is reconnecting a
// flush waits for the reconnection.
func (s *Sink) flush(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	if err := s.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("natssink: flush: %w", err)
	}
	return nil
}

// message encodes ev for subject.
func (s *Sink) message(ctx context.Context, ev *codec.Event, subject string) (*nats.Msg, error) {
	h, data, err := codec.NATSMessage(ctx, ev, s.mode)
	if err != nil {
		return nil, sinks.Permanent(fmt.Errorf("natssink: event %s: %w", ev.ID, err))
	}
	return &nats.Msg{Subject: subject, Header: nats.Header(h), Data: data}, nil
}

func (s *Sink) publishError(subject string, err error) error {
	if errors.Is(err, jetstream.ErrNoStreamResponse) {
		s.checkStream() // the stream may have been deleted
	}
	return classify(fmt.Errorf("natssink: publish to %s: %w", subject, err))
}

// connected fails when the connection is not up, with the status.
func (s *Sink) connected() error {
	switch st := s.nc.Status(); st {
	case nats.CONNECTED:
		return nil
	case nats.CLOSED:
		return fmt.Errorf("%w (%s)", nats.ErrConnectionClosed, redactURLs(s.cfg.URL))
	default:
		return fmt.Errorf("%w (%s: %s)", nats.ErrDisconnected, redactURLs(s.cfg.URL), st)
	}
}

func nilIfNone(out sinks.WriteErrors) error {
	for _, err := range out {
		if err != nil {
			return out
		}
	}
	return nil
}

// DeadLetter publishes ev to the dead-letter subject as Write would have
// (same headers and payload), plus the [sinks.HeaderDeadLetterReason] and
// [sinks.HeaderDeadLetterSink] headers, and waits for the PubAck (JetStream)
// or a flush (core NATS).
func (s *Sink) DeadLetter(ctx context.Context, ev *codec.Event, cause error) error {
	if s.closed.Load() {
		return fmt.Errorf("natssink: dead-letter: %w", sinks.ErrClosed)
	}
	if err := s.connected(); err != nil {
		return fmt.Errorf("natssink: dead-letter event %s: %w", ev.ID, err)
	}
	msg, err := s.message(ctx, ev, s.cfg.DeadLetterSubject)
	if err != nil {
		return err
	}
	msg.Header.Set(sinks.HeaderDeadLetterReason, sinks.DeadLetterReason(cause))
	msg.Header.Set(sinks.HeaderDeadLetterSink, Name)
	if s.js != nil {
		_, err = s.js.PublishMsg(ctx, msg, jetstream.WithMsgID(ev.ID+deadLetterIDSuffix), jetstream.WithRetryAttempts(0))
	} else {
		msg.Header.Set(jetstream.MsgIDHeader, ev.ID+deadLetterIDSuffix)
		if err = s.nc.PublishMsg(msg); err == nil {
			err = s.flush(ctx)
		}
	}
	if err != nil {
		return classify(fmt.Errorf("natssink: dead-letter event %s to %s: %w", ev.ID, msg.Subject, err))
	}
	return nil
}

// Ready reports whether the connection is up and, with JetStream, whether
// the stream answers an info request within ctx.
func (s *Sink) Ready(ctx context.Context) error {
	if s.closed.Load() {
		return fmt.Errorf("natssink: ready: %w", sinks.ErrClosed)
	}
	if err := s.connected(); err != nil {
		return fmt.Errorf("natssink: not ready: %w", err)
	}
	if s.js == nil {
		return nil
	}
	if _, err := s.js.Stream(ctx, s.cfg.Stream); err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			s.checkStream()
		}
		return fmt.Errorf("natssink: not ready: stream %s: %w", s.cfg.Stream, err)
	}
	return nil
}

// Close stops new writes and drains the connection: what was published is
// flushed before it closes. When ctx ends first the connection is closed at
// once and ctx's error returned. Close is idempotent.
func (s *Sink) Close(ctx context.Context) error {
	if s.closed.Swap(true) {
		return nil
	}
	if s.stopKeeper != nil {
		s.stopKeeper()
		s.keeper.Wait()
	}
	if err := s.nc.Drain(); err != nil {
		// Not connected: there is nothing to flush.
		s.nc.Close()
		return nil
	}
	select {
	case <-s.connGone:
		return nil
	case <-ctx.Done():
		s.nc.Close()
		return fmt.Errorf("natssink: close: %w", ctx.Err())
	}
}
