package natssink

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mistbridge/mistbridge/codec"
)

// The pooled binary-mode messages of eventMessage are what message makes
// of the same event (codec.NATSMessage, Nats-Msg-Id, the sink's subject):
// the same headers with the same values, no more, whatever events the
// batch's maps carried before; and the size checked is checkMessage's.
func TestEventMessageIsMessage(t *testing.T) {
	s := &Sink{mode: codec.Binary}
	s.subject = func(ev *codec.Event) string { return codec.Subject("mist", ev) }
	long := strings.Repeat("é", 200)
	evs := []*codec.Event{
		{ID: "a", Topic: "t"},
		{ID: " a ", Type: "\t", Source: "mist/orgs", Topic: "t o\tp", Time: time.Unix(1700000000, 5)},
		{ID: "a\"b%c", Topic: "t", Org: "caf\u00e9 \"x\" 50%", Site: "a\r\nb\x00", TraceParent: "00-a-b-01", TraceState: "k=v"},
		{ID: "b", Topic: "t", Org: long, Site: long + "x", OrgSet: true, SiteSet: true},
		{ID: "c", Topic: "t", Org: "o", TraceParent: "00-a-b-01"},
		{ID: "", Topic: "", OrgSet: true},
		{ID: "d", Topic: "device-events", Org: "o", Site: "s", Time: time.Unix(1, 0), Data: []byte(`{"a":1}`)},
	}
	for _, raw := range []string{
		`{"org_id":"org-1","site_id":"site-1","timestamp":1700000000,"pad":"x"}`,
		`{"org_id":"org-1","timestamp":1700000000.5}`,
		`{"site_id":""}`,
		`{}`,
	} {
		ev := codec.Map("device-events", []byte(raw))
		evs = append(evs, &ev)
	}
	for round := range 3 {
		b := getBatch(len(evs))
		for i := range evs {
			// Each round moves the events one message along, so that a
			// map meets events with other headers than its last.
			ev := evs[(i+round)%len(evs)]
			m := b.hdrs[i]
			if m == nil {
				m = new(msgHeaders)
				b.hdrs[i] = m
			}
			m.vals[idSlot] = ev.ID
			got := &b.msgs[i]
			size := s.binaryMessage(got, m, ev)

			h, data, err := codec.NATSMessage(context.Background(), ev, codec.Binary)
			if err != nil {
				t.Fatal(err)
			}
			want := nats.Msg{Subject: s.subject(ev), Header: nats.Header(h), Data: data}
			want.Header[jetstream.MsgIDHeader] = []string{ev.ID}
			if got.Subject != want.Subject || string(got.Data) != string(want.Data) {
				t.Fatalf("round %d, event %+v: subject %q, data %q; want %q, %q", round, ev, got.Subject, got.Data, want.Subject, want.Data)
			}
			if g, w := fmt.Sprint(got.Header), fmt.Sprint(want.Header); g != w {
				t.Fatalf("round %d, event %+v: headers\n%s\nwant\n%s", round, ev, g, w)
			}
			if w := len(want.Data) + headerLen(want.Header); size != w || size != len(got.Data)+headerLen(got.Header) {
				t.Fatalf("round %d, event %+v: size %d, want %d", round, ev, size, w)
			}
		}
		b.release()
		for _, m := range b.hdrs {
			for k, vs := range m.h {
				if len(vs) != 1 || vs[0] != "" {
					t.Fatalf("a released batch holds header %s: %q", k, vs)
				}
			}
		}
	}
}

// A batch that grows keeps its messages' maps, and they still point at
// their values.
func TestBatchGrowsKeepingHeaders(t *testing.T) {
	s := &Sink{mode: codec.Binary}
	s.subject = func(ev *codec.Event) string { return codec.Subject("mist", ev) }
	b := getBatch(1)
	ev := &codec.Event{ID: "a", Topic: "t", Org: "o"}
	m := new(msgHeaders)
	b.hdrs[0] = m
	m.vals[idSlot] = ev.ID
	s.binaryMessage(&b.msgs[0], m, ev)
	// Not through the pool: sync.Pool may drop b (it does at random
	// under -race), and what is tested is what resize keeps.
	clear(m.vals[:])
	b.resize(64)
	defer b.release()
	if b.hdrs[0] != m {
		t.Fatal("the batch dropped its first message's headers when it grew")
	}
	m.vals[idSlot] = "b"
	s.binaryMessage(&b.msgs[0], m, &codec.Event{ID: "b", Topic: "u"})
	if got := b.msgs[0].Header; got.Get("ce-id") != "b" || got.Get("ce-misttopic") != "u" || got.Get(jetstream.MsgIDHeader) != "b" || got.Get("ce-mistorg") != "" {
		t.Fatalf("headers after the batch grew: %v", got)
	}
}

// BenchmarkEventMessage encodes 10-event batches into a pooled batch, as
// Write does before it publishes: the sink's own per-message cost,
// without nats.go or the broker.
func BenchmarkEventMessage(b *testing.B) {
	for _, js := range []bool{true, false} {
		name := "core"
		if js {
			name = "jetstream"
		}
		b.Run(name, func(b *testing.B) {
			br := startNATS(b, js)
			s := newSink(b, Config{URL: br.e.ClientURL(), JetStream: js, CreateStream: true}, nil)
			c := s.cur.Load()
			evs := events(10, 400, "bench")
			for j, ev := range evs {
				ev.ID = fmt.Sprintf("bench-%d", j)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				pb := getBatch(len(evs))
				for i, ev := range evs {
					if err := s.eventMessage(ctx, c, pb, i, ev); err != nil {
						b.Fatal(err)
					}
				}
				pb.release()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(evs)), "ns/event")
		})
	}
}
