package status

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mistbridge/mistbridge/codec"
)

// bridgeMetrics are the families a sample reads, registered with the names,
// help-free, and labels the bridge, the sinks and the spool give them (the
// test against a real bridge in bridge_test.go holds the names to the real
// ones).
type bridgeMetrics struct {
	reg       *prometheus.Registry
	accepted  *prometheus.CounterVec
	requests  *prometheus.CounterVec
	authFails *prometheus.CounterVec
	published *prometheus.CounterVec
	dead      *prometheus.CounterVec
	failed    *prometheus.CounterVec
	retries   *prometheus.CounterVec
	spool     *prometheus.GaugeVec
	spoolB    *prometheus.GaugeVec
	spoolAge  *prometheus.GaugeVec
	refused   prometheus.Counter
}

func newBridgeMetrics(t testing.TB) *bridgeMetrics {
	t.Helper()
	cv := func(name string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: name}, labels)
	}
	gv := func(name string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: name}, []string{"sink"})
	}
	m := &bridgeMetrics{
		reg:       prometheus.NewRegistry(),
		accepted:  cv(famEventsAccepted, "receiver", "topic"),
		requests:  cv(famRequests, "receiver", "code"),
		authFails: cv(famAuthFailures, "receiver", "reason"),
		published: cv(famSinkPublished, "sink"),
		dead:      cv(famSinkDead, "sink"),
		failed:    cv(famSinkFailed, "sink"),
		retries:   cv(famSinkRetries, "sink"),
		spool:     gv(famSpoolEvents),
		spoolB:    gv(famSpoolBytes),
		spoolAge:  gv(famSpoolAge),
		refused:   prometheus.NewCounter(prometheus.CounterOpts{Name: famConnsRefused, Help: "x"}),
	}
	m.reg.MustRegister(m.accepted, m.requests, m.authFails, m.published, m.dead, m.failed, m.retries, m.spool, m.spoolB, m.spoolAge, m.refused)
	// The bridge makes these series exist at zero from start.
	for _, c := range []string{"200", "401", "422", "503"} {
		m.requests.WithLabelValues("mist", c)
	}
	m.authFails.WithLabelValues("mist", "signature_mismatch")
	for _, s := range []string{"nats", "kafka"} {
		m.published.WithLabelValues(s)
		m.dead.WithLabelValues(s)
		m.failed.WithLabelValues(s)
		m.retries.WithLabelValues(s)
		m.spool.WithLabelValues(s)
	}
	return m
}

// t0 is a fixed second for samples.
var t0 = time.Unix(1_800_000_000, 0)

func sec(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }

func flowNamed(t *testing.T, fs []Flow, name string) Flow {
	t.Helper()
	for _, f := range fs {
		if f.Name == name {
			return f
		}
	}
	t.Fatalf("no flow %q in %v", name, fs)
	return Flow{}
}

