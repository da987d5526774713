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
// (sinks.Retrying) decides what to do. Before a message reaches the wire,
// the sink refuses what nats-server would answer by closing the connection
// or refusing it (a subject too long for its control line, an invalid
// subject, a message over max_payload): that message alone fails,
// permanently. When the connection closes anyway (nats.go does not
// reconnect a closed connection), the sink dials a new one.
package natssink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
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

// reconnectBufSize is -1: while the connection reconnects a publish fails
// at once instead of waiting in a buffer. A buffered message would reach
// the server after the write that made it had given up (and the spool had
// taken a copy), ahead of older events of its key.
const reconnectBufSize = -1

// deadLetterIDSuffix makes a dead letter's Nats-Msg-Id differ from the
// event's own: both subjects are in one stream, and the same id would make
// the stream drop the event itself if it were published after its dead
// letter within the duplicate window.
const deadLetterIDSuffix = ":deadletter"

// The JetStream publishing of a connection is spread over publishShards
// publishers, and each Write publishes through one of them in turn. A
// publisher handles its PubAcks in one goroutine (its inbox
// subscription's), under one lock, with one window of pending acks: with
// a single publisher the acks of concurrent Writes queue behind one
// another, and a full window stalls every Write.
const publishShards = 4

// publishWindow is the most PubAcks one shard waits for at once:
// publishShards × publishWindow messages may be in flight on a
// connection, more than the bridge admits by default
// (MISTBRIDGE_MAX_INFLIGHT_EVENTS=5000) plus what its spool delivers. A
// Write that finds its shard full waits for room, at most PublishTimeout
// and while ctx lasts, then fails transiently.
const publishWindow = 4096

// noRetries is the publish option of a dead letter: no retries inside
// nats.go. A retried publish would read the message after DeadLetter may
// have returned, and retries belong to sinks.Retrying.
var noRetries = jetstream.WithRetryAttempts(0)

// headerRoom is the capacity a pooled header map is made with: the
// CloudEvents headers and Nats-Msg-Id.
const headerRoom = 16

// Redial backoff: after a connection closes for good, the sink dials a
// new one at once when the old one had lived at least redialStable, and
// otherwise waits, from redialMin doubling up to redialMax, so that a
// server that closes every connection at once is not dialled in a loop.
const (
	redialMin    = 250 * time.Millisecond
	redialMax    = 15 * time.Second
	redialStable = 30 * time.Second
)

// Sink writes events to NATS. It is safe for concurrent use.
type Sink struct {
	cfg  Config
	mode codec.Mode
	log  *slog.Logger

	// subject is the subject of an event: codec.Subject under
	// cfg.SubjectPrefix, through a subjectCache. Tests replace it to
	// publish subjects the codec would never build.
	subject func(ev *codec.Event) string

	// cur is the connection in use. The redialer replaces it when it
	// closes for good; Write, DeadLetter and Ready load it once per call.
	cur atomic.Pointer[conn]

	// mu orders Close against the redialer's swap of cur: once closed is
	// set under mu, cur no longer changes.
	mu     sync.Mutex
	closed atomic.Bool

	// stop ends the workers (the redialer and, with JetStream, the stream
	// keeper); Close calls it and waits for them.
	stop    context.CancelFunc
	workers sync.WaitGroup

	// The stream keeper (JetStream only) makes sure the stream exists when
	// a connection comes up, and again when a publish finds no stream.
	streamOK atomic.Bool
	kick     chan struct{}

	shard atomic.Uint32 // the publishing shard of the next Write
}

// conn is one nats.Conn of the sink with what hangs off it. A nats.Conn
// that has closed (status CLOSED) never comes back, so the sink replaces
// the whole conn rather than waiting for it.
type conn struct {
	nc   *nats.Conn
	js   jetstream.JetStream // nil with core NATS: stream look-ups, dead letters
	pubs []*publisher        // the publishing shards (see publishShards); nil with core NATS
	born time.Time

	gone     chan struct{} // closed by the connection's ClosedHandler
	goneOnce sync.Once
}

