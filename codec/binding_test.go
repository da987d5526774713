package codec_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mistbridge/mistbridge/codec"
)

// binaryOrder is the order the direct writers emit headers in, by name
// after the prefix (see KafkaRecord). It is fixed but not a contract.
var binaryOrder = []string{"id", "source", "specversion", "type", "content-type", "time", "mistorg", "mistsite", "misttopic", "partitionkey", "traceparent", "tracestate"}

// checkBinary holds the direct binary-mode writers to the CloudEvents
// SDK's binding writer for ev: the same header names and values, byte for
// byte, in both bindings. Order is compared only against binaryOrder: the
// SDK writes extensions in map order.
func checkBinary(t testing.TB, ev *codec.Event) {
	t.Helper()
	ctx := context.Background()
	got, value, err := codec.KafkaRecord(ctx, ev, codec.Binary)
	if err != nil {
		t.Fatalf("KafkaRecord: %v", err)
	}
	want, wantValue, err := codec.KafkaRecordSDK(ctx, ev)
	if err != nil {
		t.Fatalf("SDK kafka binding: %v", err)
	}
	if !sameBytes(value, ev.Data) || !bytes.Equal(value, wantValue) {
		t.Fatalf("kafka value is not the event's data")
	}
	checkOrder(t, got, codec.KafkaPrefix)
	if g, w := render(got), render(want); g != w {
		t.Fatalf("kafka headers of %+v\ndirect: %s\n   SDK: %s", ev, g, w)
	}

	nh, data, err := codec.NATSMessage(ctx, ev, codec.Binary)
	if err != nil {
		t.Fatalf("NATSMessage: %v", err)
	}
	wh, wantData, err := codec.NATSMessageSDK(ctx, ev)
	if err != nil {
		t.Fatalf("SDK nats binding: %v", err)
	}
	if !sameBytes(data, ev.Data) || !bytes.Equal(data, wantData) {
		t.Fatalf("nats body is not the event's data")
	}
	for k, vs := range nh {
		if len(vs) != 1 || cap(vs) != 1 {
			t.Fatalf("nats header %s has %d values, capacity %d: want one, so appending to it copies", k, len(vs), cap(vs))
		}
	}
	if !reflect.DeepEqual(nh, wh) {
		t.Fatalf("nats headers of %+v\ndirect: %q\n   SDK: %q", ev, nh, wh)
	}
	checkAppend(t, ev, got, nh)
}

// checkAppend checks that the Append variants write what KafkaRecord and
// NATSMessage return after what their buffers already hold, leaving it as
// it was, whether or not the buffers must grow.
func checkAppend(t testing.TB, ev *codec.Event, kafka []codec.Header, nats map[string][]string) {
	t.Helper()
	for _, room := range []int{0, 4096} {
		prev := codec.Header{Key: "earlier", Value: []byte("value")}
		buf := append(make([]byte, 0, 5+room), "value"...)
		prev.Value = buf[:5:5]
		hs, buf := codec.AppendKafkaHeaders(append(make([]codec.Header, 0, 1+room), prev), buf, ev)
		if hs[0].Key != "earlier" || string(hs[0].Value) != "value" || string(buf[:5]) != "value" {
			t.Fatalf("AppendKafkaHeaders changed what was there: %q, %q", render(hs[:1]), buf[:5])
		}
		if g, w := render(hs[1:]), render(kafka); g != w {
			t.Fatalf("AppendKafkaHeaders (room %d) wrote %s, KafkaRecord %s", room, g, w)
		}

		h := map[string][]string{"Nats-Msg-Id": {"x"}}
		vals := append(make([]string, 0, 1+room), "earlier")
		vals = codec.AppendNATSHeaders(h, vals, ev)
		if vals[0] != "earlier" || len(vals) != 1+len(nats) || h["Nats-Msg-Id"][0] != "x" {
			t.Fatalf("AppendNATSHeaders changed what was there: %q, %q", vals[0], h["Nats-Msg-Id"])
		}
		delete(h, "Nats-Msg-Id")
		if !reflect.DeepEqual(h, nats) {
			t.Fatalf("AppendNATSHeaders (room %d) wrote %q, NATSMessage %q", room, h, nats)
		}
	}
}

// sameBytes reports whether a is b itself, not a copy.
func sameBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	return len(a) == 0 || &a[0] == &b[0]
}

