package bridge

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mistbridge/mistbridge/bridge/auth"
)

// metrics of the ingress. Labels are bounded: receiver names come from
// configuration, topics are validated and only counted once authenticated,
// reasons are fixed strings.
type metrics struct {
	requests        *prometheus.CounterVec
	events          *prometheus.CounterVec
	authFailures    *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	inflightEvents  prometheus.Gauge
	inflightBytes   prometheus.Gauge
	connsRefused    prometheus.Counter
	archiveFailures prometheus.Counter
	topics          topicLabels
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
		connsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mistbridge_connections_refused_total",
			Help: "Connections closed at once because their client address had MISTBRIDGE_MAX_CONNECTIONS_PER_IP open.",
		}),
		archiveFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mistbridge_archive_failures_total",
			Help: "Verified request bodies the raw archive failed to keep (the requests were still served).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.events, m.authFailures, m.duration, m.inflightEvents, m.inflightBytes, m.connsRefused, m.archiveFailures)
	}
	return m
}

// answerCodes are the statuses a webhook request is commonly answered
// with; their series exist at zero from start so dashboards and alerts see
// them before the first failure.
var answerCodes = []string{"200", "400", "401", "403", "404", "408", "413", "415", "422", "429", "502", "503"}

// initReceiver makes the series of receiver name exist at zero.
func (m *metrics) initReceiver(name string) {
	for _, c := range answerCodes {
		m.requests.WithLabelValues(name, c)
	}
	for _, r := range auth.Reasons() {
		m.authFailures.WithLabelValues(name, r)
	}
	m.duration.WithLabelValues(name)
}

// maxTopicLabels bounds the topic label values of the ingress metrics: a
// sender may invent topics (every one a valid name), and each would be a
// new series. Mist documents about thirty; past the bound, new topics are
// counted under otherTopic.
const maxTopicLabels = 128

// otherTopic is the topic label of topics past maxTopicLabels.
const otherTopic = "_other"

// topicLabels hands out topic label values, at most maxTopicLabels
// distinct ones. It is safe for concurrent use and lock-free once a topic
// has been seen.
type topicLabels struct {
	seen sync.Map // topic -> struct{}
	n    atomic.Int64
}

// label is topic when it has (or can still get) a series of its own, else
// otherTopic.
func (t *topicLabels) label(topic string) string {
	if _, ok := t.seen.Load(topic); ok {
		return topic
	}
	if t.n.Add(1) > maxTopicLabels {
		t.n.Add(-1)
		return otherTopic
	}
	if _, loaded := t.seen.LoadOrStore(topic, struct{}{}); loaded {
		t.n.Add(-1) // another request took it first
	}
	return topic
}
