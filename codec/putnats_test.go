package codec_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mistbridge/mistbridge/codec"
)

// checkPutNATS holds PutNATSHeaders to the SDK's NATS binding and to
// AppendNATSHeaders: the same headers with the same values, and size is
// their wire length. vals is reused across calls, as a sink reuses it.
func checkPutNATS(t testing.TB, vals *[codec.NATSHeaderSlots]string, ev *codec.Event) {
	t.Helper()
	want, _, err := codec.NATSMessageSDK(context.Background(), ev)
	if err != nil {
		t.Fatalf("SDK nats binding: %v", err)
	}
	h := map[string][]string{}
	codec.AppendNATSHeaders(h, nil, ev)
	set, size := codec.PutNATSHeaders(vals, ev)
	got := map[string]string{}
	wantSize := 0
	for i := range codec.NATSHeaderSlots {
		name := codec.NATSHeaderName(i)
		if set&(1<<i) == 0 {
			if vals[i] != "" {
				t.Fatalf("slot %d (%s) is not set but holds %q", i, name, vals[i])
			}
			continue
		}
		got[name] = vals[i]
		wantSize += len(name) + 2 + len(vals[i]) + 2
	}
	if len(got) != len(want) || len(got) != len(h) {
		t.Fatalf("PutNATSHeaders of %+v sets %d headers %v, SDK %d %v, AppendNATSHeaders %d", ev, len(got), got, len(want), want, len(h))
	}
	for k, vs := range want {
		if len(vs) != 1 || got[k] != vs[0] || len(h[k]) != 1 || h[k][0] != vs[0] {
			t.Fatalf("header %s of %+v: PutNATSHeaders %q, SDK %q, AppendNATSHeaders %q", k, ev, got[k], vs, h[k])
		}
	}
	if size != wantSize {
		t.Fatalf("size %d, want %d", size, wantSize)
	}
}

func TestPutNATSHeaders(t *testing.T) {
	var vals [codec.NATSHeaderSlots]string
	paris, _ := time.LoadLocation("Europe/Paris")
	long := strings.Repeat("é", 200)
	evs := []codec.Event{
		{},
		{ID: " a ", Type: "\t", Source: "mist/orgs", Topic: "t"},
		{ID: "a", Source: "/mist/\x7f\x00", Topic: "t o\tp", Time: time.Date(2024, 2, 29, 23, 59, 59, 123456789, paris)},
		{ID: "a", Topic: "t", Time: time.Date(-5, 3, 1, 0, 0, 0, 0, time.UTC)},
		{ID: "a", Topic: "t", Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{ID: "a", Topic: "t", Org: long, Site: long + "x"},
		{ID: "a", Topic: "t", Org: "o"},
		{ID: "a", Topic: "t", OrgSet: true, SiteSet: true},
		{ID: "a\"b%c", Topic: "t o\tp", Org: "caf\u00e9 \"x\" 50%", Site: "a\r\nb\x00"},
		{ID: "a", Topic: "same", Org: "same", Site: "same"},
		{ID: "a", Topic: "t%", Org: "o%"},
		{ID: "a", Topic: "t", TraceParent: "00-x-y-01", TraceState: "k=v w"},
		{ID: "a", Topic: "t", TraceState: "orphan"},
	}
	for i := range evs {
		checkPutNATS(t, &vals, &evs[i])
	}
	for _, b := range sampleBatches(t) {
		for _, ev := range b.AppendEvents(nil) {
			checkPutNATS(t, &vals, &ev)
		}
	}
	// In between, the slots hold every kind of value.
	for i := range evs {
		checkPutNATS(t, &vals, &evs[len(evs)-1-i])
	}
}

// FuzzPutNATSHeaders is FuzzBinaryHeaders for PutNATSHeaders.
func FuzzPutNATSHeaders(f *testing.F) {
	f.Add("2818e386-8dec-2562-9ede-5b8a0fbbdc71", "4ac1dcf4-9d8b-7211-65c4-057819f0862b", "device-events", "/mist/orgs/o", "id", int64(1547235620), int64(890000000), []byte(`{"x":1}`))
	f.Add("", "", "", "", "", int64(0), int64(0), []byte(nil))
	f.Add("caf\u00e9 \"x\" 50%", "a\r\nb\x00", "a b", "//h/%zz", " i d ", int64(-62135596800), int64(1), []byte("\xff"))
	f.Add(strings.Repeat("s", 300), "_", "t", "/a%2fb?c#d", "\t", int64(253402300800), int64(999999999), []byte(" "))
	var vals [codec.NATSHeaderSlots]string
	f.Fuzz(func(t *testing.T, org, site, topic, source, id string, sec, nsec int64, data []byte) {
		mapped := codec.Map(topic, eventJSON(org, site, sec, nsec, data))
		checkPutNATS(t, &vals, &mapped)
		hand := codec.Event{
			ID: id, Type: codec.TypePrefix + topic, Source: source, Topic: topic,
			Org: org, Site: site, Data: data,
			TraceParent: source, TraceState: id,
		}
		if sec != 0 || nsec != 0 {
			hand.Time = time.Unix(sec, nsec).In(time.FixedZone("z", int(nsec%86400)))
		}
		checkPutNATS(t, &vals, &hand)
		hand.Site = org // the partition key is the site, equal to the org
		checkPutNATS(t, &vals, &hand)
	})
}

// BenchmarkPutNATSHeaders is BenchmarkAppendNATSHeaders into fixed slots.
func BenchmarkPutNATSHeaders(b *testing.B) {
	batch, _ := codec.Split(tenEventBody(b), "")
	ev := codec.Map(batch.Topic, batch.Events[0])
	var vals [codec.NATSHeaderSlots]string
	b.ReportAllocs()
	for b.Loop() {
		codec.PutNATSHeaders(&vals, &ev)
	}
}
