// Package deploy holds the deployment files; its tests check the Grafana
// dashboard (grafana/mistbridge.json) and the Prometheus alerting rules
// (prometheus/alerts.yml) against the metrics the bridge really exports.
//
// The metric names and labels are not listed here: the tests build the
// real components (an embedded nats-server, the NATS sink behind
// sinks.Retrying, the router, the spool and the bridge, all on one
// registry), send one webhook through them, and read the registry. A query
// that names a metric or a label the bridge does not export fails, and so
// does a rules file Prometheus would not load.
package deploy

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/mistbridge/mistbridge/bridge"
	"github.com/mistbridge/mistbridge/bridge/auth"
	"github.com/mistbridge/mistbridge/bridge/spool"
	"github.com/mistbridge/mistbridge/sinks"
	"github.com/mistbridge/mistbridge/sinks/natssink"
)

const (
	dashboardFile = "grafana/mistbridge.json"
	alertsFile    = "prometheus/alerts.yml"
)

// scrapeLabels are the labels Prometheus adds to every series it scrapes
// (the target's), which the bridge cannot export itself.
var scrapeLabels = []string{"instance", "job"}

// series is one series name as PromQL sees it, from a gathered family.
type series struct {
	family string
	typ    dto.MetricType
	labels map[string]bool
}

// exported maps every series name the bridge exports (a histogram's
// _bucket, _sum and _count) to what it is.
type exported map[string]series

// families lists the exported families.
func (e exported) families() []string {
	var out []string
	for _, s := range e {
		if !slices.Contains(out, s.family) {
			out = append(out, s.family)
		}
	}
	sort.Strings(out)
	return out
}

// bridgeMetrics gathers the bridge's registry (see gatherBridge) and maps
// the series names it exports.
func bridgeMetrics(t *testing.T) exported {
	t.Helper()
	return exportedOf(t, gatherBridge(t))
}

// gatherBridge builds the bridge as cmd/mistbridge does (sinks.NewMetrics,
// spool.New and bridge.New on one registry, over a real NATS sink), sends
// it one signed webhook and one unsigned one, and gathers the registry.
func gatherBridge(t *testing.T) []*dto.MetricFamily {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()

	emb, err := natssink.StartEmbedded(t.TempDir(), "127.0.0.1:0", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	var ncfg natssink.Config
	if err := env.ParseWithOptions(&ncfg, env.Options{Environment: map[string]string{"URL": emb.ClientURL()}}); err != nil {
		t.Fatal(err)
	}
	ns, err := natssink.New(ctx, ncfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Close(context.Background()) })
	out := sinks.NewRetrying(ns, sinks.RetryPolicy{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}, sinks.NewMetrics(reg), log)
	router, err := bridge.NewRouter("", out)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.New(spool.Config{Dir: t.TempDir()}, router, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sp.Close(context.Background()) })
	const secret = "observability-test"
	verifier, err := auth.NewMist([]string{secret})
	if err != nil {
		t.Fatal(err)
	}
	var bcfg bridge.Config
	if err := env.ParseWithOptions(&bcfg, env.Options{Environment: map[string]string{}}); err != nil {
		t.Fatal(err)
	}
	srv, err := bridge.New(bcfg, bridge.Options{
		Delivery:  sp,
		Receivers: []*bridge.Receiver{{Name: bcfg.Receiver, Verifier: verifier}},
		Log:       log,
		Registry:  reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)

	// An accepted event makes the series of mistbridge_events_accepted_total
	// (labelled by topic, so it has none before).
	body := []byte(`{"topic":"device-events","events":[{"org_id":"o1","site_id":"s1","timestamp":1700000000,"type":"AP_RESTARTED"}]}`)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	for _, sig := range []string{hex.EncodeToString(mac.Sum(nil)), ""} {
		req, err := http.NewRequest(http.MethodPost, hs.URL+"/webhooks/"+bcfg.Receiver, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if sig != "" {
			req.Header.Set(auth.HeaderMistSignatureV2, sig)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := map[bool]int{true: 200, false: 401}[sig != ""]; resp.StatusCode != want {
			t.Fatalf("webhook answered %d %s, want %d", resp.StatusCode, answer, want)
		}
	}

	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

func exportedOf(t *testing.T, fams []*dto.MetricFamily) exported {
	t.Helper()
	e := exported{}
	for _, f := range fams {
		labels := map[string]bool{}
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = true
			}
		}
		for _, l := range scrapeLabels {
			labels[l] = true
		}
		name := f.GetName()
		add := func(n string, extra ...string) {
			l := make(map[string]bool, len(labels)+len(extra))
			for k := range labels {
				l[k] = true
			}
			for _, k := range extra {
				l[k] = true
			}
			e[n] = series{family: name, typ: f.GetType(), labels: l}
		}
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			add(name+"_bucket", "le")
			add(name + "_sum")
			add(name + "_count")
		case dto.MetricType_SUMMARY:
			add(name, "quantile")
			add(name + "_sum")
			add(name + "_count")
		default:
			add(name)
		}
	}
	if len(e) == 0 {
		t.Fatal("the registry gathered no metric")
	}
	return e
}

