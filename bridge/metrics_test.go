package bridge_test

import (
	"fmt"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/mistbridge/mistbridge/test/loadgen"
)

// series reads every sample of reg as "name{l1=v1,l2=v2}" -> value; a
// histogram gives its _count and _sum.
func series(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, lp.GetName()+"="+lp.GetValue())
			}
			sort.Strings(labels)
			key := mf.GetName() + "{" + strings.Join(labels, ",") + "}"
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[strings.Replace(key, "{", "_count{", 1)] = float64(m.GetHistogram().GetSampleCount())
				out[strings.Replace(key, "{", "_sum{", 1)] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

// TestMetricsAfterKnownLoad: after a known load, the metrics hold exact
// values by label, and a sender inventing topics cannot grow the series
// of a metric past its bound.
func TestMetricsAfterKnownLoad(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv := natsBridge(t, nil, reg)
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	url := hs.URL + "/webhooks/mist"
	for _, b := range []struct {
		topic    string
		from, n  int
		wantCode int
	}{{"device-events", 0, 2, 200}, {"device-events", 10, 3, 200}, {"alarms", 20, 1, 200}} {
		body := loadgen.Body(b.topic, b.from, b.n)
		if a := post(t, url, body, signed(body)); a.code != b.wantCode {
			t.Fatalf("%s: %d %v", b.topic, a.code, a.body)
		}
	}
	bad := loadgen.Body("alarms", 30, 4)
	if a := post(t, url, bad, map[string]string{"X-Mist-Signature-v2": strings.Repeat("0", 64)}); a.code != 401 {
		t.Fatalf("bad signature: %d", a.code)
	}
	got := series(t, reg)
	want := map[string]float64{
		`mistbridge_http_requests_total{code=200,receiver=mist}`:                  3,
		`mistbridge_http_requests_total{code=401,receiver=mist}`:                  1,
		`mistbridge_http_requests_total{code=503,receiver=mist}`:                  0,
		`mistbridge_events_accepted_total{receiver=mist,topic=device-events}`:     5,
		`mistbridge_events_accepted_total{receiver=mist,topic=alarms}`:            1,
		`mistbridge_auth_failures_total{reason=signature_mismatch,receiver=mist}`: 1,
		`mistbridge_auth_failures_total{reason=signature_missing,receiver=mist}`:  0,
		`mistbridge_http_request_duration_seconds_count{receiver=mist}`:           4,
		`mistbridge_sink_published_events_total{sink=nats}`:                       6,
		`mistbridge_sink_batch_events_count{sink=nats}`:                           3,
		`mistbridge_sink_batch_events_sum{sink=nats}`:                             6,
		`mistbridge_delivery_latency_seconds_count{sink=nats}`:                    3,
		`mistbridge_sink_up{sink=nats}`:                                           1,
		`mistbridge_sink_retries_total{sink=nats}`:                                0,
		`mistbridge_sink_dead_letters_total{sink=nats}`:                           0,
		`mistbridge_inflight_events{}`:                                            0,
		`mistbridge_inflight_bytes{}`:                                             0,
		`mistbridge_connections_refused_total{}`:                                  0,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}

	// Invented topics: every one is valid, but the topic label takes at
	// most 128 values; the rest are counted under "_other".
	for i := range 200 {
		body := loadgen.Body(fmt.Sprintf("invented-%03d", i), 0, 1)
		if a := post(t, url, body, signed(body)); a.code != 200 {
			t.Fatalf("invented topic %d: %d", i, a.code)
		}
	}
	got = series(t, reg)
	topics, other := 0, 0.0
	for k, v := range got {
		if strings.HasPrefix(k, "mistbridge_events_accepted_total{") {
			topics++
			if strings.Contains(k, "topic=_other") {
				other = v
			}
		}
	}
	if topics != 129 || other != 200-126 {
		t.Errorf("events_accepted has %d series and _other %v, want 129 (128 topics and _other) and %d", topics, other, 200-126)
	}
}
