package status

import (
	"cmp"
	"math"
	"slices"
	"time"
)

// Snapshot is every figure of the status page at one moment; GET
// /status.json serves it as JSON. Per-second figures run oldest first and
// end with the second of the last sample.
type Snapshot struct {
	// Generated is when the snapshot was taken; Sampled when the gatherer
	// was last read (zero before the first sample).
	Generated time.Time `json:"generated"`
	Sampled   time.Time `json:"sampled,omitzero"`
	// WindowSeconds is the length of every per-second figure.
	WindowSeconds int `json:"window_seconds"`
	// Accepted is the events accepted, all topics together.
	Accepted Flow `json:"accepted"`
	// Topics are the events accepted per topic, by name.
	Topics []Flow `json:"topics"`
	// Sinks are the events each sink's broker acknowledged, with the
	// sink's spool, by name.
	Sinks []Sink `json:"sinks"`
	// Errors are every error count that is not zero, most recent first.
	Errors []ErrorCount `json:"errors"`
	// Receivers are the webhook endpoints, by name.
	Receivers []Receiver `json:"receivers"`
	// Latest are the latest events of one topic.
	Latest Latest `json:"latest"`
	// GatherError is the error of the last read of the gatherer, if any:
	// the figures may then be partial.
	GatherError string `json:"gather_error,omitempty"`
}

// Flow is a count of events: its total and its rate per second.
type Flow struct {
	Name  string `json:"name"`
	Total int64  `json:"total"`
	// Rate10s and Rate60s are the mean events per second over the last 10
	// and 60 seconds; Peak is the busiest second in the window.
	Rate10s float64 `json:"rate_10s"`
	Rate60s float64 `json:"rate_60s"`
	Peak    float64 `json:"peak"`
	// PerSecond holds the events of each second of the window.
	PerSecond []float64 `json:"per_second"`
}

// Sink is one sink: the events its broker acknowledged and its spool.
type Sink struct {
	Flow
	// State is "ok" or why the sink is not delivering, when the handler
	// was given a way to ask ([HandlerOptions.SinkStates]).
	State string     `json:"state,omitempty"`
	Spool SpoolDepth `json:"spool"`
}

// SpoolDepth is what the spool holds for one sink, not yet delivered.
type SpoolDepth struct {
	Events           int64   `json:"events"`
	Bytes            int64   `json:"bytes"`
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	// PerSecond is the depth in events at each second of the window.
	PerSecond []float64 `json:"per_second"`
}

// ErrorCount is one kind of error and how often it happened.
type ErrorCount struct {
	// Source is SourceAnswer, SourceAuth, SourceSink, SourceConnection or
	// SourceArchive.
	Source string `json:"source"`
	// Sink names the sink of a SourceSink count.
	Sink string `json:"sink,omitempty"`
	// Code is the status of a SourceAnswer count.
	Code int `json:"code,omitempty"`
	// Reason is the answer's reason ("signature_mismatch", "unrouted"...;
	// empty when only the code is known), the authentication failure's, or
	// "dead_lettered", "failed", "retried", "refused_per_ip",
	// "archive_failed".
	Reason string `json:"reason,omitempty"`
	// Total counts since the start; Recent within the window.
	Total  int64 `json:"total"`
	Recent int64 `json:"recent"`
}

// Receiver is one webhook endpoint.
type Receiver struct {
	Name string `json:"name"`
	// Requests, Events and Errors count the requests answered, the events
	// accepted and the requests answered with an error.
	Requests int64 `json:"requests"`
	Events   int64 `json:"events"`
	Errors   int64 `json:"errors"`
	// Last is its last request, nil before the first.
	Last *LastRequest `json:"last,omitempty"`
}

// LastRequest is the last request a receiver answered.
type LastRequest struct {
	At     time.Time `json:"at"`
	Topic  string    `json:"topic,omitempty"`
	Events int       `json:"events"`
	Code   int       `json:"code,omitempty"`
	Reason string    `json:"reason,omitempty"`
	// Approximate is set when only the metrics tell of it ([Recorder.Request]
	// is not called): At is then the sample, to a second, in which the
	// receiver's request count grew, and nothing else is known.
	Approximate bool `json:"approximate,omitempty"`
}

// Latest are the latest events of one topic.
type Latest struct {
	// Topic is the topic shown: the one asked for, else the one with the
	// newest event.
	Topic string `json:"topic"`
	// Topics are the topics that have events kept.
	Topics []string `json:"topics"`
	// Events are the topic's kept events, newest first.
	Events []EventInfo `json:"events"`
}

