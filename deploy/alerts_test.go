package deploy

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/mistbridge/mistbridge/bridge/auth"
)

// The alerts are evaluated with Prometheus's own PromQL engine over the
// series the bridge exports (gathered from the real components, with
// instance and job added as a scrape would) as they evolve in a few
// scenarios, scraped every 15 seconds for three hours. Each scenario names
// the alerts that must be firing at its end, taking each rule's `for` into
// account; every alert must fire in some scenario, and none when all is
// well.

const (
	scrapeEvery  = 15 * time.Second
	scenarioLast = 3 * time.Hour
	evalEvery    = time.Minute
)

// scenarioStart is an arbitrary fixed time.
var scenarioStart = time.Unix(1_700_000_000, 0).UTC()

// scenario says what a series is worth t into the scenario; base is its
// value when gathered. ok false leaves the series out.
type scenario func(name string, l labels.Labels, t time.Duration, base float64) (v float64, ok bool)

// traffic is the healthy bridge: one request a second answered 200, two
// events accepted and published a second, answers within 10ms, nothing
// spooled, refused or dead-lettered.
func traffic(name string, l labels.Labels, t time.Duration, base float64) (float64, bool) {
	s := t.Seconds()
	switch name {
	case "mistbridge_http_requests_total":
		if l.Get("code") == "200" {
			return base + s, true
		}
	case "mistbridge_events_accepted_total", "mistbridge_sink_published_events_total":
		return base + 2*s, true
	case "mistbridge_http_request_duration_seconds_bucket":
		if le, _ := strconv.ParseFloat(l.Get("le"), 64); le >= 0.01 {
			return base + s, true
		}
	case "mistbridge_http_request_duration_seconds_count":
		return base + s, true
	case "mistbridge_http_request_duration_seconds_sum":
		return base + 0.005*s, true
	}
	return base, true
}

// after is how long past from into the scenario t is; 0 before.
func after(t, from time.Duration) float64 { return max(0, (t - from).Seconds()) }

// brokerDown: from 30 minutes in, NATS refuses writes; the spool takes
// every event (the webhooks are still answered 200) and delivers none.
func brokerDown(name string, l labels.Labels, t time.Duration, base float64) (float64, bool) {
	const from = 30 * time.Minute
	down := after(t, from)
	switch name {
	case "mistbridge_sink_published_events_total":
		return base + 2*min(t, from).Seconds(), true
	case "mistbridge_sink_failed_events_total":
		return base + 0.5*down, true
	case "mistbridge_spool_appended_events_total", "mistbridge_spool_events":
		return base + 2*down, true
	case "mistbridge_spool_bytes":
		return base + 1000*down, true
	case "mistbridge_spool_oldest_age_seconds":
		return down, true
	}
	return traffic(name, l, t, base)
}

// spoolFull: the broker stays down and the spool fills up within the
// first hour; from then on every webhook is answered 503.
func spoolFull(name string, l labels.Labels, t time.Duration, base float64) (float64, bool) {
	const down, full = 30 * time.Minute, time.Hour
	switch name {
	case "mistbridge_http_requests_total":
		switch l.Get("code") {
		case "200":
			return base + min(t, full).Seconds(), true
		case "503":
			return base + after(t, full), true
		}
	case "mistbridge_events_accepted_total":
		return base + 2*min(t, full).Seconds(), true
	case "mistbridge_spool_appended_events_total", "mistbridge_spool_events":
		return base + 2*(min(t, full)-min(t, down)).Seconds(), true
	case "mistbridge_spool_bytes":
		return base + 1e9*(min(t, full)-min(t, down)).Seconds()/(full-down).Seconds(), true
	}
	return brokerDown(name, l, t, base)
}

// authBurst: from two hours in, a sender with a wrong secret posts twice a
// second beside the healthy traffic.
func authBurst(name string, l labels.Labels, t time.Duration, base float64) (float64, bool) {
	const from = 2 * time.Hour
	switch {
	case name == "mistbridge_http_requests_total" && l.Get("code") == "401",
		name == "mistbridge_auth_failures_total" && l.Get("reason") == auth.ReasonSignatureMismatch:
		return base + 2*after(t, from), true
	}
	return traffic(name, l, t, base)
}

// wrongSecret: from an hour in, Mist signs with a secret the bridge does
// not know: every request is refused.
func wrongSecret(name string, l labels.Labels, t time.Duration, base float64) (float64, bool) {
	const from = time.Hour
	switch {
	case name == "mistbridge_http_requests_total" && l.Get("code") == "200":
		return base + min(t, from).Seconds(), true
	case name == "mistbridge_http_requests_total" && l.Get("code") == "401",
		name == "mistbridge_auth_failures_total" && l.Get("reason") == auth.ReasonSignatureMismatch:
		return base + after(t, from), true
	case name == "mistbridge_events_accepted_total" || name == "mistbridge_sink_published_events_total":
		return base + 2*min(t, from).Seconds(), true
	}
	return traffic(name, l, t, base)
}

