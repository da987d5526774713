package loadgen

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Result is what a run measured, over its measured part (after the
// warm-up). Histograms hold microseconds.
type Result struct {
	// Rate (events/s; 0 for a closed loop), Batch, Concurrency,
	// Connections and Duration repeat the run's settings.
	Rate                            float64
	Batch, Concurrency, Connections int
	Duration                        time.Duration

	Requests int            // answers of any status
	Events   int            // events in requests answered 2xx
	Codes    map[int]int    // answers by status
	Answers  map[int]string // the start of one answer's body per non-2xx status
	Errors   int            // requests without an answer (transport errors)
	// ErrorKinds counts Errors by kind: ErrConnect, ErrWrite, ErrRead,
	// ErrTimeout.
	ErrorKinds map[string]int
	FirstError string

	// Unsent (fixed rate only) counts the requests scheduled in the
	// measured window that were never sent: the run fell so far behind
	// (server or sender) that their time came after its end.
	Unsent int

	// Latency of 2xx answers, from the scheduled send time (fixed rate) or
	// from the send (closed loop) to the end of the answer.
	Latency *hdrhistogram.Histogram
	// Service is the same from the actual send; Lag (fixed rate only) is
	// the actual send minus the scheduled time: the wait for a free
	// request slot or connection, and the sender's own lateness.
	Service, Lag *hdrhistogram.Histogram

	// Elapsed runs from the start of the measured part to the last answer.
	Elapsed time.Duration
}

// EventsPerSec is the rate of events answered 2xx.
func (r *Result) EventsPerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Events) / r.Elapsed.Seconds()
}

// RequestsPerSec is the rate of answers of any status.
func (r *Result) RequestsPerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// Percentile returns the q-th (0..1) latency of 2xx answers.
func (r *Result) Percentile(q float64) time.Duration {
	if r.Latency == nil || r.Latency.TotalCount() == 0 {
		return 0
	}
	return time.Duration(r.Latency.ValueAtQuantile(q*100)) * time.Microsecond
}

// Non2xx counts answers whose status is not 2xx.
func (r *Result) Non2xx() int {
	n := 0
	for code, c := range r.Codes {
		if code < 200 || code > 299 {
			n += c
		}
	}
	return n
}

// CodeList lists the answers by status, "200:1234 429:5", or "none".
func (r *Result) CodeList() string {
	if len(r.Codes) == 0 {
		return "none"
	}
	var b strings.Builder
	for _, code := range slices.Sorted(maps.Keys(r.Codes)) {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d:%d", code, r.Codes[code])
	}
	return b.String()
}

func ms(us int64) string { return fmt.Sprintf("%.2fms", float64(us)/1000) }

func quantiles(h *hdrhistogram.Histogram) string {
	if h.TotalCount() == 0 {
		return "no 2xx answers"
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  p99.9 %s  max %s",
		ms(h.ValueAtQuantile(50)), ms(h.ValueAtQuantile(90)), ms(h.ValueAtQuantile(99)),
		ms(h.ValueAtQuantile(99.9)), ms(h.Max()))
}

// String is a human summary of several lines.
func (r *Result) String() string {
	var b strings.Builder
	if r.Rate > 0 {
		fmt.Fprintf(&b, "fixed rate %.0f events/s (%.1f requests/s of %d events), up to %d in flight on %d connections, %v\n",
			r.Rate, r.Rate/float64(r.Batch), r.Batch, r.Concurrency, r.Connections, r.Duration)
	} else {
		fmt.Fprintf(&b, "closed loop, %d requests in flight on %d connections, %d events a request, %v\n",
			r.Concurrency, r.Connections, r.Batch, r.Duration)
	}
	fmt.Fprintf(&b, "  %.0f events/s answered 2xx (%d events); %d answers in %.2fs = %.0f requests/s\n",
		r.EventsPerSec(), r.Events, r.Requests, r.Elapsed.Seconds(), r.RequestsPerSec())
	fmt.Fprintf(&b, "  status: %s\n", r.CodeList())
	for _, code := range slices.Sorted(maps.Keys(r.Answers)) {
		fmt.Fprintf(&b, "    %d says: %s\n", code, strings.TrimSpace(strings.ToValidUTF8(r.Answers[code], "?")))
	}
	if r.Errors > 0 {
		var kinds []string
		for _, k := range slices.Sorted(maps.Keys(r.ErrorKinds)) {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, r.ErrorKinds[k]))
		}
		fmt.Fprintf(&b, "  errors (no answer): %d: %s; first: %s\n", r.Errors, strings.Join(kinds, ", "), r.FirstError)
	}
	if r.Rate > 0 {
		fmt.Fprintf(&b, "  unsent (fell behind the schedule): %d\n", r.Unsent)
		fmt.Fprintf(&b, "  latency from the scheduled send: %s\n", quantiles(r.Latency))
		fmt.Fprintf(&b, "  service time from the actual send: %s\n", quantiles(r.Service))
		fmt.Fprintf(&b, "  send lag (actual - scheduled): %s\n", quantiles(r.Lag))
	} else {
		fmt.Fprintf(&b, "  latency (at saturation: each request waits for the one before): %s\n", quantiles(r.Latency))
	}
	return b.String()
}

// WriteHDR writes the latency histogram (2xx answers, from the scheduled
// send time) as an HdrHistogram percentile distribution (.hgrm) in
// milliseconds, the text that HdrHistogram's plotters read.
func (r *Result) WriteHDR(w io.Writer) error {
	_, err := r.Latency.PercentilesPrint(w, 5, 1000.0)
	return err
}

// Progress is a run's state while it goes on.
type Progress struct {
	Elapsed, Total time.Duration // since the start (warm-up included), and the whole run
	Warmup         bool          // still in the warm-up (nothing is counted yet)
	Done           bool          // the last report
	Requests       int64         // answers, measured part
	Events         int64         // events answered 2xx
	Non2xx, Errors int64
	Rate           float64 // events/s answered 2xx since the last report
}

// String is one line: counts, rate and time left.
func (p Progress) String() string {
	phase := ""
	if p.Warmup {
		phase = " (warm-up)"
	}
	left := max(p.Total-p.Elapsed, 0).Round(time.Second)
	return fmt.Sprintf("%5.0fs%s  %d requests  %d events  %.0f events/s  non-2xx %d  errors %d  ETA %v",
		p.Elapsed.Seconds(), phase, p.Requests, p.Events, p.Rate, p.Non2xx, p.Errors, left)
}