// Snapshot returns every figure now, with the latest events of topic (""
// for the topic with the newest event).
func (r *Recorder) Snapshot(topic string) Snapshot {
	s := Snapshot{Generated: r.now(), WindowSeconds: int(r.o.Window / time.Second)}
	s.Latest = r.latestOf(topic)
	last := map[string]*LastRequest{}
	r.receivers.each(func(name string, st *receiverStat) {
		if lr := st.last.Load(); lr != nil {
			c := *lr
			last[name] = &c
		}
	})

	r.mu.RLock()
	defer r.mu.RUnlock()
	st := r.st
	s.Sampled = st.at
	s.GatherError = st.gerr
	all := make([]float64, st.w)
	var total float64
	for name, ser := range st.topics {
		f := st.flow(name, ser)
		s.Topics = append(s.Topics, f)
		total += ser.total
		for i, v := range f.PerSecond {
			all[i] += v
		}
	}
	s.Accepted = flowOf("accepted", total, all)
	if st.head == 0 {
		s.Accepted.PerSecond = nil
	}
	for name, ser := range st.sinks {
		sk := Sink{Flow: st.flow(name, ser)}
		if sp, ok := st.spool[name]; ok {
			sk.Spool = SpoolDepth{
				Events:           int64(math.Round(sp.total)),
				Bytes:            int64(math.Round(st.bytes[name])),
				OldestAgeSeconds: st.age[name],
				PerSecond:        st.window(sp),
			}
		}
		s.Sinks = append(s.Sinks, sk)
	}
	for k, ser := range st.errs {
		if ser.total == 0 {
			continue
		}
		recent := 0.0
		for _, v := range ser.slots {
			recent += v
		}
		s.Errors = append(s.Errors, ErrorCount{
			Source: k.Source, Sink: k.Sink, Code: k.Code, Reason: k.Reason,
			Total: int64(math.Round(ser.total)), Recent: int64(math.Round(recent)),
		})
	}
	for name, t := range st.recv {
		rc := Receiver{Name: name, Requests: int64(t.requests), Events: int64(t.events), Errors: int64(t.errors)}
		if lr, ok := last[name]; ok {
			rc.Last = lr
			delete(last, name)
		} else if !t.grew.IsZero() {
			rc.Last = &LastRequest{At: t.grew, Approximate: true}
		}
		s.Receivers = append(s.Receivers, rc)
	}
	for name, lr := range last { // known to Request only
		s.Receivers = append(s.Receivers, Receiver{Name: name, Last: lr})
	}
	byName := func(a, b Flow) int { return cmp.Compare(a.Name, b.Name) }
	slices.SortFunc(s.Topics, byName)
	slices.SortFunc(s.Sinks, func(a, b Sink) int { return byName(a.Flow, b.Flow) })
	slices.SortFunc(s.Receivers, func(a, b Receiver) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(s.Errors, func(a, b ErrorCount) int {
		return cmp.Or(cmp.Compare(b.Recent, a.Recent), cmp.Compare(b.Total, a.Total),
			cmp.Compare(a.Source, b.Source), cmp.Compare(a.Sink, b.Sink),
			cmp.Compare(a.Code, b.Code), cmp.Compare(a.Reason, b.Reason))
	})
	return s
}

// latestOf returns the kept events of topic, or of the topic with the
// newest event when topic is "".
func (r *Recorder) latestOf(topic string) Latest {
	l := Latest{Topic: topic}
	var newest time.Time
	var shown *latestRing
	r.latest.each(func(name string, ring *latestRing) {
		at, ok := ring.newestAt()
		if !ok {
			return
		}
		l.Topics = append(l.Topics, name)
		switch {
		case topic != "":
			if name == topic {
				shown = ring
			}
		case at.After(newest) || at.Equal(newest) && name < l.Topic:
			newest, l.Topic, shown = at, name, ring
		}
	})
	slices.Sort(l.Topics)
	// Only the ring shown has its events copied out: a ring is never
	// emptied, and may only have newer events by now.
	if shown != nil {
		l.Events = shown.newest()
	}
	return l
}

// window returns s's seconds, oldest first, ending with the newest; nil
// before the first sample.
func (st *sampled) window(s *series) []float64 {
	if st.head == 0 {
		return nil
	}
	out := make([]float64, st.w)
	for i := range out {
		out[i] = round3(s.slots[st.slot(st.head-int64(st.w)+1+int64(i))])
	}
	return out
}

func (st *sampled) flow(name string, s *series) Flow { return flowOf(name, s.total, st.window(s)) }

// flowOf computes a Flow's rates from its seconds.
func flowOf(name string, total float64, per []float64) Flow {
	f := Flow{Name: name, Total: int64(math.Round(total)), PerSecond: per}
	sum := func(n int) float64 {
		t := 0.0
		for _, v := range per[max(0, len(per)-n):] {
			t += v
		}
		return t
	}
	if len(per) > 0 {
		f.Rate10s = round3(sum(10) / 10)
		f.Rate60s = round3(sum(60) / float64(min(60, len(per))))
		f.Peak = slices.Max(per)
	}
	return f
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }
