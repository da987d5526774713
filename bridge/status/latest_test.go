package status

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mistbridge/mistbridge/codec"
)

// wantInfo is what Events kept of e before the ring's slots owned their
// bytes: every string clipped, repaired and copied when the event was
// recorded. EventInfo must stay byte for byte the same.
func wantInfo(prefix string, e *codec.Event, at time.Time) EventInfo {
	keep := func(s string, n int, more string) string {
		cut := ""
		if len(s) > n {
			c := n
			for c > 0 && !utf8.RuneStart(s[c]) {
				c--
			}
			s, cut = s[:c], more
		}
		return strings.ToValidUTF8(s, "\uFFFD") + cut
	}
	in := EventInfo{Received: at, Time: e.Time, DataBytes: len(e.Data)}
	in.ID = keep(e.ID, MaxAttrLen, "")
	in.Type = keep(e.Type, MaxAttrLen, "")
	in.Source = keep(e.Source, MaxAttrLen, "")
	in.Key = keep(e.PartitionKey(), MaxAttrLen, "")
	in.Data = keep(string(e.Data), PreviewBytes, "…")
	if prefix != "" {
		in.Subject = codec.Subject(prefix, e)
		if len(in.Subject) > MaxAttrLen {
			in.Subject = clip(in.Subject)
		}
	}
	return in
}

// oddEvent is an event built by hand with awkward attributes, chosen by
// rng: invalid UTF-8, multi-byte characters across every bound, ids too
// long for a subject token or the record key, empty ones, topics that are
// not subject tokens.
func oddEvent(rng *rand.Rand, topics []string) *codec.Event {
	pieces := []string{"a", "é", "€", "😀", "\xff", "\x80", "\xe2\x82", ".", "*", " ", "_", "-", "x"}
	str := func() string {
		n := []int{0, 1, 5, 36, 63, 64, 65, 199, 200, 201, 255, 256, 257, 299, 300, 301, 400}[rng.IntN(17)]
		var b strings.Builder
		for b.Len() < n {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		return b.String()
	}
	topic := topics[rng.IntN(len(topics))]
	e := &codec.Event{
		ID: str(), Type: str(), Source: str(), Topic: topic,
		Org: str(), Site: str(), OrgSet: rng.IntN(2) == 0, SiteSet: rng.IntN(2) == 0,
		Data: []byte(str()),
	}
	if rng.IntN(2) == 0 {
		e.Time = time.Unix(rng.Int64N(2_000_000_000), 0)
	}
	if rng.IntN(4) == 0 {
		m := codec.Map(topic, []byte(fmt.Sprintf(`{"org_id":%q,"site_id":%q,"timestamp":1700000000,"v":%q}`, e.Org, e.Site, str())))
		e = &m
	}
	return e
}

// The slots keep raw bytes and make the strings on read: what is read is
// what was made on write before, for any event.
func TestEventsSameAsKeptOnWrite(t *testing.T) {
	topics := []string{"device-events", "alarms", "a.b", strings.Repeat("t", 65), "x y", "t2", "t3"}
	prefixes := []string{"", "mist", strings.Repeat("p", MaxAttrLen-10), "é\xff"}
	for _, prefix := range prefixes {
		t.Run(fmt.Sprintf("prefix %.8q", prefix), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(len(prefix))))
			r := New(Options{Latest: 4, MaxTopics: 5, SubjectPrefix: prefix})
			now := sec(0)
			r.now = func() time.Time { return now }
			want := map[string][]EventInfo{} // by ring name, newest first
			ringOf := map[string]string{}
			for i := range 300 {
				now = sec(i)
				evs := make([]*codec.Event, 1+rng.IntN(7))
				for k := range evs {
					evs[k] = oddEvent(rng, topics)
				}
				r.Events(evs)
				for _, e := range evs {
					name, ok := ringOf[e.Topic]
					if !ok {
						name = e.Topic
						if len(ringOf) >= 5 {
							name = Other
						}
						ringOf[e.Topic] = name
					}
					kept := append([]EventInfo{wantInfo(prefix, e, now)}, want[name]...)
					want[name] = kept[:min(len(kept), 4)]
				}
				if i%37 != 0 && i != 299 {
					continue
				}
				for name, w := range want {
					got := r.Snapshot(name).Latest.Events
					gj, _ := json.Marshal(got)
					wj, _ := json.Marshal(w)
					// JSON hides invalid UTF-8: compare the strings too.
					if string(gj) != string(wj) || !slices.Equal(got, w) {
						t.Fatalf("after %d requests, %q keeps\n%#v\nwant\n%#v", i+1, name, got, w)
					}
					for _, in := range got {
						// Not the subject: an invalid prefix shows as it is.
						for _, s := range []string{in.ID, in.Type, in.Source, in.Key, in.Data} {
							if !utf8.ValidString(s) {
								t.Fatalf("invalid UTF-8 kept: %q", s)
							}
						}
					}
				}
			}
		})
	}
}