// checker collects the problems of queries against the exported metrics.
type checker struct {
	metrics  exported
	parser   parser.Parser
	problems []string
	used     map[string]bool // families named by a query
}

func newChecker(m exported) *checker {
	return &checker{metrics: m, parser: parser.NewParser(parser.Options{}), used: map[string]bool{}}
}

func (c *checker) errorf(format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}

// grafanaVars replaces Grafana's variables so that a query parses as
// PromQL: interval variables become a duration, the others (used only in
// regular-expression matchers) match anything.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")

var grafanaVarRE = regexp.MustCompile(`\$\{?[A-Za-z_][A-Za-z0-9_]*\}?`)

func expandGrafana(q string) string {
	return grafanaVarRE.ReplaceAllString(grafanaVars.Replace(q), ".*")
}

// query checks one PromQL expression and returns the labels of its result
// (nil for a scalar, or when it does not parse).
func (c *checker) query(where, q string) map[string]bool {
	expr, err := c.parser.ParseExpr(q)
	if err != nil {
		c.errorf("%s: %q does not parse: %v", where, q, err)
		return nil
	}
	return c.labels(where, expr)
}

// labels checks node and returns the labels its result carries: every
// metric it selects must be exported and every label it names must be on
// what it applies to.
func (c *checker) labels(where string, node parser.Expr) map[string]bool {
	switch n := node.(type) {
	case *parser.VectorSelector:
		return c.selector(where, n, "")
	case *parser.MatrixSelector:
		return c.labels(where, n.VectorSelector)
	case *parser.ParenExpr:
		return c.labels(where, n.Expr)
	case *parser.UnaryExpr:
		return c.labels(where, n.Expr)
	case *parser.SubqueryExpr:
		return c.labels(where, n.Expr)
	case *parser.NumberLiteral, *parser.StringLiteral:
		return nil
	case *parser.Call:
		return c.call(where, n)
	case *parser.AggregateExpr:
		if n.Param != nil {
			c.labels(where, n.Param)
		}
		in := c.labels(where, n.Expr)
		for _, l := range n.Grouping {
			if !in[l] {
				c.errorf("%s: %s by/without (%s): the aggregated series have no label %q (they have %s)", where, n.Op, strings.Join(n.Grouping, ", "), l, setString(in))
			}
		}
		switch op := n.Op.String(); {
		case op == "topk" || op == "bottomk" || op == "limitk" || op == "limit_ratio":
			return in
		case n.Without:
			out := copySet(in)
			for _, l := range n.Grouping {
				delete(out, l)
			}
			return out
		default:
			out := map[string]bool{}
			for _, l := range n.Grouping {
				out[l] = true
			}
			if op == "count_values" {
				if s, ok := n.Param.(*parser.StringLiteral); ok {
					out[s.Val] = true
				}
			}
			return out
		}
	case *parser.BinaryExpr:
		l, r := c.labels(where, n.LHS), c.labels(where, n.RHS)
		lScalar, rScalar := n.LHS.Type() == parser.ValueTypeScalar, n.RHS.Type() == parser.ValueTypeScalar
		switch {
		case lScalar && rScalar:
			return nil
		case lScalar:
			return r
		case rScalar:
			return l
		}
		if vm := n.VectorMatching; vm != nil {
			for _, lbl := range vm.MatchingLabels {
				if vm.On && (!l[lbl] || !r[lbl]) || !vm.On && !l[lbl] && !r[lbl] {
					c.errorf("%s: on/ignoring (%s): label %q is not on both sides", where, strings.Join(vm.MatchingLabels, ", "), lbl)
				}
			}
			for _, lbl := range vm.Include {
				if !l[lbl] && !r[lbl] {
					c.errorf("%s: group_left/right (%s): no side has label %q", where, strings.Join(vm.Include, ", "), lbl)
				}
			}
		}
		if n.Op.String() == "or" {
			out := copySet(l)
			for k := range r {
				out[k] = true
			}
			return out
		}
		return l
	}
	c.errorf("%s: the test does not know the PromQL node %T (%s)", where, node, node)
	return nil
}