// render lists headers sorted by name, each value quoted.
func render(hs []codec.Header) string {
	lines := make([]string, len(hs))
	for i, h := range hs {
		lines[i] = h.Key + "=" + strconv.Quote(string(h.Value))
	}
	slices.Sort(lines)
	return strings.Join(lines, " ")
}

// checkOrder checks that hs follows binaryOrder, each name at most once.
func checkOrder(t testing.TB, hs []codec.Header, prefix string) {
	t.Helper()
	last := -1
	for _, h := range hs {
		name := strings.TrimPrefix(h.Key, prefix)
		i := slices.Index(binaryOrder, name)
		if i <= last {
			t.Fatalf("header %s out of order (or twice) in %s", h.Key, render(hs))
		}
		last = i
	}
}

// TestBinaryHeadersMatchSDK compares the direct writers with the SDK path
// for every event of every sample and for hand-built events that take the
// SDK's corner cases (trimmed and blank ids, sources it re-prints or
// cannot parse, times in other zones, long and odd ids).
func TestBinaryHeadersMatchSDK(t *testing.T) {
	events := 0
	for _, b := range sampleBatches(t) {
		for i := range b.Events {
			ev := b.Event(i)
			t.Run(b.name+"/"+strconv.Itoa(i), func(t *testing.T) { checkBinary(t, &ev) })
			events++
		}
	}
	t.Logf("%d sample events", events)

	paris := time.FixedZone("CET", 3600)
	long := strings.Repeat("é", 200)
	tests := []struct {
		name string
		ev   codec.Event
	}{
		{"zero event", codec.Event{}},
		{"traced", codec.Event{ID: "a", Topic: "t", Site: "s", TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}},
		{"traced with state", codec.Event{ID: "a", Topic: "t", TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TraceState: "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"}},
		{"state without parent", codec.Event{ID: "a", Topic: "t", TraceState: "rojo=1"}},
		{"id and type trimmed", codec.Event{ID: " \tid-1\n", Type: "  com.juniper.mist.x ", Topic: "x"}},
		{"blank id and type", codec.Event{ID: "   ", Type: "\t", Topic: "x"}},
		{"source with space", codec.Event{ID: "a", Source: "/mist/orgs/a b", Topic: "t"}},
		{"source lowercase escape", codec.Event{ID: "a", Source: "/mist/orgs/a%2fb", Topic: "t"}},
		{"source escaped letter", codec.Event{ID: "a", Source: "/mist/%41", Topic: "t"}},
		{"source escaped NUL", codec.Event{ID: "a", Source: "/mist/%00", Topic: "t"}},
		{"source bad escape", codec.Event{ID: "a", Source: "/mist/%zz", Topic: "t"}},
		{"source truncated escape", codec.Event{ID: "a", Source: "/mist/%4", Topic: "t"}},
		{"source authority", codec.Event{ID: "a", Source: "//host/x", Topic: "t"}},
		{"source absolute URL", codec.Event{ID: "a", Source: "https://example.com/a?b=c#d", Topic: "t"}},
		{"source relative with colon", codec.Event{ID: "a", Source: "a:b/c", Topic: "t"}},
		{"source relative", codec.Event{ID: "a", Source: "mist/orgs", Topic: "t"}},
		{"source control character", codec.Event{ID: "a", Source: "/mist/\x7f\x00", Topic: "t"}},
		{"source non-ASCII", codec.Event{ID: "a", Source: "/mist/ü", Topic: "t"}},
		{"source root", codec.Event{ID: "a", Source: "/", Topic: "t"}},
		{"time in another zone", codec.Event{ID: "a", Topic: "t", Time: time.Date(2024, 2, 29, 23, 59, 59, 123456789, paris)}},
		{"time year 1", codec.Event{ID: "a", Topic: "t", Time: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC)}},
		{"time year 10000", codec.Event{ID: "a", Topic: "t", Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}},
		{"time before year 0", codec.Event{ID: "a", Topic: "t", Time: time.Date(-5, 3, 1, 0, 0, 0, 0, time.UTC)}},
		{"time with monotonic reading", codec.Event{ID: "a", Topic: "t", Time: time.Now()}},
		{"long ids", codec.Event{ID: "a", Topic: "t", Org: long, Site: long + "x"}},
		{"org only", codec.Event{ID: "a", Topic: "t", Org: "o"}},
		{"empty ids given", codec.Event{ID: "a", Topic: "t", OrgSet: true, SiteSet: true}},
		{"odd ids", codec.Event{ID: "a\"b%c", Topic: "t o\tp", Org: "caf\u00e9 \"x\" 50%", Site: "a\r\nb\x00"}},
		{"long topic", codec.Event{ID: "a", Type: codec.TypePrefix + strings.Repeat("t", 300), Topic: strings.Repeat("t", 300)}},
		{"data shared", codec.Event{ID: "a", Topic: "t", Data: []byte(`{"a":1}`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkBinary(t, &tt.ev) })
	}
}