func (c *conn) markGone() { c.goneOnce.Do(func() { close(c.gone) }) }

// failPending fails every message of c that waits for a PubAck: c has
// dropped or closed, and the PubAcks will not come.
func (c *conn) failPending(err error) {
	for _, p := range c.pubs {
		p.failAll(err)
	}
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
//
// nats.go reconnects a dropped connection, but a connection the server
// closed for good (after "maximum control line exceeded", for one) stays
// closed; the sink then dials a new one with the same options, at once
// and then with backoff (see redialMin), logs it once, and swaps it in for
// Write, DeadLetter and Ready, which fail transiently meanwhile. New
// starts that redialer and the stream keeper; [Sink.Close] stops them.
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
		cfg:  cfg,
		mode: mode,
		log:  log,
		kick: make(chan struct{}, 1),
	}
	s.subject = newSubjectCache(cfg.SubjectPrefix).subject

	c, err := s.dial()
	if err != nil {
		return nil, err
	}
	s.cur.Store(c)
	log.Info("nats sink configured", "config", cfg, "connected", c.nc.IsConnected())
	if cfg.JetStream && c.nc.IsConnected() {
		if err := s.ensureStream(ctx, c.js); err != nil {
			var apiErr *jetstream.APIError
			if errors.Is(err, errNoStream) || errors.As(err, &apiErr) && apiErr.Code == 400 {
				c.nc.Close()
				return nil, err
			}
			log.Warn("stream not ready yet; will retry", "stream", cfg.Stream, "err", err)
		}
	}
	workCtx, stop := context.WithCancel(context.Background())
	s.stop = stop
	s.workers.Add(1)
	go s.redial(workCtx)
	if cfg.JetStream {
		s.workers.Add(1)
		go s.keepStream(workCtx)
		if !s.streamOK.Load() {
			s.checkStream()
		}
	}
	return s, nil
}

// dial builds a new connection with the sink's options. With
// RetryOnFailedConnect, nats.Connect fails only for a setting it cannot
// use (an unreadable credentials file); an unreachable server makes a
// connection that keeps trying in the background.
func (s *Sink) dial() (*conn, error) {
	c := &conn{gone: make(chan struct{}), born: time.Now()}
	if s.cfg.JetStream {
		// Made before the connection, whose handlers fail their pending
		// messages.
		c.pubs = make([]*publisher, publishShards)
		for i := range c.pubs {
			c.pubs[i] = &publisher{window: publishWindow}
		}
	}
	nc, err := nats.Connect(strings.Join(splitURLs(s.cfg.URL), ","), s.options(c)...)
	if err != nil {
		return nil, fmt.Errorf("natssink: connect to %s: %w", redactURLs(s.cfg.URL), err)
	}
	c.nc = nc
	if !s.cfg.JetStream {
		return c, nil
	}
	for _, p := range c.pubs {
		p.nc = nc
	}
	if c.js, err = jetstream.New(nc); err != nil {
		nc.Close()
		return nil, fmt.Errorf("natssink: jetstream: %w", err)
	}
	return c, nil
}

// options are the nats.go options of connection c.
func (s *Sink) options(c *conn) []nats.Option {
	log := s.log
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
			c.failPending(nats.ErrDisconnected)
		}),
		// Core NATS reports a publish it refuses (a permissions violation)
		// only here, after the fact; it cannot be tied to a Write.
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Error("NATS refused an operation", "err", err)
		}),
		nats.ClosedHandler(func(*nats.Conn) {
			c.failPending(nats.ErrConnectionClosed)
			c.markGone()
		}),
	}
	if s.cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(s.cfg.CredsFile))
	}
	if s.cfg.Token != "" {
		opts = append(opts, nats.Token(s.cfg.Token))
	}
	if s.cfg.TLSCAFile != "" {
		opts = append(opts, nats.RootCAs(s.cfg.TLSCAFile))
	}
	return opts
}

