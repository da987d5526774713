package sinks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mistbridge/mistbridge/codec"
)

// RetryPolicy tunes [Retrying]. The zero value means the documented defaults.
type RetryPolicy struct {
	// Initial is the first backoff. The default is 100ms.
	Initial time.Duration
	// Max caps one backoff. The default is 2s.
	Max time.Duration
	// Multiplier grows the backoff after each attempt. The default is 2.
	Multiplier float64
}

func (p RetryPolicy) backoff() *backoff.ExponentialBackOff {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     p.Initial,
		MaxInterval:         p.Max,
		Multiplier:          p.Multiplier,
		RandomizationFactor: 0.5, // full spread keeps many stalled requests from retrying in step
	}
	if b.InitialInterval <= 0 {
		b.InitialInterval = 100 * time.Millisecond
	}
	if b.MaxInterval <= 0 {
		b.MaxInterval = 2 * time.Second
	}
	if b.Multiplier < 1 {
		b.Multiplier = 2
	}
	b.Reset()
	return b
}

// Metrics counts what [Retrying] does, by sink.
type Metrics struct {
	published   *prometheus.CounterVec
	retries     *prometheus.CounterVec
	deadLetters *prometheus.CounterVec
	failures    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	batch       *prometheus.HistogramVec
	up          *upCollector
}

// upCollector reports mistbridge_sink_up for every [Retrying] made with
// these metrics, read when scraped: 1 while the sink's last delivery
// succeeded and (for a sink that tells) its connection is up.
type upCollector struct {
	desc *prometheus.Desc
	mu   sync.Mutex
	outs map[string]*Retrying
}

func (u *upCollector) Describe(ch chan<- *prometheus.Desc) { ch <- u.desc }

func (u *upCollector) Collect(ch chan<- prometheus.Metric) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for name, r := range u.outs {
		v := 1.0
		if !r.up() {
			v = 0
		}
		ch <- prometheus.MustNewConstMetric(u.desc, prometheus.GaugeValue, v, name)
	}
}

// connector is a sink that tells whether its broker connection is up.
type connector interface{ Connected() bool }

// up reports the sink's state for mistbridge_sink_up.
func (r *Retrying) up() bool {
	if r.failing.Load() {
		return false
	}
	if c, ok := r.Sink.(connector); ok {
		return c.Connected()
	}
	return true
}

// NewMetrics registers the delivery metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mistbridge_sink_published_events_total",
			Help: "Events acknowledged by a sink's broker.",
		}, []string{"sink"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mistbridge_sink_retries_total",
			Help: "Events written again after a transient error.",
		}, []string{"sink"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mistbridge_sink_dead_letters_total",
			Help: "Events sent to the dead-letter destination after a permanent error.",
		}, []string{"sink"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mistbridge_sink_failed_events_total",
			Help: "Events that could not be delivered within the deadline (answered with an error).",
		}, []string{"sink"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mistbridge_delivery_latency_seconds",
			Help:    "Time from receiving events to their broker's acknowledgement, by sink (spooled events included).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"sink"}),
		batch: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mistbridge_sink_batch_events",
			Help:    "Events handed to a sink in one delivery, by sink.",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000},
		}, []string{"sink"}),
		up: &upCollector{
			desc: prometheus.NewDesc("mistbridge_sink_up", "1 while the sink's last delivery succeeded and its broker connection is up, else 0.", []string{"sink"}, nil),
			outs: map[string]*Retrying{},
		},
	}
	if reg != nil {
		reg.MustRegister(m.published, m.retries, m.deadLetters, m.failures, m.latency, m.batch, m.up)
	}
	return m
}

// Retrying delivers through a [Sink] with the bridge's policy: transient
// failures are written again with jittered exponential backoff until ctx's
// deadline; permanent failures go to the sink's dead-letter destination.
// It is safe for concurrent use.
type Retrying struct {
	Sink
	policy  RetryPolicy
	metrics *Metrics
	log     *slog.Logger
	failing atomic.Bool
}

// NewRetrying wraps s. metrics may be nil.
func NewRetrying(s Sink, p RetryPolicy, m *Metrics, log *slog.Logger) *Retrying {
	if m == nil {
		m = NewMetrics(nil)
	}
	// Every series of the sink exists at zero from start: dashboards and
	// alerts need them before the first failure.
	name := s.Name()
	m.published.WithLabelValues(name)
	m.retries.WithLabelValues(name)
	m.deadLetters.WithLabelValues(name)
	m.failures.WithLabelValues(name)
	m.latency.WithLabelValues(name)
	m.batch.WithLabelValues(name)
	r := &Retrying{Sink: s, policy: p, metrics: m, log: log.With("sink", s.Name())}
	m.up.mu.Lock()
	m.up.outs[name] = r
	m.up.mu.Unlock()
	return r
}