// FuzzBinaryHeaders builds events from fuzzed org, site, topic, time and
// data, both as Map reads them from an event's JSON and by hand (with a
// fuzzed id and source too), and holds the direct writers to the SDK path.
func FuzzBinaryHeaders(f *testing.F) {
	f.Add("2818e386-8dec-2562-9ede-5b8a0fbbdc71", "4ac1dcf4-9d8b-7211-65c4-057819f0862b", "device-events", "/mist/orgs/o", "id", int64(1547235620), int64(890000000), []byte(`{"x":1}`))
	f.Add("", "", "", "", "", int64(0), int64(0), []byte(nil))
	f.Add("caf\u00e9 \"x\" 50%", "a\r\nb\x00", "a b", "//h/%zz", " i d ", int64(-62135596800), int64(1), []byte("\xff"))
	f.Add(strings.Repeat("s", 300), "_", "t", "/a%2fb?c#d", "\t", int64(253402300800), int64(999999999), []byte(" "))
	f.Fuzz(func(t *testing.T, org, site, topic, source, id string, sec, nsec int64, data []byte) {
		raw := eventJSON(org, site, sec, nsec, data)
		mapped := codec.Map(topic, raw)
		checkBinary(t, &mapped)
		hand := codec.Event{
			ID:     id,
			Type:   codec.TypePrefix + topic,
			Source: source,
			Topic:  topic,
			Org:    org,
			Site:   site,
			Data:   data,
			// The id doubles as trace state: any text, to reach the
			// writers' encoding of it.
			TraceParent: source, TraceState: id,
		}
		if sec != 0 || nsec != 0 {
			hand.Time = time.Unix(sec, nsec).In(time.FixedZone("z", int(nsec%86400)))
		}
		checkBinary(t, &hand)
	})
}

// eventJSON is an event object with the given ids, a timestamp of sec
// seconds (a fraction from nsec when it is not 0) and data as a string.
func eventJSON(org, site string, sec, nsec int64, data []byte) []byte {
	o, _ := json.Marshal(org)
	s, _ := json.Marshal(site)
	d, _ := json.Marshal(string(data))
	ts := strconv.FormatInt(sec, 10)
	if nsec%1e9 != 0 {
		ts += "." + strconv.FormatInt(max(nsec%1e9, -nsec%1e9), 10)
	}
	return []byte(`{"org_id":` + string(o) + `,"site_id":` + string(s) + `,"timestamp":` + ts + `,"data":` + string(d) + `}`)
}

// FuzzEventID holds the streaming id to its definition: the SHA-256 of the
// topic, a zero byte and the compacted event (Compact, itself held to
// json.Compact by FuzzCompact), shaped as a version 8 UUID, for any bytes.
func FuzzEventID(f *testing.F) {
	for _, s := range []string{
		`{"a" : [1, 2, {"b":"x y \" z\\\\"}]}`, " [ ] ", `"\u00e9 \t"`, `{"k":"\\\"","n":null}`,
		`"unterminated \" string   `, `\\" x "\\\\" y`, "\"\\", "  \n\t\r ", `{"a":"\\\\\"   "}  `,
	} {
		f.Add("device-events", []byte(s))
	}
	f.Fuzz(func(t *testing.T, topic string, raw []byte) {
		h := sha256.New()
		h.Write([]byte(topic))
		h.Write([]byte{0})
		h.Write(codec.Compact(nil, raw))
		sum := h.Sum(nil)
		sum[6] = sum[6]&0x0f | 0x80
		sum[8] = sum[8]&0x3f | 0x80
		x := hex.EncodeToString(sum[:16])
		want := x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
		if got := codec.EventID(topic, raw); got != want {
			t.Fatalf("id(%q, %q) = %s, want %s", topic, raw, got, want)
		}
		if got := codec.Map(topic, raw).ID; got != want {
			t.Fatalf("Map(%q, %q).ID = %s, want %s", topic, raw, got, want)
		}
	})
}