// redial replaces the current connection whenever it closes for good
// (the server closed it after a protocol error such as "maximum control
// line exceeded", or an authorization error; nats.go reconnects a dropped
// connection by itself, but never a closed one), until ctx ends or the
// sink is closed. It logs each closure once, and a failing dial once per
// closure.
func (s *Sink) redial(ctx context.Context) {
	defer s.workers.Done()
	var delay time.Duration
	for {
		c := s.cur.Load()
		select {
		case <-ctx.Done():
			return
		case <-c.gone:
		}
		if s.closed.Load() {
			return
		}
		if time.Since(c.born) >= redialStable {
			delay = 0
		}
		s.log.Warn("NATS connection closed for good; dialling a new one",
			"url", redactURLs(s.cfg.URL), "err", c.nc.LastError(), "in", delay)
		next, ok := s.dialUntil(ctx, &delay)
		if !ok {
			return
		}
		s.mu.Lock()
		if s.closed.Load() {
			s.mu.Unlock()
			next.nc.Close()
			return
		}
		s.cur.Store(next)
		s.mu.Unlock()
		s.log.Info("dialled a new NATS connection", "connected", next.nc.IsConnected())
		s.checkStream()
	}
}

// dialUntil dials after *delay, and again with backoff while dialling
// fails, until it succeeds (true) or ctx ends (false). It leaves in
// *delay the wait before the next redial.
func (s *Sink) dialUntil(ctx context.Context, delay *time.Duration) (*conn, bool) {
	logged := false
	for {
		if *delay > 0 {
			t := time.NewTimer(*delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, false
			case <-t.C:
			}
		}
		*delay = min(max(2**delay, redialMin), redialMax)
		if ctx.Err() != nil {
			return nil, false
		}
		c, err := s.dial()
		if err == nil {
			return c, true
		}
		if !logged {
			s.log.Error("dialling NATS failed; retrying with backoff", "err", err)
			logged = true
		}
	}
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
// A message nats-server would refuse is not sent: its subject is longer
// than [MaxSubjectLen] ([ErrSubjectTooLong]) or not a valid publish subject
// ([ErrInvalidSubject]), or it is larger than the server's max_payload,
// headers included (nats.ErrMaxPayload). Its error is [sinks.Permanent],
// names the event, and the other events of the call are published.
//
// With JetStream, Write publishes every message before it waits for any
// PubAck, and concurrent Writes publish through different publishers (see
// publishShards), so no Write waits for the acks of another. Each message
// waits for its PubAck at most PublishTimeout after the Write published
// its messages (jetstream.ErrAsyncPublishTimeout), and while ctx lasts; a
// dropped connection fails the messages waiting (nats.ErrDisconnected). A
// message whose PubAck does not arrive in time may still be stored; its
// Nats-Msg-Id makes the retry a duplicate the stream drops. nats.go copies
// each message into its buffer when it is published, and retries none, so
// Write never reads the events after it returns.
func (s *Sink) Write(ctx context.Context, events []*codec.Event) error {
	if len(events) == 0 {
		return nil
	}
	if s.closed.Load() {
		return fmt.Errorf("natssink: write: %w", sinks.ErrClosed)
	}
	c := s.cur.Load()
	if err := s.connected(c); err != nil {
		return fmt.Errorf("natssink: publish %d messages: %w", len(events), err)
	}
	if c.js != nil {
		return s.writeJetStream(ctx, c, events)
	}
	return s.writeCore(ctx, c, events)
}

// writeJetStream publishes events with core NATS, a reply subject under
// the inbox of one of c's publishers each, and waits for their PubAcks
// there (see [publisher]).
func (s *Sink) writeJetStream(ctx context.Context, c *conn, events []*codec.Event) error {
	p := c.pubs[s.shard.Add(1)%uint32(len(c.pubs))]
	b := getBatch(len(events))
	defer b.release()
	var out sinks.WriteErrors // allocated on the first failure
	fail := func(i int, err error) {
		if out == nil {
			out = make(sinks.WriteErrors, len(events))
		}
		out[i] = err
	}
	w := &b.w
	n := 0
	for i, ev := range events {
		if err := s.eventMessage(ctx, c, b, i, ev); err != nil {
			fail(i, err)
			continue
		}
		w.pending[i] = true
		n++
	}
	if n == 0 {
		return orNil(out)
	}
	prefix, err := p.register(ctx, w, n, s.stallWait(ctx))
	if err != nil {
		for i, pend := range w.pending {
			if pend {
				fail(i, s.publishError(events[i], b.msgs[i].Subject, err))
			}
		}
		return orNil(out)
	}
	// The reply subjects of the Write share one string.
	replies := b.replies[:0]
	ends := b.ends
	for i, pend := range w.pending {
		if pend {
			replies = appendReply(replies, prefix, w.seq, i)
		}
		ends[i] = len(replies)
	}
	all := string(replies)
	b.replies = replies
	for i, pend := range w.pending {
		if !pend {
			continue
		}
		msg := &b.msgs[i]
		if i > 0 {
			msg.Reply = all[ends[i-1]:ends[i]]
		} else {
			msg.Reply = all[:ends[i]]
		}
		if err := c.nc.PublishMsg(msg); err != nil {
			p.resolve(w, i, err)
		}
	}
	// Each Write waits for its own PubAcks only; the ack of one message
	// does not wait for another's.
	timer := time.NewTimer(s.cfg.PublishTimeout)
	var ctxErr error
	select {
	case <-w.done:
	case <-ctx.Done():
		ctxErr = ctx.Err()
		p.abandon(w) // keeps the outcomes already known
	case <-timer.C:
		p.abandon(w)
	}
	timer.Stop()
	for i, err := range w.errs {
		switch {
		case err == nil:
		case errors.Is(err, errUnacked) && ctxErr != nil:
			fail(i, fmt.Errorf("natssink: publish to %s: waiting for the PubAck: %w", b.msgs[i].Subject, ctxErr))
		case errors.Is(err, errUnacked):
			fail(i, s.publishError(events[i], b.msgs[i].Subject, jetstream.ErrAsyncPublishTimeout))
		default:
			fail(i, s.publishError(events[i], b.msgs[i].Subject, err))
		}
	}
	return orNil(out)
}

// orNil returns out as an error, nil when it is nil.
func orNil(out sinks.WriteErrors) error {
	if out == nil {
		return nil
	}
	return out
}

// stallWait is how long a publish may wait for room in a full window:
// PublishTimeout, or less when ctx ends sooner.
func (s *Sink) stallWait(ctx context.Context) time.Duration {
	d := s.cfg.PublishTimeout
	if deadline, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(deadline))
	}
	return max(d, time.Millisecond)
}