func sinkNamed(t *testing.T, ss []Sink, name string) Sink {
	t.Helper()
	for _, s := range ss {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no sink %q", name)
	return Sink{}
}

// tail is the last n seconds of per.
func tail(per []float64, n int) []float64 { return per[len(per)-n:] }

func TestSamplePerSecond(t *testing.T) {
	m := newBridgeMetrics(t)
	r := New(Options{Gatherer: m.reg, Window: time.Minute})
	r.Sample(sec(0)) // before any traffic: every series at zero

	m.accepted.WithLabelValues("mist", "device-events").Add(10)
	m.published.WithLabelValues("nats").Add(10)
	r.Sample(sec(1))
	m.accepted.WithLabelValues("mist", "device-events").Add(5)
	m.accepted.WithLabelValues("mist", "alarms").Add(3)
	m.published.WithLabelValues("nats").Add(8)
	m.spool.WithLabelValues("kafka").Set(18)
	r.Sample(sec(2))
	// Three seconds pass without a sample: the growth is spread over them.
	m.accepted.WithLabelValues("mist", "device-events").Add(6)
	r.Sample(sec(5))
	// Sampled twice in one second: both go to that second.
	m.accepted.WithLabelValues("mist", "alarms").Add(1)
	r.Sample(sec(5).Add(400 * time.Millisecond))

	s := r.Snapshot("")
	if s.WindowSeconds != 60 || len(s.Accepted.PerSecond) != 60 {
		t.Fatalf("window %d, %d seconds; want 60", s.WindowSeconds, len(s.Accepted.PerSecond))
	}
	tests := []struct {
		name           string
		got            Flow
		total          int64
		last5          []float64
		rate10, rate60 float64
		peak           float64
	}{
		{"device-events", flowNamed(t, s.Topics, "device-events"), 21, []float64{10, 5, 2, 2, 2}, 2.1, 0.35, 10},
		{"alarms", flowNamed(t, s.Topics, "alarms"), 4, []float64{0, 3, 0, 0, 1}, 0.4, 0.067, 3},
		{"accepted", s.Accepted, 25, []float64{10, 8, 2, 2, 3}, 2.5, 0.417, 10},
		{"nats", sinkNamed(t, s.Sinks, "nats").Flow, 18, []float64{10, 8, 0, 0, 0}, 1.8, 0.3, 10},
		{"kafka", sinkNamed(t, s.Sinks, "kafka").Flow, 0, []float64{0, 0, 0, 0, 0}, 0, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.got
			if f.Total != tc.total || !slices.Equal(tail(f.PerSecond, 5), tc.last5) ||
				f.Rate10s != tc.rate10 || f.Rate60s != tc.rate60 || f.Peak != tc.peak {
				t.Errorf("got total %d, last 5 s %v, /s %v %v, peak %v\nwant total %d, last 5 s %v, /s %v %v, peak %v",
					f.Total, tail(f.PerSecond, 5), f.Rate10s, f.Rate60s, f.Peak,
					tc.total, tc.last5, tc.rate10, tc.rate60, tc.peak)
			}
		})
	}
	kafka := sinkNamed(t, s.Sinks, "kafka")
	if kafka.Spool.Events != 18 || !slices.Equal(tail(kafka.Spool.PerSecond, 5), []float64{0, 18, 18, 18, 18}) {
		t.Errorf("kafka spool: %d, last 5 s %v; want 18, [0 18 18 18 18]", kafka.Spool.Events, tail(kafka.Spool.PerSecond, 5))
	}

	// A minute and more later the window holds none of it; totals stay.
	r.Sample(sec(70))
	s = r.Snapshot("")
	de := flowNamed(t, s.Topics, "device-events")
	if de.Total != 21 || de.Peak != 0 || de.Rate60s != 0 {
		t.Errorf("after the window: total %d, peak %v, /s %v; want 21, 0, 0", de.Total, de.Peak, de.Rate60s)
	}
}

// resetCollector is a counter that can go back, as after a series is
// unregistered and registered again.
type resetCollector struct {
	mu sync.Mutex
	v  float64
}

var resetDesc = prometheus.NewDesc(famSinkPublished, "x", []string{"sink"}, nil)

func (c *resetCollector) Describe(ch chan<- *prometheus.Desc) { ch <- resetDesc }
func (c *resetCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(resetDesc, prometheus.CounterValue, c.v, "nats")
}
func (c *resetCollector) set(v float64) { c.mu.Lock(); c.v = v; c.mu.Unlock() }

func TestSampleCounterReset(t *testing.T) {
	c := &resetCollector{}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	r := New(Options{Gatherer: reg})
	r.Sample(sec(0))
	c.set(7)
	r.Sample(sec(1))
	c.set(2) // reset: it counted 2 since
	r.Sample(sec(2))
	f := sinkNamed(t, r.Snapshot("").Sinks, "nats")
	if f.Total != 2 || !slices.Equal(tail(f.PerSecond, 2), []float64{7, 2}) {
		t.Errorf("total %d, last 2 s %v; want 2, [7 2]", f.Total, tail(f.PerSecond, 2))
	}
}