// A snapshot is the reader's own: the events recorded after it, which
// reuse the slots its events were read from, do not change it.
func TestSnapshotOwnsItsEvents(t *testing.T) {
	r := New(Options{Latest: 3, SubjectPrefix: "mist"})
	mk := func(round, n int) *codec.Event {
		e := codec.Map("a", []byte(fmt.Sprintf(`{"org_id":"o%d","site_id":"site-%d-%d","v":%q}`, round, round, n, strings.Repeat(string(rune('a'+round)), 50+round))))
		return &e
	}
	snaps := make([][]EventInfo, 0, 5)
	jsons := make([]string, 0, 5)
	for round := range 5 {
		r.Events([]*codec.Event{mk(round, 1), mk(round, 2), mk(round, 3)})
		evs := r.Snapshot("a").Latest.Events
		j, _ := json.Marshal(evs)
		snaps, jsons = append(snaps, evs), append(jsons, string(j))
		if evs[0].Key != fmt.Sprintf("site-%d-3", round) {
			t.Fatalf("round %d: newest %q", round, evs[0].Key)
		}
	}
	for round, evs := range snaps {
		if j, _ := json.Marshal(evs); string(j) != jsons[round] {
			t.Errorf("the snapshot of round %d changed:\n%s\nwas\n%s", round, j, jsons[round])
		}
	}
}

// Readers snapshot while writers reuse the slots: every event read is
// whole, its attributes those of one event. Run with -race.
func TestSnapshotWhileWriting(t *testing.T) {
	r := New(Options{Latest: 5, SubjectPrefix: "mist"})
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := range 2000 {
				site := fmt.Sprintf("s%d-%d", w, i)
				e := codec.Map("a", []byte(fmt.Sprintf(`{"site_id":%q,"v":%q}`, site, strings.Repeat(site, i%40))))
				r.Events([]*codec.Event{&e})
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			var held [][]EventInfo
			for range 200 {
				evs := r.Snapshot("a").Latest.Events
				held = append(held, evs)
				for _, h := range held[max(0, len(held)-20):] {
					for _, e := range h {
						if !strings.HasPrefix(e.Data, `{"site_id":"`+e.Key+`"`) ||
							e.Subject != "mist.a._."+e.Key || !strings.HasSuffix(e.Source, "/sites/"+e.Key) {
							panic(fmt.Sprintf("torn event %+v", e)) // not t.Fatal off the test goroutine
						}
					}
				}
			}
		})
	}
	wg.Wait()
}

// FuzzEventInfo holds the strings made on read to those made on write.
func FuzzEventInfo(f *testing.F) {
	f.Add("id", "org", "site", "a", []byte(`{"a":1}`), "mist", false)
	f.Add(strings.Repeat("é", 200), "\xff\xfe", strings.Repeat("x", 300), "a b", []byte(strings.Repeat("€", 100)), "", true)
	f.Add("", "", "", "", []byte("\x80\x80\x80"), "p.", true)
	f.Fuzz(func(t *testing.T, id, org, site, topic string, data []byte, prefix string, set bool) {
		e := &codec.Event{ID: id, Type: codec.TypePrefix + topic, Source: org + "/" + site, Topic: topic,
			Org: org, Site: site, OrgSet: set, SiteSet: !set, Data: data}
		r := New(Options{SubjectPrefix: prefix})
		r.Events([]*codec.Event{e})
		got := r.Snapshot(topic).Latest.Events
		if topic == "" { // not a name latestOf can be asked for
			got = r.Snapshot("").Latest.Events
		}
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal([]EventInfo{wantInfo(prefix, e, got[0].Received)})
		if w := wantInfo(prefix, e, got[0].Received); string(gj) != string(wj) || got[0] != w {
			t.Fatalf("kept\n%#v\nwant\n%#v", got[0], w)
		}
	})
}

// A status page view with many topics and their latest events.
func BenchmarkSnapshotLatest(b *testing.B) {
	r := New(Options{SubjectPrefix: "mist", Latest: MaxLatest})
	for i := range DefaultMaxTopics {
		topic := fmt.Sprintf("topic-%d", i)
		evs := make([]*codec.Event, MaxLatest)
		for k := range evs {
			e := codec.Map(topic, []byte(fmt.Sprintf(`{"org_id":"o","site_id":"s%d","text":"%s"}`, k, strings.Repeat("x", 400))))
			evs[k] = &e
		}
		r.Events(evs)
	}
	b.ReportAllocs()
	for b.Loop() {
		if l := r.latestOf(""); len(l.Events) != MaxLatest {
			b.Fatal(len(l.Events))
		}
	}
}

// Requests of 10 events, as the bridge gets them, one after the other.
func BenchmarkEvents10(b *testing.B) {
	r := New(Options{SubjectPrefix: "mist"})
	evs := benchEvents(10, "6b1f3c1e-33c4-4a57-8f4e-0e1c2d3b4a59", "a1c2e3f4-5b6d-4e7f-8091-a2b3c4d5e6f")
	b.ReportAllocs()
	for b.Loop() {
		r.Events(evs)
	}
}