func (s *Sink) writeCore(ctx context.Context, c *conn, events []*codec.Event) error {
	b := getBatch(len(events))
	defer b.release() // PublishMsg copies each message before it returns
	var out sinks.WriteErrors
	fail := func(i int, err error) {
		if out == nil {
			out = make(sinks.WriteErrors, len(events))
		}
		out[i] = err
	}
	published := 0
	for i, ev := range events {
		// A stream that captures these subjects drops duplicates by the
		// Nats-Msg-Id.
		if err := s.eventMessage(ctx, c, b, i, ev); err != nil {
			fail(i, err)
			continue
		}
		msg := &b.msgs[i]
		if err := c.nc.PublishMsg(msg); err != nil {
			fail(i, s.publishError(ev, msg.Subject, err))
			continue
		}
		published++
	}
	if published > 0 {
		if err := s.flush(ctx, c); err != nil {
			for i := range events {
				if out == nil || out[i] == nil {
					fail(i, err)
				}
			}
		}
	}
	if out != nil {
		return out
	}
	return nil
}

// pubBatch holds what a Write hands to nats.go: its messages, their
// headers and Nats-Msg-Id values, and its waiter, one allocation of each
// per Write rather than per message, and none once the pool is warm.
// nats.go copies a message into its buffer when PublishMsg returns, and a
// waiter is out of its publisher's reach once the Write stops waiting, so
// a batch goes back to the pool when its Write returns.
type pubBatch struct {
	msgs []nats.Msg
	hdrs []*msgHeaders // one per message, kept when the batch grows
	ends []int         // where the reply subject of each message ends
	// replies holds the reply subjects, copied into one string per Write.
	replies []byte
	w       waiter
}

