//go:build !race

package status

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mistbridge/mistbridge/codec"
)

// Once each slot has held an event, recording more allocates nothing. (The
// race detector changes allocation: not built with -race.)
func TestEventsNoAllocs(t *testing.T) {
	for _, prefix := range []string{"", "mist"} {
		r := New(Options{SubjectPrefix: prefix})
		mk := func(topic string, n int) *codec.Event {
			e := codec.Map(topic, []byte(fmt.Sprintf(`{"org_id":"6b1f3c1e-33c4-4a57-8f4e-0e1c2d3b4a59","site_id":"site-%d","timestamp":1700000000,"text":"%s"}`, n, strings.Repeat("é", n*20))))
			return &e
		}
		var evs []*codec.Event
		for i := range 10 {
			evs = append(evs, mk("device-events", i))
		}
		evs = append(evs, nil, mk("alarms", 1), mk("alarms", 2))
		r.Events(evs) // warm: the slots get their buffers
		r.Events(evs)
		if n := testing.AllocsPerRun(100, func() { r.Events(evs) }); n != 0 {
			t.Errorf("prefix %q: %v allocations per Events, want 0", prefix, n)
		}
	}
}
