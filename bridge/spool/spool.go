// Package spool makes "acknowledged means safe" hold while a broker is
// down: events the brokers do not acknowledge in time are appended to a
// local write-ahead log, fsync'd (many requests share one fsync), and
// delivered in the background, in order, after any restart. See
// docs/spool.md for the format, the recovery rules and the modes.
package spool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/mistbridge/mistbridge/bridge"
	"github.com/mistbridge/mistbridge/codec"
	"github.com/mistbridge/mistbridge/sinks"
)

// Spool wraps a [bridge.Router] and implements [bridge.Delivery] with the
// acknowledgement mode of its [Config]. It is safe for concurrent use.
type Spool struct {
	cfg     Config
	router  *bridge.Router
	log     *slog.Logger
	budget  *budget
	names   []string // sinks in configuration order
	logs    map[string]*wlog
	metrics *metrics
	lock    *os.File
	recov   []Recovery

	stopDeliver   context.CancelFunc
	stopCommit    context.CancelFunc
	deliverers    sync.WaitGroup
	committers    sync.WaitGroup
	closeOnce     sync.Once
	closeErr      error
	deliverPolicy func() backoff.BackOff
}

var _ bridge.Delivery = (*Spool)(nil)

// options are test seams.
type options struct {
	open     openFunc
	segBytes int64
}

// New validates cfg, opens (creating) a log per output of router under
// cfg.Dir, recovers what an earlier run left there (a torn tail is cut off,
// logged and reported by [Spool.Recovery], never refused), registers the
// metrics with reg (which may be nil) and starts one committer and one
// deliverer per sink, so events spooled before a restart are delivered
// now. In broker mode without a Dir nothing is opened and the Spool is the
// Router. A nil log discards. It fails when cfg is invalid, the directory
// cannot be opened or is held by another process, or a metric is already
// registered.
func New(cfg Config, router *bridge.Router, log *slog.Logger, reg prometheus.Registerer) (*Spool, error) {
	return newSpool(cfg, router, log, reg, options{})
}

func newSpool(cfg Config, router *bridge.Router, log *slog.Logger, reg prometheus.Registerer, o options) (*Spool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	if router == nil {
		return nil, errors.New("spool: a Router is required")
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "spool")
	if o.open == nil {
		o.open = osOpen
	}
	if o.segBytes == 0 {
		// Small enough that delivered records give their room back soon,
		// large enough that files stay few.
		o.segBytes = min(64<<20, max(16<<10, cfg.MaxBytes/16))
	}
	s := &Spool{
		cfg: cfg, router: router, log: log,
		budget: &budget{max: cfg.MaxBytes},
		logs:   map[string]*wlog{},
		deliverPolicy: func() backoff.BackOff {
			return &backoff.ExponentialBackOff{
				InitialInterval: 250 * time.Millisecond, MaxInterval: 5 * time.Second,
				Multiplier: 2, RandomizationFactor: 0.5,
			}
		},
	}
	for _, out := range router.Outputs() {
		s.names = append(s.names, out.Name())
	}
	s.metrics = newMetrics(s)
	s.metrics.maxBytes.Set(float64(s.cfg.MaxBytes))
	if cfg.Mode == ModeBroker && cfg.Dir == "" {
		s.names = nil // nothing to drain
	} else if err := s.open(o); err != nil {
		return nil, err
	}
	for _, n := range s.names {
		s.metrics.init(n)
	}
	if reg != nil {
		if err := s.metrics.register(reg); err != nil {
			s.release()
			return nil, fmt.Errorf("spool: metrics: %w", err)
		}
	}
	cctx, stopCommit := context.WithCancel(context.Background())
	dctx, stopDeliver := context.WithCancel(context.Background())
	s.stopCommit, s.stopDeliver = stopCommit, stopDeliver
	for _, n := range s.names {
		l := s.logs[n]
		s.committers.Add(1)
		go func() {
			defer s.committers.Done()
			l.run(cctx)
		}()
		s.deliverers.Add(1)
		go func() {
			defer s.deliverers.Done()
			s.deliver(dctx, l, router.Output(n))
		}()
	}
	return s, nil
}

// open takes the directory's lock and opens every sink's log.
func (s *Spool) open(o options) error {
	if err := os.MkdirAll(s.cfg.Dir, 0o750); err != nil {
		return fmt.Errorf("spool: MISTBRIDGE_SPOOL_DIR=%q: %w", s.cfg.Dir, err)
	}
	lock, err := lockDir(filepath.Join(s.cfg.Dir, "LOCK"))
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.lock = lock
	for _, n := range s.names {
		l, rec, err := openLog(logOptions{
			name: n, dir: filepath.Join(s.cfg.Dir, n), log: s.log.With("sink", n),
			budget: s.budget, segBytes: o.segBytes, open: o.open,
		})
		if err != nil {
			s.release()
			return err
		}
		s.logs[n] = l
		s.recov = append(s.recov, rec)
		s.metrics.recovered.WithLabelValues(n).Add(float64(rec.Events))
		s.metrics.skipped.WithLabelValues(n).Add(float64(rec.SkippedBytes()))
		for _, sk := range rec.Skipped {
			l.log.Warn("spool recovery cut off an unreadable tail (no whole record in it)",
				"segment", sk.Segment, "offset", sk.Offset, "bytes", sk.Bytes, "reason", sk.Reason)
		}
		if rec.Events > 0 {
			l.log.Info("spool holds undelivered events; delivering them", "events", rec.Events, "bytes", rec.Bytes)
		}
	}
	s.warnStrangers()
	if s.budget.used.Load() > s.budget.max {
		s.log.Warn("spool holds more than MISTBRIDGE_SPOOL_MAX_BYTES; it takes nothing new until delivery makes room",
			"bytes", s.budget.used.Load(), "max_bytes", s.budget.max)
	}
	return nil
}