// neverAccepted: a bridge started with the wrong secret: it refuses every
// request and has never had a series of mistbridge_events_accepted_total
// (they are labelled by topic, so they appear with the first event).
func neverAccepted(name string, l labels.Labels, t time.Duration, base float64) (float64, bool) {
	switch {
	case name == "mistbridge_events_accepted_total":
		return 0, false
	case name == "mistbridge_http_requests_total" && l.Get("code") == "200",
		name == "mistbridge_sink_published_events_total":
		return base, true
	case name == "mistbridge_http_requests_total" && l.Get("code") == "401",
		name == "mistbridge_auth_failures_total" && l.Get("reason") == auth.ReasonSignatureMismatch:
		return base + t.Seconds(), true
	}
	return traffic(name, l, t, base)
}

// deadLetter: one event is dead-lettered ten minutes before the end.
func deadLetter(name string, l labels.Labels, t time.Duration, base float64) (float64, bool) {
	if name == "mistbridge_sink_dead_letters_total" && t >= scenarioLast-10*time.Minute {
		return base + 1, true
	}
	return traffic(name, l, t, base)
}

// slow: every answer takes 3 to 4 seconds.
func slow(name string, l labels.Labels, t time.Duration, base float64) (float64, bool) {
	s := t.Seconds()
	switch name {
	case "mistbridge_http_request_duration_seconds_bucket":
		if le, _ := strconv.ParseFloat(l.Get("le"), 64); le >= 5 {
			return base + s, true
		}
		return base, true
	case "mistbridge_http_request_duration_seconds_sum":
		return base + 3.5*s, true
	}
	return traffic(name, l, t, base)
}

// crowded: one address opens a connection too many every second.
func crowded(name string, l labels.Labels, t time.Duration, base float64) (float64, bool) {
	if name == "mistbridge_connections_refused_total" {
		return base + t.Seconds(), true
	}
	return traffic(name, l, t, base)
}

// quiet: the bridge runs and nobody sends anything.
func quiet(_ string, _ labels.Labels, _ time.Duration, base float64) (float64, bool) {
	return base, true
}

// gone: no bridge is scraped.
func gone(string, labels.Labels, time.Duration, float64) (float64, bool) { return 0, false }

func TestAlertsFire(t *testing.T) {
	fams := gatherBridge(t)
	base := baseSeries(fams)
	rules := loadAlerts(t)
	tests := []struct {
		name     string
		scenario scenario
		want     []string
	}{
		{"healthy", traffic, nil},
		{"broker down", brokerDown, []string{"MistbridgeSinkFailing", "MistbridgeSinkNotDelivering", "MistbridgeSpoolGrowing", "MistbridgeSpoolOldEvents"}},
		{"spool full", spoolFull, []string{"MistbridgeSinkFailing", "MistbridgeSpoolOldEvents", "MistbridgeSpoolNearlyFull", "MistbridgeShedding", "MistbridgeNoEventsAcceptedWhileRequestsArrive", "MistbridgeNoEventsAccepted"}},
		{"auth burst", authBurst, []string{"MistbridgeAuthFailures"}},
		{"wrong secret", wrongSecret, []string{"MistbridgeAuthFailures", "MistbridgeNoEventsAcceptedWhileRequestsArrive", "MistbridgeNoEventsAccepted"}},
		{"never accepted", neverAccepted, []string{"MistbridgeAuthFailures", "MistbridgeNoEventsAcceptedWhileRequestsArrive", "MistbridgeNoEventsAccepted"}},
		{"dead letter", deadLetter, []string{"MistbridgeDeadLetters"}},
		{"slow answers", slow, []string{"MistbridgeSlowAnswers"}},
		{"connections refused", crowded, []string{"MistbridgeConnectionsRefused"}},
		{"quiet", quiet, []string{"MistbridgeNoEventsAccepted"}},
		{"not scraped", gone, []string{"MistbridgeMetricsAbsent", "MistbridgeNoEventsAccepted"}},
	}
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 10_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	fired := map[string]bool{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := scenarioStorage(base, tc.scenario)
			var got []string
			for _, r := range rules {
				if firing(t, engine, st, r) {
					got = append(got, r.Alert)
					fired[r.Alert] = true
				}
			}
			sort.Strings(got)
			want := slices.Clone(tc.want)
			sort.Strings(want)
			if !slices.Equal(got, want) {
				t.Errorf("firing at the end: %q\nwant %q", got, want)
			}
		})
	}
	for _, r := range rules {
		if !fired[r.Alert] {
			t.Errorf("%s fires in no scenario: add one where it must", r.Alert)
		}
	}
}