// counterFuncs apply to counters; gaugeFuncs to gauges.
var (
	counterFuncs = []string{"rate", "irate", "increase", "resets"}
	gaugeFuncs   = []string{"delta", "idelta", "deriv", "predict_linear", "changes"}
)

func (c *checker) call(where string, n *parser.Call) map[string]bool {
	name := n.Func.Name
	var args []map[string]bool
	for _, a := range n.Args {
		// rate() and its kin must get the kind of metric they are made for.
		if slices.Contains(counterFuncs, name) || slices.Contains(gaugeFuncs, name) {
			if ms, ok := a.(*parser.MatrixSelector); ok {
				if vs, ok := ms.VectorSelector.(*parser.VectorSelector); ok {
					args = append(args, c.selector(where, vs, name))
					continue
				}
			}
		}
		args = append(args, c.labels(where, a))
	}
	switch name {
	case "vector", "time", "pi", "scalar":
		return nil
	case "absent", "absent_over_time":
		out := map[string]bool{}
		if vs := selectorOf(n.Args[0]); vs != nil {
			for _, m := range vs.LabelMatchers {
				if m.Name != model.MetricNameLabel && m.Type.String() == "=" {
					out[m.Name] = true
				}
			}
		}
		return out
	case "histogram_quantile":
		if !args[1]["le"] {
			c.errorf("%s: histogram_quantile over series without an le label (have %s): use the _bucket series", where, setString(args[1]))
		}
		out := copySet(args[1])
		delete(out, "le")
		return out
	case "label_replace", "label_join":
		out := copySet(args[0])
		if s, ok := n.Args[1].(*parser.StringLiteral); ok {
			out[s.Val] = true
		}
		return out
	}
	for i, a := range n.Args {
		if t := a.Type(); t == parser.ValueTypeVector || t == parser.ValueTypeMatrix {
			out := copySet(args[i])
			delete(out, model.MetricNameLabel)
			return out
		}
	}
	return nil
}

func selectorOf(e parser.Expr) *parser.VectorSelector {
	switch n := e.(type) {
	case *parser.VectorSelector:
		return n
	case *parser.MatrixSelector:
		return selectorOf(n.VectorSelector)
	case *parser.ParenExpr:
		return selectorOf(n.Expr)
	}
	return nil
}

