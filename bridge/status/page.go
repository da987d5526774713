package status

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"html/template"
	"math"
	"strconv"
	"strings"
	"time"
)

var (
	//go:embed page.css
	pageCSS string
	//go:embed page.tmpl
	pageTmpl string

	templates = template.Must(template.New("status").Funcs(template.FuncMap{
		"rate":  fmtRate,
		"bytes": fmtBytes,
	}).Parse(pageTmpl))

	// csp allows the page's one inline style sheet (by its hash), the empty
	// icon, and forms to this origin: no script, nothing from elsewhere.
	csp = "default-src 'none'; style-src 'sha256-" + hashCSS(pageCSS) + "'; img-src data:; " +
		"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

func hashCSS(css string) string {
	sum := sha256.Sum256([]byte(css))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// headView is what the head of every page needs.
type headView struct {
	Title   string
	CSS     template.CSS
	Refresh int // seconds; 0 = the page does not reload itself
}

type loginView struct {
	headView
	Failed     bool
	SessionTTL string
}

type pageView struct {
	headView
	Snap         Snapshot
	Generated    string
	GeneratedISO string
	WindowLabel  string
	Logout       bool
	ShowData     bool
	ShowSubject  bool
	GatherError  string
	Requests     int64
	ErrorsRecent int64
	SpoolEvents  int64
	SinksOK      string
	SinksLabel   string
	Chart        chartView
	Topics       []flowRow
	Sinks        []sinkRow
	Errors       []errRow
	Receivers    []recvRow
	Latest       latestView
}

type sparkView struct {
	Label, Class, Points string
}

type flowRow struct {
	Flow
	Spark sparkView
}

type sinkRow struct {
	Sink
	StateClass string
	SpoolAge   string
}

type errRow struct {
	ErrorCount
	Key, Where string
}

type recvRow struct {
	Receiver
	Last *lastView
}

type lastView struct {
	At, AtISO, Ago, Topic, Answer string
	Events                        int
	Approximate, Failed           bool
}

type latestView struct {
	Topic  string
	Topics []string
	Rows   []eventRow
}

type eventRow struct {
	EventInfo
	Received, ReceivedISO, Time, TimeISO string
}

type chartView struct {
	Empty      bool
	YMax, YMid string
	Lines      []chartLine
}

type chartLine struct {
	Name, Class, Points string
	Main                bool // the events accepted, drawn under the sinks' lines
}

// palette is how many series classes the style sheet colours (s0...s7).
const palette = 8

// newPageView lays out the snapshot for the template.
func newPageView(s Snapshot, head headView, showData, logout bool) pageView {
	v := pageView{
		headView:     head,
		Snap:         s,
		Generated:    s.Generated.UTC().Format("2006-01-02 15:04:05 UTC"),
		GeneratedISO: isoTime(s.Generated),
		WindowLabel:  fmtWindow(s.WindowSeconds),
		Logout:       logout,
		ShowData:     showData,
		GatherError:  s.GatherError,
	}
	for _, t := range s.Topics {
		v.Topics = append(v.Topics, flowRow{Flow: t, Spark: spark(t.Name, t.PerSecond, "s0")})
	}
	ok := 0
	for _, sk := range s.Sinks {
		row := sinkRow{Sink: sk, SpoolAge: "–"}
		switch {
		case sk.State == "":
			row.State, row.StateClass = "–", "muted"
		case sk.State == "ok":
			row.StateClass = "ok"
			ok++
		default:
			row.StateClass = "bad"
		}
		if sk.Spool.Events > 0 {
			row.SpoolAge = fmtDuration(time.Duration(sk.Spool.OldestAgeSeconds * float64(time.Second)))
		}
		v.SpoolEvents += sk.Spool.Events
		v.Sinks = append(v.Sinks, row)
	}
	v.SinksOK, v.SinksLabel = strconv.Itoa(ok)+"/"+strconv.Itoa(len(s.Sinks)), "sinks delivering"
	if len(s.Sinks) > 0 && s.Sinks[0].State == "" { // no SinkStates: not known
		v.SinksOK, v.SinksLabel = strconv.Itoa(len(s.Sinks)), "sinks"
	}
	for _, e := range s.Errors {
		v.ErrorsRecent += e.Recent
		v.Errors = append(v.Errors, errRow{ErrorCount: e, Key: errLabel(e), Where: errWhere(e)})
	}
	for _, rc := range s.Receivers {
		v.Requests += rc.Requests
		row := recvRow{Receiver: rc}
		if l := rc.Last; l != nil {
			lv := &lastView{
				At: l.At.UTC().Format("15:04:05"), AtISO: isoTime(l.At),
				Ago: fmtDuration(s.Generated.Sub(l.At)), Topic: l.Topic, Events: l.Events,
				Approximate: l.Approximate, Failed: l.Code != 0 && l.Code != 200,
			}
			if l.Code != 0 {
				lv.Answer = strings.TrimSpace(strconv.Itoa(l.Code) + " " + l.Reason)
			}
			row.Last = lv
		}
		v.Receivers = append(v.Receivers, row)
	}
	v.Latest = latestView{Topic: s.Latest.Topic, Topics: s.Latest.Topics}
	for _, e := range s.Latest.Events {
		if e.Subject != "" {
			v.ShowSubject = true
		}
		row := eventRow{
			EventInfo:   e,
			Received:    e.Received.UTC().Format("15:04:05.000"),
			ReceivedISO: isoTime(e.Received),
		}
		if !e.Time.IsZero() {
			row.Time = e.Time.UTC().Format("2006-01-02 15:04:05")
			row.TimeISO = isoTime(e.Time)
		}
		v.Latest.Rows = append(v.Latest.Rows, row)
	}
	v.Chart = chart(s)
	return v
}

// isoTime is t for a datetime attribute: HTML allows at most three
// digits of a second's fraction.
func isoTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

func class(i int) string { return "s" + strconv.Itoa(i%palette) }

// errLabel is the reason column of an error count.
func errLabel(e ErrorCount) string {
	switch {
	case e.Source == SourceAnswer && e.Reason == "":
		return "HTTP " + strconv.Itoa(e.Code)
	case e.Source == SourceAnswer && e.Code != 0:
		return strconv.Itoa(e.Code) + " " + e.Reason
	}
	return e.Reason
}

func errWhere(e ErrorCount) string {
	switch e.Source {
	case SourceAnswer:
		return "webhook answer"
	case SourceAuth:
		return "authentication"
	case SourceSink:
		return "sink " + e.Sink
	case SourceConnection:
		return "connections"
	case SourceArchive:
		return "raw archive"
	}
	return e.Source
}

// The big chart's plot area in its 760×170 view box.
const (
	chartX0, chartX1 = 48.0, 750.0
	chartY0, chartY1 = 12.0, 146.0
)

// chart draws the events accepted and each sink's acknowledged events.
func chart(s Snapshot) chartView {
	if len(s.Accepted.PerSecond) == 0 {
		return chartView{Empty: true}
	}
	series := [][]float64{s.Accepted.PerSecond}
	lines := []chartLine{{Name: "accepted", Main: true}}
	for i, sk := range s.Sinks {
		series = append(series, sk.PerSecond)
		lines = append(lines, chartLine{Name: "acknowledged by " + sk.Name, Class: class(i + 1)})
	}
	peak := 0.0
	for _, per := range series {
		for _, x := range per {
			peak = max(peak, x)
		}
	}
	top := niceCeil(peak)
	for i, per := range series {
		lines[i].Points = polyline(per, chartX0, chartX1, chartY0, chartY1, top)
		if i == 0 {
			lines[i].Class = class(0)
		}
	}
	return chartView{YMax: fmtRate(top), YMid: fmtRate(top / 2), Lines: lines}
}

// spark is a sparkline of per in a 120×28 view box, scaled to its own peak.
func spark(name string, per []float64, cls string) sparkView {
	peak := 0.0
	for _, x := range per {
		peak = max(peak, x)
	}
	return sparkView{
		Label:  name + ": events per second, peak " + fmtRate(peak),
		Class:  cls,
		Points: polyline(per, 1, 119, 2, 26, niceCeil(peak)),
	}
}

// polyline returns the points of per from x0 to x1, a value of top at y0
// and 0 at y1.
func polyline(per []float64, x0, x1, y0, y1, top float64) string {
	if len(per) == 0 {
		return ""
	}
	var b []byte
	step := 0.0
	if len(per) > 1 {
		step = (x1 - x0) / float64(len(per)-1)
	}
	for i, v := range per {
		if i > 0 {
			b = append(b, ' ')
		}
		b = strconv.AppendFloat(b, math.Round((x0+step*float64(i))*10)/10, 'f', -1, 64)
		b = append(b, ',')
		b = strconv.AppendFloat(b, math.Round((y1-(y1-y0)*min(v/top, 1))*10)/10, 'f', -1, 64)
	}
	return string(b)
}

// niceCeil is the smallest 1, 2 or 5 times a power of ten at or above v,
// at least 1.
func niceCeil(v float64) float64 {
	if v <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// fmtRate shows a rate with one decimal below 100, none above.
func fmtRate(v float64) string {
	if v >= 100 {
		return strconv.FormatFloat(math.Round(v), 'f', 0, 64)
	}
	s := strconv.FormatFloat(math.Round(v*10)/10, 'f', 1, 64)
	return strings.TrimSuffix(s, ".0")
}

func fmtBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	v, i := float64(n), -1
	for v >= unit && i < 3 {
		v /= unit
		i++
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + " " + [...]string{"KiB", "MiB", "GiB", "TiB"}[i]
}

// fmtDuration is a short, rounded "how long": "<1 s", "42 s", "3 min",
// "5 h", "2 d".
func fmtDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return "<1 s"
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + " s"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + " min"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + " h"
	}
	return strconv.Itoa(int(d/(24*time.Hour))) + " d"
}

func fmtWindow(sec int) string {
	if sec%60 == 0 {
		return strconv.Itoa(sec/60) + " min"
	}
	return strconv.Itoa(sec) + " s"
}