// idSlot is the slot of msgHeaders.vals that holds the Nats-Msg-Id.
const idSlot = codec.NATSHeaderSlots

// msgHeaders holds the headers of one message of a batch. In binary mode
// h is the message's header map, whose value slices point into vals
// (vals[i] is the value of header codec.NATSHeaderName(i), vals[idSlot]
// the Nats-Msg-Id): each message that uses h after the first writes the
// values of its event into vals, and touches h only to add the headers
// its event has and the last one had not, or to delete the reverse. So the
// map is neither cleared nor assigned to per message. In the pool, vals is
// cleared (h then reads "" for every header), so it holds no event.
type msgHeaders struct {
	h    nats.Header
	set  uint16 // the codec headers in h: bit i for codec.NATSHeaderName(i)
	vals [codec.NATSHeaderSlots + 1]string
}

// id is the Nats-Msg-Id value slice, of length and capacity 1.
func (m *msgHeaders) id() []string { return m.vals[idSlot : idSlot+1 : idSlot+1] }

// sync makes the codec headers of h those of set.
func (m *msgHeaders) sync(set uint16) {
	for d := m.set &^ set; d != 0; d &= d - 1 {
		delete(m.h, codec.NATSHeaderName(bits.TrailingZeros16(d)))
	}
	for a := set &^ m.set; a != 0; a &= a - 1 {
		i := bits.TrailingZeros16(a)
		m.h[codec.NATSHeaderName(i)] = m.vals[i : i+1 : i+1]
	}
	m.set = set
}

var pubBatches = sync.Pool{New: func() any { return new(pubBatch) }}

func getBatch(n int) *pubBatch {
	b := pubBatches.Get().(*pubBatch)
	b.resize(n)
	return b
}

// resize makes b hold n messages. When it grows it keeps the messages'
// header maps it had, so that they are not built again.
func (b *pubBatch) resize(n int) {
	if cap(b.msgs) < n {
		b.msgs = make([]nats.Msg, n)
		hdrs := make([]*msgHeaders, n)
		copy(hdrs, b.hdrs[:cap(b.hdrs)])
		b.hdrs = hdrs
		b.ends = make([]int, n)
		b.w.pending = make([]bool, n)
		b.w.errs = make([]error, n)
	}
	b.msgs, b.hdrs, b.ends = b.msgs[:n], b.hdrs[:n], b.ends[:n]
	b.w.pending, b.w.errs = b.w.pending[:n], b.w.errs[:n]
}

// release clears b, so that the pool holds no event, and puts it back.
func (b *pubBatch) release() {
	clear(b.msgs)
	for _, m := range b.hdrs {
		if m != nil {
			clear(m.vals[:])
		}
	}
	clear(b.w.pending)
	clear(b.w.errs)
	b.w.done = nil
	pubBatches.Put(b)
}

// natsHeaderLen is the size of the "NATS/1.0\r\n" line and the final
// "\r\n" of a message's headers (see headerLen), and msgIDHeaderLen that
// of a Nats-Msg-Id header without its value.
const (
	natsHeaderLen  = len("NATS/1.0\r\n") + 2
	msgIDHeaderLen = len(jetstream.MsgIDHeader) + 4
)

