package spool

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the spool's Prometheus families. The gauges are read from the
// logs at scrape time; every family has a series per sink from the start.
type metrics struct {
	appended  *prometheus.CounterVec
	delivered *prometheus.CounterVec
	recovered *prometheus.CounterVec
	skipped   *prometheus.CounterVec
	maxBytes  prometheus.Gauge
	gauges    *gaugeCollector
}

func newMetrics(s *Spool) *metrics {
	return &metrics{
		appended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mistbridge_spool_appended_events_total",
			Help: "Events written and fsync'd to the spool.",
		}, []string{"sink"}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mistbridge_spool_delivered_events_total",
			Help: "Spooled events acknowledged by their sink and removed from the spool.",
		}, []string{"sink"}),
		recovered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mistbridge_spool_recovered_events_total",
			Help: "Undelivered events found in the spool when it was opened.",
		}, []string{"sink"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mistbridge_spool_skipped_bytes_total",
			Help: "Bytes of a torn or corrupt spool tail cut off when it was opened (no whole record).",
		}, []string{"sink"}),
		maxBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mistbridge_spool_max_bytes",
			Help: "The spool's bound, MISTBRIDGE_SPOOL_MAX_BYTES: past it events are refused (503).",
		}),
		gauges: &gaugeCollector{
			s:      s,
			events: prometheus.NewDesc("mistbridge_spool_events", "Events in the spool, not yet delivered.", []string{"sink"}, nil),
			bytes:  prometheus.NewDesc("mistbridge_spool_bytes", "Bytes of the events in the spool, not yet delivered.", []string{"sink"}, nil),
			age:    prometheus.NewDesc("mistbridge_spool_oldest_age_seconds", "Age of the oldest event in the spool; 0 when empty.", []string{"sink"}, nil),
		},
	}
}

func (m *metrics) init(sink string) {
	m.appended.WithLabelValues(sink)
	m.delivered.WithLabelValues(sink)
	m.recovered.WithLabelValues(sink)
	m.skipped.WithLabelValues(sink)
}

func (m *metrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.appended, m.delivered, m.recovered, m.skipped, m.maxBytes, m.gauges} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

type gaugeCollector struct {
	s                  *Spool
	events, bytes, age *prometheus.Desc
}

func (g *gaugeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- g.events
	ch <- g.bytes
	ch <- g.age
}

func (g *gaugeCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	for _, name := range g.s.names {
		l := g.s.logs[name]
		ch <- prometheus.MustNewConstMetric(g.events, prometheus.GaugeValue, float64(l.events.Load()), name)
		ch <- prometheus.MustNewConstMetric(g.bytes, prometheus.GaugeValue, float64(l.pending.Load()), name)
		ch <- prometheus.MustNewConstMetric(g.age, prometheus.GaugeValue, oldestAge(l, now), name)
	}
}

// oldestAge is the age in seconds of l's oldest undelivered event, 0 when
// l is empty.
func oldestAge(l *wlog, now time.Time) float64 {
	h := l.head.Load()
	if h == 0 || l.events.Load() == 0 {
		return 0
	}
	return max(0, now.Sub(time.Unix(0, h)).Seconds())
}
