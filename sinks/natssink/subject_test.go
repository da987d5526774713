package natssink

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/mistbridge/mistbridge/codec"
)

// A subjectCache gives codec.Subject's subject for every event, whatever
// it holds: events that differ only in what the key must tell apart (an
// empty id given or missing, a topic), long and odd ids, and more keys
// than slots, looked up from several goroutines at once.
func TestSubjectCacheIsSubject(t *testing.T) {
	c := newSubjectCache("mist.a")
	vals := []string{"", "o", "s", "_", "a b", "a.b", strings.Repeat("x", 65), "caf\u00e9", "*", ">"}
	var evs []codec.Event
	for _, topic := range []string{"device-events", "", "t.x", "t"} {
		for _, org := range vals {
			for _, site := range vals {
				for set := range 4 {
					evs = append(evs, codec.Event{Topic: topic, Org: org, Site: site, OrgSet: set&1 != 0, SiteSet: set&2 != 0})
				}
			}
		}
	}
	for i := range 3 * subjectCacheSize {
		evs = append(evs, codec.Event{Topic: "device-events", Org: "org", Site: fmt.Sprintf("site-%d", i)})
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 20 * len(evs) {
				ev := &evs[r.IntN(len(evs))]
				if got, want := c.subject(ev), codec.Subject("mist.a", ev); got != want {
					t.Errorf("subject of %+v = %q, want %q", ev, got, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkSubject(b *testing.B) {
	evs := events(97, 0, "bench")
	b.Run("codec", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			_ = codec.Subject(DefaultSubjectPrefix, evs[i%len(evs)])
			i++
		}
	})
	b.Run("cache", func(b *testing.B) {
		c := newSubjectCache(DefaultSubjectPrefix)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			_ = c.subject(evs[i%len(evs)])
			i++
		}
	})
}