func loadAlerts(t *testing.T) []rulefmt.Rule {
	t.Helper()
	groups, errs := rulefmt.Parse(readFile(t, alertsFile), false, model.UTF8Validation, parser.NewParser(parser.Options{}), nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	var out []rulefmt.Rule
	for _, g := range groups.Groups {
		out = append(out, g.Rules...)
	}
	return out
}

// firing evaluates r's expression every evalEvery over the scenario and
// reports whether some series was there at every evaluation of the last
// `for` (at the last one, for 0): the alert is firing at the end.
func firing(t *testing.T, ng *promql.Engine, st storage.Queryable, r rulefmt.Rule) bool {
	t.Helper()
	end := scenarioStart.Add(scenarioLast)
	q, err := ng.NewRangeQuery(context.Background(), st, nil, r.Expr, scenarioStart, end, evalEvery)
	if err != nil {
		t.Fatalf("%s: %v", r.Alert, err)
	}
	defer q.Close()
	res := q.Exec(context.Background())
	if res.Err != nil {
		t.Fatalf("%s: %v", r.Alert, res.Err)
	}
	m, err := res.Matrix()
	if err != nil {
		t.Fatalf("%s: %v", r.Alert, err)
	}
	from := end.Add(-time.Duration(r.For)).UnixMilli()
	need := int(time.Duration(r.For)/evalEvery) + 1
	for _, s := range m {
		n := 0
		for _, p := range s.Floats {
			if p.T >= from && !math.IsNaN(p.F) {
				n++
			}
		}
		if n >= need {
			return true
		}
	}
	return false
}

// baseSeries are the series of the gathered families as Prometheus would
// store them from a scrape of the bridge.
func baseSeries(fams []*dto.MetricFamily) []baseline {
	var out []baseline
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			lm := map[string]string{"instance": "mistbridge-0:8080", "job": "mistbridge"}
			for _, lp := range m.GetLabel() {
				lm[lp.GetName()] = lp.GetValue()
			}
			add := func(name string, v float64, extra ...string) {
				l := make(map[string]string, len(lm)+2)
				for k, v := range lm {
					l[k] = v
				}
				l[model.MetricNameLabel] = name
				for i := 0; i+1 < len(extra); i += 2 {
					l[extra[i]] = extra[i+1]
				}
				out = append(out, baseline{name: name, labels: labels.FromMap(l), value: v})
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				add(f.GetName(), m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				add(f.GetName(), m.GetGauge().GetValue())
			case dto.MetricType_UNTYPED:
				add(f.GetName(), m.GetUntyped().GetValue())
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				for _, b := range h.GetBucket() {
					add(f.GetName()+"_bucket", float64(b.GetCumulativeCount()), "le", strconv.FormatFloat(b.GetUpperBound(), 'f', -1, 64))
				}
				add(f.GetName()+"_bucket", float64(h.GetSampleCount()), "le", "+Inf")
				add(f.GetName()+"_sum", h.GetSampleSum())
				add(f.GetName()+"_count", float64(h.GetSampleCount()))
			}
		}
	}
	return out
}

type baseline struct {
	name   string
	labels labels.Labels
	value  float64
}

// scenarioStorage holds every base series scraped every scrapeEvery over
// the scenario, valued by sc.
func scenarioStorage(base []baseline, sc scenario) memStorage {
	var st memStorage
	for _, b := range base {
		var samples []chunks.Sample
		for t := time.Duration(0); t <= scenarioLast; t += scrapeEvery {
			if v, ok := sc(b.name, b.labels, t, b.value); ok {
				samples = append(samples, fsample{t: scenarioStart.Add(t).UnixMilli(), f: v})
			}
		}
		if len(samples) > 0 {
			st = append(st, storage.NewListSeries(b.labels, samples))
		}
	}
	sort.Slice(st, func(i, j int) bool { return labels.Compare(st[i].Labels(), st[j].Labels()) < 0 })
	return st
}

// memStorage is a storage.Queryable over series held in memory.
type memStorage []storage.Series

func (m memStorage) Querier(_, _ int64) (storage.Querier, error) { return m, nil }

func (m memStorage) Select(_ context.Context, _ bool, _ *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	var out seriesSet
	for _, s := range m {
		if matchesAll(s.Labels(), ms) {
			out.s = append(out.s, s)
		}
	}
	return &out
}

func matchesAll(l labels.Labels, ms []*labels.Matcher) bool {
	for _, m := range ms {
		if !m.Matches(l.Get(m.Name)) {
			return false
		}
	}
	return true
}

func (m memStorage) LabelValues(context.Context, string, *storage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return nil, nil, fmt.Errorf("deploy test storage: no label values")
}

func (m memStorage) LabelNames(context.Context, *storage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return nil, nil, fmt.Errorf("deploy test storage: no label names")
}

func (m memStorage) Close() error { return nil }

type seriesSet struct {
	s []storage.Series
	i int
}

func (s *seriesSet) Next() bool                        { s.i++; return s.i <= len(s.s) }
func (s *seriesSet) At() storage.Series                { return s.s[s.i-1] }
func (s *seriesSet) Err() error                        { return nil }
func (s *seriesSet) Warnings() annotations.Annotations { return nil }

// fsample is one float sample.
type fsample struct {
	t int64
	f float64
}

func (s fsample) T() int64                      { return s.t }
func (s fsample) ST() int64                     { return 0 }
func (s fsample) F() float64                    { return s.f }
func (s fsample) H() *histogram.Histogram       { return nil }
func (s fsample) FH() *histogram.FloatHistogram { return nil }
func (s fsample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s fsample) Copy() chunks.Sample           { return s }
