//go:build !race

package natssink

import (
	"context"
	"testing"
)

// Encoding a batch's binary-mode messages into a pooled batch allocates
// one thing per event, the text of its time, once the batch's header maps
// exist: no map, header slice, subject or value copy per message. (The
// race detector changes allocation, and sync.Pool drops items under it:
// not built with -race.)
func TestEventMessageAllocs(t *testing.T) {
	br := startNATS(t, true)
	s := newSink(t, Config{URL: br.e.ClientURL(), JetStream: true, CreateStream: true}, nil)
	c := s.cur.Load()
	evs := events(10, 400, "allocs")
	ctx := context.Background()
	encode := func() {
		b := getBatch(len(evs))
		for i, ev := range evs {
			if err := s.eventMessage(ctx, c, b, i, ev); err != nil {
				t.Fatal(err)
			}
		}
		b.release()
	}
	encode() // warm: the batch gets its maps, the cache its subjects
	if n := testing.AllocsPerRun(100, encode); n > float64(len(evs)) {
		t.Errorf("%v allocations per %d-event batch, want at most %d (the times' text)", n, len(evs), len(evs))
	}
}