// warnStrangers logs the spooled sinks that are no longer configured:
// their events stay on disk, undelivered, until the sink is configured again.
func (s *Spool) warnStrangers() {
	ents, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if _, ok := s.logs[e.Name()]; ok {
			continue
		}
		st, err := inspectSink(filepath.Join(s.cfg.Dir, e.Name()), e.Name(), time.Now())
		if err == nil && st.Events > 0 {
			s.log.Warn("spooled events for a sink that is not configured stay undelivered", "sink", e.Name(), "events", st.Events)
		}
	}
}

// release closes the files opened so far (New failed or Close).
func (s *Spool) release() {
	for _, l := range s.logs {
		if err := l.close(); err != nil {
			s.log.Warn("closing spool segment", "sink", l.name, "err", err)
		}
	}
	if s.lock != nil {
		s.lock.Close()
		s.lock = nil
	}
}

// Recovery reports what New found in each sink's log: the undelivered
// events it will deliver, and any torn or corrupt tail it cut off.
func (s *Spool) Recovery() []Recovery { return s.recov }

// Check implements [bridge.Delivery] with the Router's routes.
func (s *Spool) Check(topic string) error { return s.router.Check(topic) }

// Deliver implements [bridge.Delivery]. It returns nil once every event is
// acknowledged by each output it is routed to or fsync'd to that output's
// log. Per output: when its log holds events (or is being appended to),
// the events are appended behind them so nothing overtakes what is
// spooled; in spool mode they are appended; in hybrid mode the output gets
// them for at most AckWait, and what it has not acknowledged by then is
// appended. An event that cannot be spooled makes the error wrap
// [bridge.ErrSpoolFull]; an event the output refused permanently and whose
// dead letter was refused too is not spooled (it would block its log) and
// its error is returned. In broker mode it is [bridge.Router.Deliver].
func (s *Spool) Deliver(ctx context.Context, events []*codec.Event) error {
	if len(events) == 0 {
		return nil
	}
	if s.cfg.Mode == ModeBroker {
		return s.router.Deliver(ctx, events)
	}
	var buf [4]bridge.Group // no allocation for up to 4 outputs
	plan, err := s.router.Groups(buf[:0], events)
	if err != nil {
		return err
	}
	recv := time.Now()
	if len(plan) == 1 {
		return s.deliverTo(ctx, plan[0].Output, plan[0].Events, recv)
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for _, g := range plan {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.deliverTo(ctx, g.Output, g.Events, recv); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (s *Spool) deliverTo(ctx context.Context, name string, evs []*codec.Event, recv time.Time) error {
	l := s.logs[name]
	if s.cfg.Mode == ModeSpool || l.backlog() {
		return s.append(ctx, l, evs, recv)
	}
	actx, cancel := context.WithTimeout(ctx, s.cfg.AckWait)
	err := s.router.Output(name).Deliver(actx, evs)
	cancel()
	if err == nil {
		return nil
	}
	if sinks.IsPermanent(err) {
		return err
	}
	s.log.Debug("not acknowledged within the ack wait; spooling", "sink", name, "events", len(evs), "err", err)
	return s.append(ctx, l, evs, recv)
}

// append encodes evs and appends them to l as one unit.
func (s *Spool) append(ctx context.Context, l *wlog, evs []*codec.Event, recv time.Time) error {
	if parent := trace.SpanFromContext(ctx); parent.IsRecording() { // traced: a span of its own
		var sp trace.Span
		ctx, sp = parent.TracerProvider().Tracer(bridge.TracerName).Start(ctx, "spool.append "+l.name,
			trace.WithAttributes(attribute.Int("mistbridge.events", len(evs))))
		defer sp.End()
	}
	payloads := make([][]byte, len(evs))
	for i, ev := range evs {
		payloads[i] = encodeRecord(make([]byte, 0, recordSize(ev)), ev, recv)
	}
	if err := l.Append(ctx, payloads, recv); err != nil {
		return err
	}
	s.metrics.appended.WithLabelValues(l.name).Add(float64(len(evs)))
	return nil
}

// Failing implements [bridge.Delivery]: true only when the spool cannot
// take more (its bound is reached, or a disk failure stopped a log). In
// broker mode it is the Router's.
func (s *Spool) Failing() bool {
	if s.cfg.Mode == ModeBroker {
		return s.router.Failing()
	}
	if s.budget.full.Load() {
		return true
	}
	for _, l := range s.logs {
		if l.isBroken() {
			return true
		}
	}
	return false
}

// Ready implements [bridge.Delivery]: each sink's state comes from the
// Router, and the spool's from the logs. Outside broker mode the bridge is
// ready while the spool can absorb, even when a broker is down.
func (s *Spool) Ready(ctx context.Context) bridge.Readiness {
	rd := s.router.Ready(ctx)
	if s.cfg.Mode != ModeBroker {
		rd.Ready = !s.Failing()
	}
	if len(s.logs) == 0 {
		return rd
	}
	st := &bridge.SpoolState{MaxBytes: s.cfg.MaxBytes, Sinks: make(map[string]int64, len(s.names))}
	now := time.Now()
	for _, n := range s.names {
		l := s.logs[n]
		ev := l.events.Load()
		st.Events += ev
		st.Bytes += l.pending.Load()
		st.Sinks[n] = ev
		st.OldestAgeSeconds = max(st.OldestAgeSeconds, oldestAge(l, now))
	}
	rd.Spool = st
	return rd
}

// deliver drains l to out until ctx ends: batches of spooled events go to
// the output, and are removed only once it returned nil. While the output
// fails the same batch is tried again after a jittered backoff.
func (s *Spool) deliver(ctx context.Context, l *wlog, out bridge.Output) {
	log := l.log
	bo := s.deliverPolicy()
	var (
		recs  []record
		batch []*codec.Event
		// probe sends the oldest event alone first, at start and after a
		// failure: a batch sent while the broker comes back tends to fail
		// in part, and the sink's retry of the failed part would put it
		// behind later events of the same key.
		probe = true
	)
	for {
		if batch == nil {
			var err error
			recs, err = l.read(s.cfg.BatchEvents, s.cfg.BatchBytes)
			if err == nil && len(recs) == 0 {
				select {
				case <-ctx.Done():
					return
				case <-l.notify:
					continue
				}
			}
			if err == nil {
				batch, err = decodeBatch(recs)
				if err == nil {
					_, recv, _ := decodeRecord(recs[0].payload)
					l.head.Store(recv.UnixNano())
				}
			}
			if err != nil {
				batch = nil
				log.Error("reading the spool", "err", err)
				if !sleep(ctx, bo.NextBackOff()) {
					return
				}
				continue
			}
		}
		n := len(batch)
		if probe {
			n = 1
		}
		dctx, cancel := context.WithTimeout(ctx, s.cfg.DeliverTimeout)
		// Receipt to acknowledgement is counted from the oldest event's receipt.
		dctx = sinks.WithReceived(dctx, time.Unix(0, l.head.Load()))
		err := out.Deliver(dctx, batch[:n])
		cancel()
		if err == nil {
			var bytes int64
			for _, r := range recs[:n] {
				bytes += r.size
			}
			l.ack(recs[n-1].seq, n, bytes)
			s.metrics.delivered.WithLabelValues(l.name).Add(float64(n))
			bo.Reset()
			probe = false
			batch, recs = batch[n:], recs[n:]
			if len(batch) == 0 {
				batch, recs = nil, nil
			}
			continue
		}
		if ctx.Err() != nil {
			return
		}
		probe = true
		wait := bo.NextBackOff()
		if sinks.IsPermanent(err) {
			// Refused, and its dead letter refused too: keep it (the
			// spool never drops) and say so loudly; an operator fixes
			// the dead-letter destination.
			log.Error("spooled events refused by the sink and by its dead-letter destination; retrying", "events", len(batch), "retry_in", wait, "err", err)
		} else {
			log.Warn("delivering spooled events failed; retrying", "events", len(batch), "retry_in", wait, "err", err)
		}
		if !sleep(ctx, wait) {
			return
		}
	}
}

// decodeBatch decodes records read from a log.
func decodeBatch(recs []record) ([]*codec.Event, error) {
	evs := make([]codec.Event, len(recs))
	out := make([]*codec.Event, len(recs))
	for i, r := range recs {
		ev, _, err := decodeRecord(r.payload)
		if err != nil {
			return nil, fmt.Errorf("spool: record %d: %w", r.seq, err)
		}
		evs[i] = ev
		out[i] = &evs[i]
	}
	return out, nil
}

// sleep waits d or until ctx ends, reporting whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Close stops the deliverers (a delivery in flight is cancelled; its
// events stay spooled and are delivered after the next start), then the
// committers, and releases the files. Call it after the server stopped
// taking requests: a Deliver after Close fails, wrapping
// [bridge.ErrSpoolFull]. When ctx ends first Close returns its error and
// leaves the goroutines to stop on their own. Close is idempotent.
func (s *Spool) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.stopDeliver()
		if err := wait(ctx, &s.deliverers); err != nil {
			s.closeErr = fmt.Errorf("spool: close: waiting for the deliverers: %w", err)
			s.stopCommit()
			return
		}
		s.stopCommit()
		if err := wait(ctx, &s.committers); err != nil {
			s.closeErr = fmt.Errorf("spool: close: waiting for the committers: %w", err)
			return
		}
		s.release()
	})
	return s.closeErr
}

// wait waits for wg, or until ctx ends.
func wait(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