// eventMessage encodes events[i] into b.msgs[i] as [Sink.message] does.
// In binary mode its headers go into b's pooled map for the message
// rather than a new one, and its size is checked from the sizes of its
// values as they are written rather than from the map.
func (s *Sink) eventMessage(ctx context.Context, c *conn, b *pubBatch, i int, ev *codec.Event) error {
	m := b.hdrs[i]
	if m == nil {
		m = new(msgHeaders)
		b.hdrs[i] = m
	}
	m.vals[idSlot] = ev.ID
	if s.mode != codec.Binary {
		return s.message(ctx, c, &b.msgs[i], ev, s.subject(ev), m.id())
	}
	msg := &b.msgs[i]
	size := s.binaryMessage(msg, m, ev)
	if err := checkSized(msg.Subject, size, c.nc.MaxPayload()); err != nil {
		return sinks.Permanent(fmt.Errorf("natssink: event %s: %w", ev.ID, err))
	}
	return nil
}

// binaryMessage encodes ev into msg in binary mode, with the headers of m
// (whose Nats-Msg-Id is set), and returns the size of msg that
// checkMessage would compute: its data and its headers in the wire format.
func (s *Sink) binaryMessage(msg *nats.Msg, m *msgHeaders, ev *codec.Event) int {
	set, size := codec.PutNATSHeaders((*[codec.NATSHeaderSlots]string)(m.vals[:idSlot]), ev)
	if m.h == nil {
		m.h = make(nats.Header, headerRoom)
		m.h[jetstream.MsgIDHeader] = m.id()
	}
	if set != m.set {
		m.sync(set)
	}
	*msg = nats.Msg{Subject: s.subject(ev), Header: m.h, Data: ev.Data}
	// headerLen(m.h): m.h holds the headers of set and the Nats-Msg-Id.
	return len(ev.Data) + size + natsHeaderLen + msgIDHeaderLen + len(m.vals[idSlot])
}

// flush waits until the server has processed everything published so
// far, at most PublishTimeout: while the connection is reconnecting a
// flush waits for the reconnection.
func (s *Sink) flush(ctx context.Context, c *conn) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	if err := c.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("natssink: flush: %w", err)
	}
	return nil
}

// message encodes ev into msg for subject, with Nats-Msg-Id = id[0] (the
// id JetStream drops duplicates by; id is the header's value slice, which
// the caller provides so that it need not be allocated per message) and
// extra headers, and checks it with [checkMessage]. Every error it returns
// is permanent.
func (s *Sink) message(ctx context.Context, c *conn, msg *nats.Msg, ev *codec.Event, subject string, id []string, extra ...string) error {
	h, data, err := codec.NATSMessage(ctx, ev, s.mode)
	if err != nil {
		return sinks.Permanent(fmt.Errorf("natssink: event %s: %w", ev.ID, err))
	}
	*msg = nats.Msg{Subject: subject, Header: nats.Header(h), Data: data}
	if msg.Header == nil {
		msg.Header = nats.Header{}
	}
	msg.Header[jetstream.MsgIDHeader] = id
	for i := 0; i+1 < len(extra); i += 2 {
		msg.Header.Set(extra[i], extra[i+1])
	}
	if err := checkMessage(msg, c.nc.MaxPayload()); err != nil {
		return sinks.Permanent(fmt.Errorf("natssink: event %s: %w", ev.ID, err))
	}
	return nil
}

func (s *Sink) publishError(ev *codec.Event, subject string, err error) error {
	if errors.Is(err, jetstream.ErrNoStreamResponse) {
		s.checkStream() // the stream may have been deleted
	}
	return classify(fmt.Errorf("natssink: event %s: publish to %s: %w", ev.ID, subject, err))
}

// Connected reports whether the sink's connection to NATS is up now (the
// mistbridge_sink_up metric reads it).
func (s *Sink) Connected() bool {
	if s.closed.Load() {
		return false
	}
	return s.cur.Load().nc.Status() == nats.CONNECTED
}