func TestSampleClockBack(t *testing.T) {
	m := newBridgeMetrics(t)
	r := New(Options{Gatherer: m.reg})
	r.Sample(sec(10))
	m.accepted.WithLabelValues("mist", "a").Add(4)
	r.Sample(sec(8)) // the clock went back: counted in the newest second
	f := flowNamed(t, r.Snapshot("").Topics, "a")
	if f.Total != 4 || tail(f.PerSecond, 1)[0] != 4 {
		t.Errorf("total %d, last second %v; want 4 and 4", f.Total, tail(f.PerSecond, 1))
	}
}

func TestBoundedNames(t *testing.T) {
	m := newBridgeMetrics(t)
	r := New(Options{Gatherer: m.reg, MaxTopics: 3})
	r.Sample(sec(0))
	for i := range 6 {
		m.accepted.WithLabelValues("mist", fmt.Sprintf("t%d", i)).Add(float64(i + 1))
	}
	var evs []*codec.Event
	for i := range 6 {
		e := codec.Map(fmt.Sprintf("t%d", i), []byte(`{"site_id":"s"}`))
		evs = append(evs, &e)
	}
	r.Events(evs)
	r.Sample(sec(1))
	s := r.Snapshot("")
	if len(s.Topics) != 4 {
		t.Fatalf("%d topics, want 3 and %s: %v", len(s.Topics), Other, s.Topics)
	}
	// The registry gathers series sorted by label: t0, t1, t2 come first.
	for name, want := range map[string]int64{"t0": 1, "t1": 2, "t2": 3, Other: 4 + 5 + 6} {
		if got := flowNamed(t, s.Topics, name).Total; got != want {
			t.Errorf("%s: total %d, want %d", name, got, want)
		}
	}
	if len(s.Latest.Topics) != 4 || !slices.Contains(s.Latest.Topics, Other) {
		t.Errorf("latest topics %v, want 3 and %s", s.Latest.Topics, Other)
	}
	if got := r.Snapshot(Other).Latest.Events; len(got) != 3 {
		t.Errorf("%s keeps %d events, want 3", Other, len(got))
	}
}

func TestEventsLatest(t *testing.T) {
	r := New(Options{Latest: 3, SubjectPrefix: "mist"})
	now := sec(0)
	r.now = func() time.Time { return now }
	mk := func(topic string, n int, extra string) *codec.Event {
		raw := fmt.Sprintf(`{"org_id":"o1","site_id":"site-%d","timestamp":1700000000,"n":%d%s}`, n, n, extra)
		e := codec.Map(topic, []byte(raw))
		return &e
	}
	// Runs of one topic: a×2, b×1, a×3; only the last 3 of a are kept.
	r.Events([]*codec.Event{mk("a", 1, ""), mk("a", 2, ""), mk("b", 1, ""), nil, mk("a", 3, ""), mk("a", 4, ""), mk("a", 5, "")})
	now = sec(1)
	r.Events([]*codec.Event{mk("b", 2, "")})

	s := r.Snapshot("")
	if s.Latest.Topic != "b" {
		t.Errorf("default topic %q, want b (the newest event)", s.Latest.Topic)
	}
	if !slices.Equal(s.Latest.Topics, []string{"a", "b"}) {
		t.Errorf("topics %v", s.Latest.Topics)
	}
	a := r.Snapshot("a").Latest
	var ns []string
	for _, e := range a.Events {
		ns = append(ns, e.Key)
	}
	if !slices.Equal(ns, []string{"site-5", "site-4", "site-3"}) {
		t.Errorf("kept a: %v, want site-5, site-4, site-3", ns)
	}
	e := a.Events[0]
	want := mk("a", 5, "")
	if e.ID != want.ID || e.Type != "com.juniper.mist.a" || e.Source != want.Source ||
		!e.Time.Equal(time.Unix(1700000000, 0)) || e.Subject != codec.Subject("mist", want) ||
		e.DataBytes != len(want.Data) || e.Data != string(want.Data) || !e.Received.Equal(sec(0)) {
		t.Errorf("kept %+v\nwant the attributes of %+v", e, want)
	}
	if got := r.Snapshot("nope").Latest; got.Topic != "nope" || len(got.Events) != 0 {
		t.Errorf("an unknown topic shows %+v", got)
	}
}

