package status

import (
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// The metric families a sample reads, as the bridge, the sinks and the
// spool register them.
const (
	famEventsAccepted = "mistbridge_events_accepted_total"       // receiver, topic
	famRequests       = "mistbridge_http_requests_total"         // receiver, code
	famAuthFailures   = "mistbridge_auth_failures_total"         // receiver, reason
	famSinkPublished  = "mistbridge_sink_published_events_total" // sink
	famSinkRetries    = "mistbridge_sink_retries_total"          // sink
	famSinkDead       = "mistbridge_sink_dead_letters_total"     // sink
	famSinkFailed     = "mistbridge_sink_failed_events_total"    // sink
	famSpoolEvents    = "mistbridge_spool_events"                // sink, gauge
	famSpoolBytes     = "mistbridge_spool_bytes"                 // sink, gauge
	famSpoolAge       = "mistbridge_spool_oldest_age_seconds"    // sink, gauge
	famConnsRefused   = "mistbridge_connections_refused_total"
	famArchiveFailed  = "mistbridge_archive_failures_total"
)

// The sources of an error count.
const (
	SourceAnswer     = "answer"     // a webhook request answered with an error
	SourceAuth       = "auth"       // an authentication failure (when answers carry no reason)
	SourceSink       = "sink"       // events a sink dead-lettered, failed or retried
	SourceConnection = "connection" // connections refused
	SourceArchive    = "archive"    // bodies the raw archive failed to keep
)

// errKey names one error count.
type errKey struct {
	Source string
	Sink   string
	Code   int
	Reason string
}

// series is one figure per second over the window, with its total: the
// counter's value (a sum for [Other]) or the gauge's latest value.
type series struct {
	slots []float64 // the value of second s is slots[s mod len(slots)]
	total float64

	// Set while a sample is taken.
	seen  bool
	delta float64 // counters: growth since the last sample
	cum   float64 // counters: sum of the values; gauges: the value
}

// recvTotals are one receiver's totals from the metrics.
type recvTotals struct {
	requests, events, errors float64
	// grew is the time of the last sample in which its request count grew:
	// when Request is not called, the last request's time to a second.
	grew time.Time
}

// sampled is what the samples of the gatherer built: per-second rings for
// the last window seconds. Its owner guards it.
type sampled struct {
	w    int
	head int64     // the newest second; 0 before the first sample
	at   time.Time // when the last sample was taken
	prev map[string]float64

	topics map[string]*series     // events accepted, by topic
	sinks  map[string]*series     // events acknowledged, by sink
	spool  map[string]*series     // gauge: events spooled, by sink
	bytes  map[string]float64     // spooled bytes, by sink
	age    map[string]float64     // age of the oldest spooled event, by sink
	errs   map[errKey]*series     // errors by reason
	recv   map[string]*recvTotals // by receiver
	gerr   string                 // the last gather error, if any
}

func newSampled(w int) *sampled {
	return &sampled{
		w:      w,
		prev:   map[string]float64{},
		topics: map[string]*series{},
		sinks:  map[string]*series{},
		spool:  map[string]*series{},
		bytes:  map[string]float64{},
		age:    map[string]float64{},
		errs:   map[errKey]*series{},
		recv:   map[string]*recvTotals{},
	}
}

// reasonCount is a Request-side count of refused answers.
type reasonCount struct {
	key errKey
	n   float64
}

// Sample reads the gatherer and the counts of Request once: what grew since
// the last sample is put in the second of at (spread evenly over the
// seconds since the last sample when several passed). [Recorder.Run] calls
// it once a second; a test may call it with times of its own.
func (r *Recorder) Sample(at time.Time) {
	var (
		fams []*dto.MetricFamily
		gerr error
	)
	if r.o.Gatherer != nil {
		// A gather error still returns what could be gathered.
		fams, gerr = r.o.Gatherer.Gather()
	}
	hooked := r.hooked.Load()
	var reasons []reasonCount
	r.reasons.each(func(_ string, s *reasonStat) {
		if n := s.n.Load(); n > 0 {
			reasons = append(reasons, reasonCount{errKey{Source: SourceAnswer, Code: s.code, Reason: s.reason}, float64(n)})
		}
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	r.st.sample(at, fams, gerr, hooked, reasons, r.o.MaxTopics)
}

func (st *sampled) sample(at time.Time, fams []*dto.MetricFamily, gerr error, hooked bool, reasons []reasonCount, maxNames int) {
	from, gap := st.advance(at.Unix())
	st.at = at
	st.resetTotals()
	st.gerr = ""
	if gerr != nil {
		st.gerr = gerr.Error()
	}
	grew := map[string]bool{}
	for _, f := range fams {
		name := f.GetName()
		for _, m := range f.GetMetric() {
			switch name {
			case famEventsAccepted:
				rc, topic := label(m, "receiver"), label(m, "topic")
				v := st.counter(m)
				st.named(st.topics, topic, maxNames).add(v, st.delta(name, m, v))
				st.receiver(rc, maxNames).events += v
			case famRequests:
				rc, code := label(m, "receiver"), label(m, "code")
				v := st.counter(m)
				d := st.delta(name, m, v)
				t := st.receiver(rc, maxNames)
				t.requests += v
				if d > 0 {
					grew[rc] = true
				}
				if code != "200" {
					t.errors += v
					if !hooked { // else the answers' reasons say more
						c, _ := strconv.Atoi(code)
						st.errSeries(errKey{Source: SourceAnswer, Code: c}).add(v, d)
					}
				}
			case famAuthFailures:
				if hooked {
					continue // each is also an answer, with this reason
				}
				v := st.counter(m)
				st.errSeries(errKey{Source: SourceAuth, Reason: label(m, "reason")}).add(v, st.delta(name, m, v))
			case famSinkPublished:
				v := st.counter(m)
				st.named(st.sinks, label(m, "sink"), maxNames).add(v, st.delta(name, m, v))
			case famSinkDead, famSinkFailed, famSinkRetries:
				v := st.counter(m)
				k := errKey{Source: SourceSink, Sink: label(m, "sink"), Reason: sinkReason[name]}
				st.errSeries(k).add(v, st.delta(name, m, v))
			case famConnsRefused:
				v := st.counter(m)
				st.errSeries(errKey{Source: SourceConnection, Reason: "refused_per_ip"}).add(v, st.delta(name, m, v))
			case famArchiveFailed:
				v := st.counter(m)
				st.errSeries(errKey{Source: SourceArchive, Reason: "archive_failed"}).add(v, st.delta(name, m, v))
			case famSpoolEvents:
				sink := label(m, "sink")
				st.named(st.sinks, sink, maxNames) // a sink with a spool is a sink
				s := st.named(st.spool, sink, maxNames)
				s.seen = true
				s.cum += m.GetGauge().GetValue()
			case famSpoolBytes:
				st.bytes[label(m, "sink")] = m.GetGauge().GetValue()
			case famSpoolAge:
				st.age[label(m, "sink")] = m.GetGauge().GetValue()
			}
		}
	}
	for _, rc := range reasons {
		// Request's counts never go back: no reset to see.
		key := "\x00" + SourceAnswer + "\x00" + strconv.Itoa(rc.key.Code) + "\x00" + rc.key.Reason
		st.errSeries(rc.key).add(rc.n, rc.n-st.prev[key])
		st.prev[key] = rc.n
	}
	for rc := range grew {
		st.receiver(rc, maxNames).grew = at
	}
	for _, m := range []map[string]*series{st.topics, st.sinks} {
		for _, s := range m {
			st.settle(s, from, gap, false)
		}
	}
	for _, s := range st.spool {
		st.settle(s, from, gap, true)
	}
	for _, s := range st.errs {
		st.settle(s, from, gap, false)
	}
}

var sinkReason = map[string]string{
	famSinkDead:    "dead_lettered",
	famSinkFailed:  "failed",
	famSinkRetries: "retried",
}

// advance moves the newest second to sec, zeroing the seconds it passes,
// and returns the first second a sample's growth goes to and over how many
// seconds it is spread: the growth of a sample after a pause is spread
// over the pause, of which the seconds still in the window are kept.
func (st *sampled) advance(sec int64) (from int64, gap int64) {
	switch {
	case st.head == 0:
		st.clear(sec, sec)
		st.head = sec
		return sec, 1
	case sec <= st.head: // the same second again, or the clock went back
		return st.head, 1
	}
	gap = sec - st.head
	from = max(st.head+1, sec-int64(st.w)+1)
	st.clear(from, sec)
	st.head = sec
	return from, gap
}

// clear zeroes the seconds from..to of every series.
func (st *sampled) clear(from, to int64) {
	each := func(s *series) {
		if to-from+1 >= int64(st.w) {
			clear(s.slots)
			return
		}
		for sec := from; sec <= to; sec++ {
			s.slots[st.slot(sec)] = 0
		}
	}
	for _, m := range []map[string]*series{st.topics, st.sinks, st.spool} {
		for _, s := range m {
			each(s)
		}
	}
	for _, s := range st.errs {
		each(s)
	}
}

func (st *sampled) slot(sec int64) int {
	i := int(sec % int64(st.w))
	if i < 0 {
		i += st.w
	}
	return i
}

// settle puts what a sample found into the series: a counter's growth
// spread over gap seconds, of which those from `from` on are in the window;
// a gauge's value in each of them.
func (st *sampled) settle(s *series, from, gap int64, gauge bool) {
	if s.seen {
		s.total = s.cum
	}
	switch {
	case gauge && s.seen:
		for sec := from; sec <= st.head; sec++ {
			s.slots[st.slot(sec)] = s.cum
		}
	case !gauge && s.delta != 0:
		per := s.delta / float64(gap)
		for sec := from; sec <= st.head; sec++ {
			s.slots[st.slot(sec)] += per
		}
	}
	s.seen, s.delta, s.cum = false, 0, 0
}

// add counts a counter's value and growth into s.
func (s *series) add(v, d float64) {
	s.seen = true
	s.cum += v
	s.delta += d
}

// named returns the series of name in m, made when there is room for it,
// else the series of Other.
func (st *sampled) named(m map[string]*series, name string, maxNames int) *series {
	if s, ok := m[name]; ok {
		return s
	}
	if len(m) >= maxNames {
		name = Other
		if s, ok := m[name]; ok {
			return s
		}
	}
	s := &series{slots: make([]float64, st.w)}
	m[strings.Clone(name)] = s
	return s
}

func (st *sampled) errSeries(k errKey) *series {
	if s, ok := st.errs[k]; ok {
		return s
	}
	if len(st.errs) >= 4*DefaultMaxTopics { // sinks × 3 and fixed reasons: never near
		k = errKey{Source: k.Source, Reason: Other}
		if s, ok := st.errs[k]; ok {
			return s
		}
	}
	s := &series{slots: make([]float64, st.w)}
	st.errs[k] = s
	return s
}

func (st *sampled) receiver(name string, maxNames int) *recvTotals {
	if t, ok := st.recv[name]; ok {
		return t
	}
	if len(st.recv) >= maxNames {
		name = Other
		if t, ok := st.recv[name]; ok {
			return t
		}
	}
	t := &recvTotals{}
	st.recv[strings.Clone(name)] = t
	return t
}

// resetTotals zeroes the receivers' sums before a sample adds them up.
func (st *sampled) resetTotals() {
	for _, t := range st.recv {
		t.requests, t.events, t.errors = 0, 0, 0
	}
}

// counter returns m's value: a counter's, or an untyped one's.
func (st *sampled) counter(m *dto.Metric) float64 {
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	return m.GetUntyped().GetValue()
}

// delta returns how much the series of family fam and m's labels grew since
// the last sample; a series that went back (a reset) grew by its value.
func (st *sampled) delta(fam string, m *dto.Metric, v float64) float64 {
	var b strings.Builder
	b.WriteString(fam)
	for _, lp := range m.GetLabel() {
		b.WriteByte(0)
		b.WriteString(lp.GetName())
		b.WriteByte(0)
		b.WriteString(lp.GetValue())
	}
	key := b.String()
	d := v - st.prev[key]
	if d < 0 {
		d = v
	}
	st.prev[key] = v
	return d
}

func label(m *dto.Metric, name string) string {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}