// connected fails when c is not up, with its status.
func (s *Sink) connected(c *conn) error {
	switch st := c.nc.Status(); st {
	case nats.CONNECTED:
		return nil
	case nats.CLOSED:
		return fmt.Errorf("%w (%s; dialling a new connection)", nats.ErrConnectionClosed, redactURLs(s.cfg.URL))
	default:
		return fmt.Errorf("%w (%s: %s)", nats.ErrDisconnected, redactURLs(s.cfg.URL), st)
	}
}

// DeadLetter publishes ev to the dead-letter subject as Write would have
// (same headers and payload), plus the [sinks.HeaderDeadLetterReason] and
// [sinks.HeaderDeadLetterSink] headers, and waits for the PubAck (JetStream)
// or a flush (core NATS). A dead letter over the server's max_payload is
// refused before it is sent, with a permanent error; other errors are
// classified as Write's are.
func (s *Sink) DeadLetter(ctx context.Context, ev *codec.Event, cause error) error {
	if s.closed.Load() {
		return fmt.Errorf("natssink: dead-letter: %w", sinks.ErrClosed)
	}
	c := s.cur.Load()
	if err := s.connected(c); err != nil {
		return fmt.Errorf("natssink: dead-letter event %s: %w", ev.ID, err)
	}
	msg := new(nats.Msg)
	err := s.message(ctx, c, msg, ev, s.cfg.DeadLetterSubject, []string{ev.ID + deadLetterIDSuffix},
		sinks.HeaderDeadLetterReason, sinks.DeadLetterReason(cause),
		sinks.HeaderDeadLetterSink, Name)
	if err != nil {
		return err
	}
	if c.js != nil {
		_, err = c.js.PublishMsg(ctx, msg, noRetries)
	} else if err = c.nc.PublishMsg(msg); err == nil {
		err = s.flush(ctx, c)
	}
	if err != nil {
		return classify(fmt.Errorf("natssink: dead-letter event %s to %s: %w", ev.ID, msg.Subject, err))
	}
	return nil
}

// Ready reports whether the current connection is up and, with JetStream,
// whether the stream answers an info request within ctx. While the sink
// dials a new connection after one closed, Ready returns an error wrapping
// nats.ErrConnectionClosed.
func (s *Sink) Ready(ctx context.Context) error {
	if s.closed.Load() {
		return fmt.Errorf("natssink: ready: %w", sinks.ErrClosed)
	}
	c := s.cur.Load()
	if err := s.connected(c); err != nil {
		return fmt.Errorf("natssink: not ready: %w", err)
	}
	if c.js == nil {
		return nil
	}
	if _, err := c.js.Stream(ctx, s.cfg.Stream); err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			s.checkStream()
		}
		return fmt.Errorf("natssink: not ready: stream %s: %w", s.cfg.Stream, err)
	}
	return nil
}

// Close stops new writes, stops the redialer and the stream keeper and
// waits for them (a dial in progress ends within nats.go's connect
// timeout, 2s per server), then drains the connection: what was published
// is flushed before it closes. When ctx ends first the connection is
// closed at once and ctx's error returned. Close is idempotent and safe to
// call concurrently with every other method.
func (s *Sink) Close(ctx context.Context) error {
	s.mu.Lock()
	already := s.closed.Swap(true)
	s.mu.Unlock()
	if already {
		return nil
	}
	// From here on cur does not change: the redialer swaps only under mu
	// while the sink is open.
	s.stop()
	s.workers.Wait()
	c := s.cur.Load()
	if err := c.nc.Drain(); err != nil {
		// Not connected (or closed already): there is nothing to flush.
		c.nc.Close()
		return nil
	}
	select {
	case <-c.gone:
		return nil
	case <-ctx.Done():
		c.nc.Close()
		return fmt.Errorf("natssink: close: %w", ctx.Err())
	}
}