func TestPreview(t *testing.T) {
	long := strings.Repeat("x", PreviewBytes-1) + "é" + "tail" // é straddles the cut
	tests := []struct {
		name, data, want string
	}{
		{"short", `{"a":1}`, `{"a":1}`},
		{"exact", strings.Repeat("y", PreviewBytes), strings.Repeat("y", PreviewBytes)},
		{"cut at a whole character", long, strings.Repeat("x", PreviewBytes-1) + "…"},
		{"invalid UTF-8", "a\xffb", "a\uFFFDb"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := preview([]byte(tc.data))
			if got != tc.want || !utf8.ValidString(got) {
				t.Errorf("preview = %q, want %q", got, tc.want)
			}
		})
	}
	// What is kept is a copy: the request's buffer is reused afterwards.
	r := New(Options{})
	buf := []byte(`{"site_id":"s1","v":"before"}`)
	e := codec.Map("a", buf)
	r.Events([]*codec.Event{&e})
	copy(buf, strings.Repeat("Z", len(buf)))
	if got := r.Snapshot("a").Latest.Events[0].Data; got != `{"site_id":"s1","v":"before"}` {
		t.Errorf("kept data changed with the buffer: %q", got)
	}
	if got := clip(strings.Repeat("é", MaxAttrLen)); len(got) > MaxAttrLen || !utf8.ValidString(got) {
		t.Errorf("clip: %d bytes, valid %v", len(got), utf8.ValidString(got))
	}
}

func TestRequest(t *testing.T) {
	m := newBridgeMetrics(t)
	r := New(Options{Gatherer: m.reg})
	r.Sample(sec(0))
	// Answered out of order: the last is the one that arrived last.
	r.Request("mist", "alarms", 3, 200, "", sec(3))
	r.Request("mist", "device-events", 5, 200, "", sec(2))
	r.Request("mist", "", 0, 401, "signature_mismatch", sec(1))
	r.Request("mist", "x", 0, 422, "topic_not_allowed", sec(1))
	r.Request("mist", "x", 0, 422, "topic_not_allowed", sec(1))
	m.requests.WithLabelValues("mist", "200").Add(2)
	m.requests.WithLabelValues("mist", "401").Add(1)
	m.requests.WithLabelValues("mist", "422").Add(2)
	m.authFails.WithLabelValues("mist", "signature_mismatch").Add(1)
	m.accepted.WithLabelValues("mist", "alarms").Add(3)
	m.accepted.WithLabelValues("mist", "device-events").Add(5)
	m.dead.WithLabelValues("kafka").Add(2)
	r.Sample(sec(4))

	s := r.Snapshot("")
	if len(s.Receivers) != 1 {
		t.Fatalf("receivers %+v", s.Receivers)
	}
	rc := s.Receivers[0]
	wantLast := LastRequest{At: sec(3), Topic: "alarms", Events: 3, Code: 200}
	if rc.Name != "mist" || rc.Requests != 5 || rc.Events != 8 || rc.Errors != 3 || rc.Last == nil || *rc.Last != wantLast {
		t.Errorf("receiver %+v, last %+v\nwant mist, 5 requests, 8 events, 3 errors, last %+v", rc, rc.Last, wantLast)
	}
	// Answers carry their reasons, so the auth failures are not counted twice.
	want := []ErrorCount{
		{Source: SourceAnswer, Code: 422, Reason: "topic_not_allowed", Total: 2, Recent: 2},
		{Source: SourceSink, Sink: "kafka", Reason: "dead_lettered", Total: 2, Recent: 2},
		{Source: SourceAnswer, Code: 401, Reason: "signature_mismatch", Total: 1, Recent: 1},
	}
	if !slices.Equal(s.Errors, want) {
		t.Errorf("errors\n got %+v\nwant %+v", s.Errors, want)
	}
}