// TestAppendEvents checks that AppendEvents gives exactly what Event gives
// for each event: for every sample, for a batch whose events were
// replaced, and for a batch built by hand.
func TestAppendEvents(t *testing.T) {
	var batches []codec.Batch
	for _, b := range sampleBatches(t) {
		batches = append(batches, b.Batch)
	}
	mixed, err := codec.Split([]byte(`{"topic":"t","events":[{"org_id":"o","site_id":"s"},{"org_id":"o","site_id":"s","x":1},{"org_id":"o"},{"org_id":"o","site_id":"s"},{}]}`), "")
	if err != nil {
		t.Fatal(err)
	}
	replaced := mixed
	replaced.Events = slices.Clone(mixed.Events)
	replaced.Events[1] = []byte(`{"site_id":"other","timestamp":5}`)
	hand := codec.Batch{Topic: "hand", Events: [][]byte{[]byte(`{"org_id":"a"}`), []byte(`{"org_id":"a"}`)}}
	batches = append(batches, mixed, replaced, hand, codec.Batch{Topic: "empty"})

	for _, b := range batches {
		prefix := []codec.Event{{ID: "kept"}}
		got := b.AppendEvents(prefix)
		if len(got) != 1+len(b.Events) || got[0].ID != "kept" {
			t.Fatalf("%s: AppendEvents gave %d events (first %q), want the prefix and %d", b.Topic, len(got), got[0].ID, len(b.Events))
		}
		for i := range b.Events {
			want := b.Event(i)
			if m := codec.Map(b.Topic, b.Events[i]); !reflect.DeepEqual(want, m) {
				t.Fatalf("%s event %d: Event gives %+v, Map %+v", b.Topic, i, want, m)
			}
			if !reflect.DeepEqual(got[1+i], want) {
				t.Fatalf("%s event %d: AppendEvents gives %+v, Event %+v", b.Topic, i, got[1+i], want)
			}
		}
	}
}

func BenchmarkNATSMessage(b *testing.B) {
	body := tenEventBody(b)
	batch, _ := codec.Split(body, "")
	ev := codec.Map(batch.Topic, batch.Events[0])
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := codec.NATSMessage(ctx, &ev, codec.Binary); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendKafkaHeaders is BenchmarkKafkaRecord into buffers reused
// across records, as a sink encoding a batch into its own memory would.
func BenchmarkAppendKafkaHeaders(b *testing.B) {
	batch, _ := codec.Split(tenEventBody(b), "")
	ev := codec.Map(batch.Topic, batch.Events[0])
	var (
		hs  []codec.Header
		buf []byte
	)
	b.ReportAllocs()
	for b.Loop() {
		hs, buf = codec.AppendKafkaHeaders(hs[:0], buf[:0], &ev)
	}
}

// BenchmarkAppendNATSHeaders is BenchmarkNATSMessage into a map and values
// reused across messages.
func BenchmarkAppendNATSHeaders(b *testing.B) {
	batch, _ := codec.Split(tenEventBody(b), "")
	ev := codec.Map(batch.Topic, batch.Events[0])
	h := make(map[string][]string, 16)
	var vals []string
	b.ReportAllocs()
	for b.Loop() {
		clear(h)
		vals = codec.AppendNATSHeaders(h, vals[:0], &ev)
	}
}

// BenchmarkEventID hashes one real device event: as loadgen and most
// senders write it (compact) and as the sample is published
// (pretty-printed, so compaction has whitespace to drop).
func BenchmarkEventID(b *testing.B) {
	pretty, err := os.ReadFile(filepath.Join(samplesDir(b), "device-events.ap-restarted.json"))
	if err != nil {
		b.Fatal(err)
	}
	pb, err := codec.Split(pretty, "")
	if err != nil {
		b.Fatal(err)
	}
	cb, err := codec.Split(tenEventBody(b), "")
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		raw  []byte
	}{{"compact", cb.Events[0]}, {"pretty", pb.Events[0]}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(bc.raw)))
			b.ReportAllocs()
			for b.Loop() {
				_ = codec.EventID("device-events", bc.raw)
			}
		})
	}
}

// BenchmarkSplitAppendEvents is BenchmarkSplitEvents through
// AppendEvents, as the bridge maps a batch.
func BenchmarkSplitAppendEvents(b *testing.B) {
	body := tenEventBody(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	evs := make([]codec.Event, 0, 10)
	for b.Loop() {
		batch, err := codec.Split(body, "")
		if err != nil {
			b.Fatal(err)
		}
		evs = batch.AppendEvents(evs[:0])
	}
}
