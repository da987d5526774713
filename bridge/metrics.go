package bridge

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics of the ingress. Labels are bounded: receiver names come from
// configuration, topics are validated and only counted once authenticated,
// reasons are fixed strings.
type metrics struct {
	requests       *prometheus.CounterVec
	events         *prometheus.CounterVec
	authFailures   *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	inflightEvents prometheus.Gauge
	inflightBytes  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mistbridge_http_requests_total",
			Help: "Webhook requests answered, by receiver and status code.",
		}, []string{"receiver", "code"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mistbridge_events_accepted_total",
			Help: "Events answered with 200: acknowledged by every broker they are routed to.",
		}, []string{"receiver", "topic"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mistbridge_auth_failures_total",
			Help: "Requests refused by authentication, by receiver and reason.",
		}, []string{"receiver", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mistbridge_http_request_duration_seconds",
			Help:    "Time from request to answer for webhook requests.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"receiver"}),
		inflightEvents: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mistbridge_inflight_events",
			Help: "Events admitted and not yet answered.",
		}),
		inflightBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mistbridge_inflight_bytes",
			Help: "Request bytes reserved by admitted requests.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.events, m.authFailures, m.duration, m.inflightEvents, m.inflightBytes)
	}
	return m
}
