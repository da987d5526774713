//go:build !race

// The race detector makes sync.Pool drop items at random, so the
// allocation budget is checked in normal builds only: make test runs this
// file without -race as well.

package bridge_test

import (
	"net/http"
	"testing"
)

// TestHandlerAllocs holds the handler to an allocation budget: what one
// signed 10-event request allocates, from the request to the answer,
// through a Router with stub outputs (see the note at the top of this
// file). The budgets are what was measured when they were set, plus a
// little margin; a change that allocates more per request or per event
// fails here. What remains is per request, none of it per event: Split's
// batch (4), the delivery deadline (4), the ids and the source (2), the
// type (1), the envelope's topic (1), the signature (1), net/http's and
// the answer's (5), the request id with its X-Request-Id header and the
// access log line (3), and the receive time carried to the sinks for
// mistbridge_delivery_latency_seconds (2).
func TestHandlerAllocs(t *testing.T) {
	tests := []struct {
		name    string
		outputs []string
		budget  float64
	}{
		{"one output", []string{"nats"}, 25},           // measured 23
		{"two outputs", []string{"nats", "kafka"}, 28}, // measured 26: a goroutine, its WaitGroup, the errors
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hr := newHandlerRig(t, tt.outputs...)
			if code := hr.serve(); code != http.StatusOK {
				t.Fatalf("status %d: %s", code, hr.w.body.String())
			}
			const runs = 200
			allocs := testing.AllocsPerRun(runs, func() {
				if code := hr.serve(); code != http.StatusOK {
					t.Fatalf("status %d: %s", code, hr.w.body.String())
				}
			})
			// AllocsPerRun serves runs+1 requests, and one came before.
			for _, o := range hr.outputs {
				if got, want := o.events.Load(), int64((runs+2)*hr.events); got != want {
					t.Fatalf("output %s got %d events, want %d", o.name, got, want)
				}
			}
			t.Logf("%.1f allocations per 10-event request (budget %.0f)", allocs, tt.budget)
			if allocs > tt.budget {
				t.Errorf("%.1f allocations per 10-event request, over the budget of %.0f", allocs, tt.budget)
			}
		})
	}
}