// selector checks a vector selector; fn is the range function applied to
// it, if any.
func (c *checker) selector(where string, vs *parser.VectorSelector, fn string) map[string]bool {
	name := vs.Name
	for _, m := range vs.LabelMatchers {
		if m.Name == model.MetricNameLabel && m.Type.String() == "=" {
			name = m.Value
		}
	}
	s, ok := c.metrics[name]
	if !ok {
		c.errorf("%s: %s is not a metric the bridge exports%s", where, name, c.suggest(name))
		return nil
	}
	c.used[s.family] = true
	for _, m := range vs.LabelMatchers {
		if m.Name != model.MetricNameLabel && !s.labels[m.Name] {
			c.errorf("%s: %s has no label %q (it has %s)", where, name, m.Name, setString(s.labels))
		}
	}
	isCounter := s.typ == dto.MetricType_COUNTER || s.typ == dto.MetricType_HISTOGRAM || s.typ == dto.MetricType_SUMMARY
	switch {
	case slices.Contains(counterFuncs, fn) && !isCounter:
		c.errorf("%s: %s() over %s, a %s: use delta() or deriv()", where, fn, name, s.typ)
	case slices.Contains(gaugeFuncs, fn) && s.typ != dto.MetricType_GAUGE:
		c.errorf("%s: %s() over %s, a %s: use rate() or increase()", where, fn, name, s.typ)
	}
	out := copySet(s.labels)
	out[model.MetricNameLabel] = true
	return out
}