// Failing reports whether the last delivery ended with a transient error
// that retries did not clear: the broker looks down.
func (r *Retrying) Failing() bool { return r.failing.Load() }

// Deliver returns nil once every event is acknowledged by the broker or,
// after a permanent error, by the dead-letter destination. Otherwise it
// returns the last error, wrapping ctx's error when the deadline cut
// retries short. Events already acknowledged are not written again.
func (r *Retrying) Deliver(ctx context.Context, events []*codec.Event) error {
	pending := events
	bo := r.policy.backoff()
	start := received(ctx)
	if start.IsZero() {
		start = time.Now()
	}
	r.metrics.batch.WithLabelValues(r.Name()).Observe(float64(len(events)))
	for attempt := 1; ; attempt++ {
		err := r.Sink.Write(ctx, pending)
		if err == nil {
			r.metrics.published.WithLabelValues(r.Name()).Add(float64(len(pending)))
			r.metrics.latency.WithLabelValues(r.Name()).Observe(time.Since(start).Seconds())
			r.failing.Store(false)
			return nil
		}
		var retry []*codec.Event
		var lastErr error
		for i, ev := range pending {
			evErr := eventError(err, i)
			switch {
			case evErr == nil:
				r.metrics.published.WithLabelValues(r.Name()).Inc()
			case IsPermanent(evErr):
				if dlErr := r.deadLetter(ctx, ev, evErr); dlErr != nil {
					r.metrics.failures.WithLabelValues(r.Name()).Add(float64(len(pending) - i))
					return dlErr
				}
			default:
				retry = append(retry, ev)
				lastErr = evErr
			}
		}
		if len(retry) == 0 {
			r.metrics.latency.WithLabelValues(r.Name()).Observe(time.Since(start).Seconds())
			r.failing.Store(false)
			return nil
		}
		pending = retry
		wait := bo.NextBackOff()
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			r.failing.Store(true)
			r.metrics.failures.WithLabelValues(r.Name()).Add(float64(len(pending)))
			r.log.Warn("delivery failed", "events", len(pending), "attempts", attempt, "err", lastErr)
			return fmt.Errorf("sinks: %s: %d events not acknowledged after %d attempts: %w", r.Name(), len(pending), attempt, lastErr)
		}
		r.metrics.retries.WithLabelValues(r.Name()).Add(float64(len(pending)))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			r.failing.Store(true)
			r.metrics.failures.WithLabelValues(r.Name()).Add(float64(len(pending)))
			return fmt.Errorf("sinks: %s: %d events not acknowledged after %d attempts: %w (last error: %w)", r.Name(), len(pending), attempt, ctx.Err(), lastErr)
		case <-t.C:
		}
	}
}

// deadLetter writes ev to the dead-letter destination, retrying transient
// errors like a normal write. A dead letter that fails permanently too is
// returned: the event cannot be kept anywhere, so the request must fail.
func (r *Retrying) deadLetter(ctx context.Context, ev *codec.Event, cause error) error {
	bo := r.policy.backoff()
	for {
		err := r.Sink.DeadLetter(ctx, ev, cause)
		if err == nil {
			r.metrics.deadLetters.WithLabelValues(r.Name()).Inc()
			r.log.Warn("event dead-lettered", "id", ev.ID, "topic", ev.Topic, "cause", cause)
			return nil
		}
		if IsPermanent(err) {
			return fmt.Errorf("sinks: %s: event %s refused (%w) and so was its dead letter: %w", r.Name(), ev.ID, cause, err)
		}
		wait := bo.NextBackOff()
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			return fmt.Errorf("sinks: %s: dead letter of event %s: %w", r.Name(), ev.ID, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("sinks: %s: dead letter of event %s: %w", r.Name(), ev.ID, ctx.Err())
		case <-t.C:
		}
	}
}

// eventError is the error of event i in the result of a Write.
func eventError(err error, i int) error {
	var we WriteErrors
	if errors.As(err, &we) && i < len(we) {
		return we[i]
	}
	return err
}