// Without Request, the metrics still tell the errors by code and
// authentication reason, and the last request to a second.
func TestWithoutRequestHook(t *testing.T) {
	m := newBridgeMetrics(t)
	r := New(Options{Gatherer: m.reg})
	r.Sample(sec(0))
	m.requests.WithLabelValues("mist", "401").Add(2)
	m.authFails.WithLabelValues("mist", "signature_mismatch").Add(2)
	m.refused.Add(1)
	r.Sample(sec(1))
	r.Sample(sec(2))
	s := r.Snapshot("")
	want := []ErrorCount{
		{Source: SourceAnswer, Code: 401, Total: 2, Recent: 2},
		{Source: SourceAuth, Reason: "signature_mismatch", Total: 2, Recent: 2},
		{Source: SourceConnection, Reason: "refused_per_ip", Total: 1, Recent: 1},
	}
	if !slices.Equal(s.Errors, want) {
		t.Errorf("errors\n got %+v\nwant %+v", s.Errors, want)
	}
	if l := s.Receivers[0].Last; l == nil || !l.Approximate || !l.At.Equal(sec(1)) {
		t.Errorf("last request %+v, want approximately at %v", l, sec(1))
	}
}

// Every method at once, as the webhook path, the sampler and viewers call
// them; run with -race.
func TestConcurrentUse(t *testing.T) {
	m := newBridgeMetrics(t)
	r := New(Options{Gatherer: m.reg, MaxTopics: 4})
	h := NewHandler(r, HandlerOptions{Tokens: []string{"tok"}})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 200 {
				topic := fmt.Sprintf("t%d", (w+i)%6)
				e := codec.Map(topic, []byte(`{"site_id":"s"}`))
				r.Events([]*codec.Event{&e, &e})
				r.Request(fmt.Sprintf("r%d", i%6), topic, 2, []int{200, 401, 503}[i%3], "why", time.Now())
				m.accepted.WithLabelValues("mist", topic).Add(2)
			}
		})
	}
	wg.Go(func() {
		for i := range 50 {
			r.Sample(sec(i))
		}
	})
	wg.Go(func() {
		for range 20 {
			rec := serve(h, "GET", "/?topic=t1", map[string]string{"Authorization": "Bearer tok"}, "")
			if rec.Code != 200 {
				panic(fmt.Sprintf("page: %d", rec.Code)) // not t.Fatal off the test goroutine
			}
		}
	})
	wg.Wait()
	r.Sample(sec(60))
	var sum int64
	for _, f := range r.Snapshot("").Topics {
		sum += f.Total
	}
	if sum != 4*200*2 {
		t.Errorf("topics sum to %d, want %d", sum, 4*200*2)
	}
}

func BenchmarkRequest(b *testing.B) {
	r := New(Options{})
	at := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.Request("mist", "device-events", 10, 200, "", at)
		}
	})
}

func BenchmarkEvents(b *testing.B) {
	r := New(Options{SubjectPrefix: "mist"})
	evs := benchEvents(50, "o", "s")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.Events(evs)
		}
	})
}

// benchEvents is n device events of org, each of its own site (site plus
// its index), with a 400-byte text: what BenchmarkEvents* record.
func benchEvents(n int, org, site string) []*codec.Event {
	evs := make([]*codec.Event, n)
	for i := range evs {
		e := codec.Map("device-events", []byte(fmt.Sprintf(`{"org_id":%q,"site_id":"%s%d","timestamp":1700000000,"text":"%s"}`, org, site, i, strings.Repeat("x", 400))))
		evs[i] = &e
	}
	return evs
}