// suggest names the exported series closest to name.
func (c *checker) suggest(name string) string {
	best, bestD := "", 4
	for n := range c.metrics {
		if d := editDistance(name, n); d < bestD || d == bestD && n < best {
			best, bestD = n, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

var templateLabelRE = regexp.MustCompile(`\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}`)

// checkDashboard checks every query of a Grafana dashboard: panel
// targets, their legends, and the variables' label_values queries.
func (c *checker) checkDashboard(raw []byte) {
	var d struct {
		UID        string            `json:"uid"`
		Title      string            `json:"title"`
		Panels     []json.RawMessage `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		c.errorf("%s: %v", dashboardFile, err)
		return
	}
	if d.UID == "" || d.Title == "" {
		c.errorf("%s: the dashboard needs a uid and a title", dashboardFile)
	}
	vars := map[string]bool{"__rate_interval": true, "__interval": true, "__range": true}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if v.Type != "query" {
			continue
		}
		q := v.Query
		if m, ok := q.(map[string]any); ok {
			q = m["query"]
		}
		s, _ := q.(string)
		where := fmt.Sprintf("%s: variable %s", dashboardFile, v.Name)
		inner, ok := strings.CutPrefix(s, "label_values(")
		if !ok || !strings.HasSuffix(inner, ")") {
			c.errorf("%s: query %q is not label_values(<selector>, <label>)", where, s)
			continue
		}
		inner = strings.TrimSuffix(inner, ")")
		i := strings.LastIndex(inner, ",")
		if i < 0 {
			c.errorf("%s: query %q is not label_values(<selector>, <label>)", where, s)
			continue
		}
		if got := c.query(where, expandGrafana(inner[:i])); got != nil && !got[strings.TrimSpace(inner[i+1:])] {
			c.errorf("%s: %s has no label %q", where, inner[:i], strings.TrimSpace(inner[i+1:]))
		}
	}
	ids := map[int]bool{}
	var walk func(ps []json.RawMessage)
	walk = func(ps []json.RawMessage) {
		for _, rawPanel := range ps {
			var p struct {
				ID         int               `json:"id"`
				Type       string            `json:"type"`
				Title      string            `json:"title"`
				Panels     []json.RawMessage `json:"panels"`
				GridPos    *struct{ H, W int }
				Datasource *struct {
					UID string `json:"uid"`
				} `json:"datasource"`
				Targets []struct {
					RefID        string `json:"refId"`
					Expr         string `json:"expr"`
					LegendFormat string `json:"legendFormat"`
				} `json:"targets"`
			}
			if err := json.Unmarshal(rawPanel, &p); err != nil {
				c.errorf("%s: panel: %v", dashboardFile, err)
				continue
			}
			where := fmt.Sprintf("%s: panel %d %q", dashboardFile, p.ID, p.Title)
			if ids[p.ID] || p.ID == 0 {
				c.errorf("%s: the id is missing or used twice", where)
			}
			ids[p.ID] = true
			if p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 {
				c.errorf("%s: no gridPos", where)
			}
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if p.Title == "" || len(p.Targets) == 0 {
				c.errorf("%s: a panel needs a title and a query", where)
			}
			if p.Datasource == nil || !strings.HasPrefix(p.Datasource.UID, "${") || !vars[strings.Trim(p.Datasource.UID, "${}")] {
				c.errorf("%s: the data source must be a dashboard variable", where)
			}
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				twhere := fmt.Sprintf("%s, query %s", where, tg.RefID)
				if tg.RefID == "" || refs[tg.RefID] {
					c.errorf("%s: the refId is missing or used twice", twhere)
				}
				refs[tg.RefID] = true
				for _, m := range grafanaVarRE.FindAllString(tg.Expr, -1) {
					if name := strings.Trim(m, "${}"); !vars[name] {
						c.errorf("%s: variable %s is not defined", twhere, m)
					}
				}
				out := c.query(twhere, expandGrafana(tg.Expr))
				for _, m := range templateLabelRE.FindAllStringSubmatch(tg.LegendFormat, -1) {
					if !out[m[1]] {
						c.errorf("%s: legend {{%s}}: the query's series have no label %q (they have %s)", twhere, m[1], m[1], setString(out))
					}
				}
			}
		}
	}
	walk(d.Panels)
}

var annotationLabelRE = regexp.MustCompile(`\$labels\.([A-Za-z_][A-Za-z0-9_]*)`)

// checkAlerts loads a rules file as Prometheus does (rulefmt, which parses
// each expression and template), then checks each expression's metrics and
// labels and the labels its annotations name.
func (c *checker) checkAlerts(raw []byte) {
	groups, errs := rulefmt.Parse(raw, false, model.UTF8Validation, c.parser, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		c.errorf("%s: Prometheus would not load it: %v", alertsFile, err)
	}
	if groups == nil {
		return
	}
	names := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			where := fmt.Sprintf("%s: %s", alertsFile, r.Alert)
			if r.Alert == "" {
				c.errorf("%s: recording rule %q: the file holds alerts only", alertsFile, r.Record)
				continue
			}
			if names[r.Alert] {
				c.errorf("%s: alert name used twice", where)
			}
			names[r.Alert] = true
			if !strings.HasPrefix(r.Alert, "Mistbridge") {
				c.errorf("%s: alert names start with Mistbridge", where)
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" && s != "info" {
				c.errorf("%s: severity %q: want critical, warning or info", where, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				c.errorf("%s: needs a summary and a description", where)
			}
			out := c.query(where, r.Expr)
			for _, a := range r.Annotations {
				for _, m := range annotationLabelRE.FindAllStringSubmatch(a, -1) {
					if !out[m[1]] {
						c.errorf("%s: annotation uses $labels.%s, which the alert's series do not have (they have %s)", where, m[1], setString(out))
					}
				}
			}
		}
	}
	if len(names) == 0 {
		c.errorf("%s: no alert", alertsFile)
	}
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDashboardAndAlertsUseExportedMetrics(t *testing.T) {
	m := bridgeMetrics(t)
	c := newChecker(m)
	c.checkDashboard(readFile(t, dashboardFile))
	dashboardUses := copySet(c.used)
	c.checkAlerts(readFile(t, alertsFile))
	for _, p := range c.problems {
		t.Error(p)
	}
	// The dashboard shows every family of the bridge's own (the registry
	// also holds promhttp's): a new metric needs a panel.
	for _, f := range m.families() {
		if strings.HasPrefix(f, "mistbridge_") && !dashboardUses[f] {
			t.Errorf("%s: no panel shows %s", dashboardFile, f)
		}
	}
}

// The alert for a nearly full spool compares the spool's bytes with the
// bound each bridge exports (mistbridge_spool_max_bytes), so it holds
// whatever MISTBRIDGE_SPOOL_MAX_BYTES is; the spool-full scenario of the
// alert tests shows it firing.
func TestSpoolAlertFollowsTheBound(t *testing.T) {
	groups, errs := rulefmt.Parse(readFile(t, alertsFile), false, model.UTF8Validation, parser.NewParser(parser.Options{}), nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "MistbridgeSpoolNearlyFull" {
				if !strings.Contains(r.Expr, "mistbridge_spool_max_bytes") {
					t.Errorf("MistbridgeSpoolNearlyFull: %q, want it relative to mistbridge_spool_max_bytes", r.Expr)
				}
				return
			}
		}
	}
	t.Error("no MistbridgeSpoolNearlyFull alert")
}

// The checks catch a broken copy of each file: a misspelt metric, a label
// the metric does not have, a legend or annotation naming a missing label,
// a function applied to the wrong kind of metric, and a rule Prometheus
// would not load.
func TestChecksCatchMistakes(t *testing.T) {
	m := bridgeMetrics(t)
	dashboard, alerts := string(readFile(t, dashboardFile)), string(readFile(t, alertsFile))
	tests := []struct {
		name, file, old, new, want string
	}{
		{"dashboard metric", dashboardFile, "mistbridge_spool_oldest_age_seconds{", "mistbridge_spool_oldest_age_second{",
			"mistbridge_spool_oldest_age_second is not a metric the bridge exports (did you mean mistbridge_spool_oldest_age_seconds?)"},
		{"dashboard histogram", dashboardFile, "mistbridge_http_request_duration_seconds_bucket{", "mistbridge_http_request_duration_seconds{",
			"mistbridge_http_request_duration_seconds is not a metric"},
		{"dashboard label", dashboardFile, "sum by (sink) (rate(mistbridge_sink_retries_total", "sum by (sinks) (rate(mistbridge_sink_retries_total",
			`have no label "sinks"`},
		{"dashboard matcher", dashboardFile, `mistbridge_events_accepted_total{instance=~\"$instance\", receiver`, `mistbridge_events_accepted_total{instance=~\"$instance\", reciever=\"x\", receiver`,
			`mistbridge_events_accepted_total has no label "reciever"`},
		{"dashboard legend", dashboardFile, `"{{topic}}"`, `"{{topics}}"`, `legend {{topics}}`},
		{"dashboard variable", dashboardFile, "label_values(mistbridge_http_requests_total, instance)", "label_values(mistbridge_http_request_total, instance)",
			"mistbridge_http_request_total is not a metric"},
		{"dashboard undefined variable", dashboardFile, `mistbridge_spool_events{instance=~\"$instance\"}`, `mistbridge_spool_events{instance=~\"$instanse\"}`,
			"variable $instanse is not defined"},
		{"alert metric", alertsFile, "mistbridge_sink_dead_letters_total", "mistbridge_sink_deadletters_total",
			"mistbridge_sink_deadletters_total is not a metric"},
		{"alert label", alertsFile, "sum by (instance, receiver, reason)", "sum by (instance, receiver, cause)", `no label "cause"`},
		{"alert annotation", alertsFile, "burst of {{ $labels.reason }}", "burst of {{ $labels.cause }}", "$labels.cause"},
		{"alert rate of a gauge", alertsFile, "delta(mistbridge_spool_events[15m])", "rate(mistbridge_spool_events[15m])", "rate() over mistbridge_spool_events, a GAUGE"},
		{"alert syntax", alertsFile, "> 900", "> > 900", "Prometheus would not load it"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := map[string]string{dashboardFile: dashboard, alertsFile: alerts}[tc.file]
			if !strings.Contains(src, tc.old) {
				t.Fatalf("%s has no %q to break", tc.file, tc.old)
			}
			broken := strings.ReplaceAll(src, tc.old, tc.new)
			c := newChecker(m)
			if tc.file == dashboardFile {
				c.checkDashboard([]byte(broken))
			} else {
				c.checkAlerts([]byte(broken))
			}
			if !slices.ContainsFunc(c.problems, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Errorf("no problem mentions %q; got:\n%s", tc.want, strings.Join(c.problems, "\n"))
			}
		})
	}
}

func copySet(s map[string]bool) map[string]bool {
	out := make(map[string]bool, len(s))
	for k, v := range s {
		out[k] = v
	}
	return out
}

func setString(s map[string]bool) string {
	var keys []string
	for k := range s {
		if k != model.MetricNameLabel {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return "none"
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
