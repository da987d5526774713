package codec_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/binding/format"
	"github.com/cloudevents/sdk-go/v2/binding/spec"

	"github.com/mistbridge/mistbridge/codec"
	"github.com/mistbridge/mistbridge/test/loadgen"
)

// samplesDir is where the Mist samples are (see loadgen.SamplesDir).
func samplesDir(t testing.TB) string {
	t.Helper()
	dir, err := loadgen.SamplesDir()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestSplitShapes(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		fallback  string
		wantTopic string
		wantN     int
		wantErr   error
		wantIndex int
	}{
		{name: "envelope", body: `{"topic":"device-events","events":[{"a":1},{"b":2}]}`, wantTopic: "device-events", wantN: 2},
		{name: "envelope topic wins over fallback", body: `{"topic":"alarms","events":[{}]}`, fallback: "x", wantTopic: "alarms", wantN: 1},
		{name: "envelope without topic uses fallback", body: `{"events":[{}]}`, fallback: "audits", wantTopic: "audits", wantN: 1},
		{name: "empty events", body: `{"topic":"ping","events":[]}`, wantTopic: "ping", wantN: 0},
		{name: "bare object", body: ` {"id":"x","site_id":"s"} `, fallback: "location", wantTopic: "location", wantN: 1},
		{name: "bare object keeps its own topic member as data", body: `{"topic":"zzz","id":1}`, fallback: "location", wantTopic: "location", wantN: 1},
		{name: "bare array", body: `[{"a":1},{"a":2},{"a":3}]`, fallback: "zone", wantTopic: "zone", wantN: 3},
		{name: "bare array without topic", body: `[{"a":1}]`, wantErr: codec.ErrNoTopic},
		{name: "item not an object", body: `{"topic":"t","events":[{},{},42]}`, wantErr: &codec.ItemError{}, wantIndex: 2},
		{name: "null item", body: `[{}, null]`, fallback: "t", wantErr: &codec.ItemError{}, wantIndex: 1},
		{name: "events not an array", body: `{"topic":"t","events":{}}`, wantErr: codec.ErrBadEnvelope},
		{name: "topic not a string", body: `{"topic":7,"events":[]}`, wantErr: codec.ErrBadEnvelope},
		{name: "bad topic", body: `{"topic":"a.b","events":[{}]}`, wantErr: codec.ErrBadTopic},
		{name: "topic with space", body: `{"topic":"a b","events":[{}]}`, wantErr: codec.ErrBadTopic},
		{name: "not json", body: `{"topic":`, wantErr: codec.ErrNotJSON},
		{name: "empty body", body: ``, wantErr: codec.ErrNotJSON},
		{name: "scalar body", body: `"hello"`, fallback: "t", wantErr: codec.ErrBadEnvelope},
		{name: "trailing garbage", body: `{"topic":"t","events":[]} {}`, wantErr: codec.ErrNotJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := codec.Split([]byte(tt.body), tt.fallback)
			if tt.wantErr != nil {
				var ie *codec.ItemError
				if errors.As(tt.wantErr, &ie) {
					if !errors.As(err, &ie) || ie.Index != tt.wantIndex {
						t.Fatalf("err = %v, want item error at index %d", err, tt.wantIndex)
					}
					if !strings.Contains(err.Error(), "events[") {
						t.Errorf("message %q does not name the index", err)
					}
					return
				}
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if b.Topic != tt.wantTopic || len(b.Events) != tt.wantN {
				t.Fatalf("got topic %q with %d events, want %q with %d", b.Topic, len(b.Events), tt.wantTopic, tt.wantN)
			}
		})
	}
}

// TestSplitKeepsBytes checks the events are the sender's bytes, not a
// re-encoding, and do not alias the body.
func TestSplitKeepsBytes(t *testing.T) {
	body := []byte("{\"topic\":\"t\",\"events\":[ {\"b\": 1,  \"a\":\"\\u00e9\"} ,{\"z\":[1, 2]}]}")
	b, err := codec.Split(body, "")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"{\"b\": 1,  \"a\":\"\\u00e9\"}", `{"z":[1, 2]}`}
	for i, w := range want {
		if string(b.Events[i]) != w {
			t.Errorf("event %d = %s, want %s", i, b.Events[i], w)
		}
	}
	for i := range body {
		body[i] = 'x'
	}
	if string(b.Events[1]) != want[1] {
		t.Errorf("event aliases the body: %s", b.Events[1])
	}
	bare := []byte(`{"a":1}`)
	b, err = codec.Split(bare, "t")
	if err != nil {
		t.Fatal(err)
	}
	bare[2] = 'X'
	if string(b.Events[0]) != `{"a":1}` {
		t.Errorf("bare object aliases the body: %s", b.Events[0])
	}
}

func TestMap(t *testing.T) {
	tests := []struct {
		name              string
		raw               string
		org, site, source string
		time              string
		wantKey           string
	}{
		{name: "snake ids", raw: `{"org_id":"o1","site_id":"s1","timestamp":1461220784}`, org: "o1", site: "s1", source: "/mist/orgs/o1/sites/s1", time: "2016-04-21T06:39:44Z", wantKey: "s1"},
		{name: "compact ids", raw: `{"orgid":"o2","siteid":"s2","timestamp":1547235620.89}`, org: "o2", site: "s2", source: "/mist/orgs/o2/sites/s2", time: "2019-01-11T19:40:20.89Z", wantKey: "s2"},
		{name: "snake wins over compact", raw: `{"orgid":"o2","org_id":"o1"}`, org: "o1", source: "/mist/orgs/o1", wantKey: "o1"},
		{name: "string timestamp", raw: `{"org_id":"o","timestamp":"1763546876.209649"}`, org: "o", source: "/mist/orgs/o", time: "2025-11-19T10:07:56.209649Z", wantKey: "o"},
		{name: "millisecond timestamp", raw: `{"timestamp":1691512031358}`, source: "/mist", time: "2023-08-08T16:27:11.358Z", wantKey: "t"},
		{name: "zero timestamp is no time", raw: `{"site_id":"s","timestamp":0}`, site: "s", source: "/mist/sites/s", wantKey: "s"},
		{name: "junk timestamp is no time", raw: `{"timestamp":"soon","site_id":null,"org_id":5}`, source: "/mist", wantKey: "t"},
		{name: "odd characters escaped in source", raw: `{"org_id":"a/b c"}`, org: "a/b c", source: "/mist/orgs/a%2Fb%20c", wantKey: "a/b c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := codec.Map("t", []byte(tt.raw))
			if ev.Org != tt.org || ev.Site != tt.site || ev.Source != tt.source {
				t.Errorf("org/site/source = %q/%q/%q, want %q/%q/%q", ev.Org, ev.Site, ev.Source, tt.org, tt.site, tt.source)
			}
			got := ""
			if !ev.Time.IsZero() {
				got = ev.Time.Format(time.RFC3339Nano)
			}
			if got != tt.time {
				t.Errorf("time = %q, want %q", got, tt.time)
			}
			if ev.PartitionKey() != tt.wantKey {
				t.Errorf("partition key = %q, want %q", ev.PartitionKey(), tt.wantKey)
			}
			if ev.Type != "com.juniper.mist.t" || string(ev.Data) != tt.raw {
				t.Errorf("type %q / data %s", ev.Type, ev.Data)
			}
		})
	}
}

func TestEventID(t *testing.T) {
	a := codec.Map("alarms", []byte(`{"id":"x","update":false,"count":1}`))
	b := codec.Map("alarms", []byte("{ \"id\": \"x\",\n  \"update\": false, \"count\": 1 }"))
	c := codec.Map("alarms", []byte(`{"id":"x","update":true,"count":2}`))
	d := codec.Map("audits", []byte(`{"id":"x","update":false,"count":1}`))
	if a.ID != b.ID {
		t.Errorf("same event, different whitespace: %s != %s", a.ID, b.ID)
	}
	if a.ID == c.ID {
		t.Errorf("an alarm update reusing the alarm's id got the same CloudEvent id %s", a.ID)
	}
	if a.ID == d.ID {
		t.Errorf("same bytes under another topic got the same id %s", a.ID)
	}
	if len(a.ID) != 36 || a.ID[14] != '8' || !strings.Contains("89ab", a.ID[19:20]) {
		t.Errorf("id %s is not a version 8 UUID", a.ID)
	}
}

// TestSamples maps every published sample and reads each back through the
// CloudEvents SDK from both bindings.
func TestSamples(t *testing.T) {
	dir := samplesDir(t)
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) < 30 {
		t.Fatalf("found %d samples in %s, want every documented topic", len(files), dir)
	}
	ctx := context.Background()
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			body, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var env struct {
				Topic  string
				Events []json.RawMessage
			}
			if err := json.Unmarshal(body, &env); err != nil {
				t.Fatal(err)
			}
			b, err := codec.Split(body, "")
			if err != nil {
				t.Fatal(err)
			}
			if b.Topic != env.Topic || len(b.Events) != len(env.Events) {
				t.Fatalf("split %q/%d, want %q/%d", b.Topic, len(b.Events), env.Topic, len(env.Events))
			}
			for i, raw := range b.Events {
				if !bytes.Equal(raw, env.Events[i]) {
					t.Fatalf("event %d bytes differ from the body", i)
				}
				ev := codec.Map(b.Topic, raw)
				for _, mode := range []codec.Mode{codec.Binary, codec.Structured} {
					hs, value, err := codec.KafkaRecord(ctx, &ev, mode)
					if err != nil {
						t.Fatal(err)
					}
					got := readBack(t, hs, value, codec.KafkaPrefix)
					checkEvent(t, &ev, got, mode)
					nh, data, err := codec.NATSMessage(ctx, &ev, mode)
					if err != nil {
						t.Fatal(err)
					}
					var nhs []codec.Header
					for k, v := range nh {
						nhs = append(nhs, codec.Header{Key: k, Value: []byte(v[0])})
					}
					checkEvent(t, &ev, readBack(t, nhs, data, codec.NATSPrefix), mode)
				}
			}
		})
	}
}

type readEvent struct {
	attrs map[string]string
	data  []byte
}

// readBack decodes headers and a body with the SDK's binding reader rules:
// binary when a specversion header is present, else the JSON format.
func readBack(t *testing.T, hs []codec.Header, value []byte, prefix string) readEvent {
	t.Helper()
	out := readEvent{attrs: map[string]string{}}
	binary := false
	for _, h := range hs {
		if h.Key != strings.ToLower(h.Key) {
			t.Errorf("header %q is not lowercase", h.Key)
		}
		if h.Key == prefix+"specversion" {
			binary = true
		}
	}
	if !binary {
		e, err := binding.ToEvent(context.Background(), structured(value))
		if err != nil {
			t.Fatalf("structured event does not decode: %v\n%s", err, value)
		}
		out.attrs["id"], out.attrs["type"], out.attrs["source"] = e.ID(), e.Type(), e.Source()
		if !e.Time().IsZero() {
			out.attrs["time"] = e.Time().UTC().Format(time.RFC3339Nano)
		}
		for k, v := range e.Extensions() {
			out.attrs[k] = v.(string)
		}
		out.data = e.Data()
		return out
	}
	for _, h := range hs {
		if k, ok := strings.CutPrefix(h.Key, prefix); ok {
			out.attrs[k] = string(h.Value)
		} else if h.Key == codec.ContentTypeHeader {
			out.attrs["datacontenttype"] = string(h.Value)
		}
	}
	out.data = value
	return out
}

func structured(v []byte) binding.Message {
	return binding.MessageReader(&structuredMsg{v}).(binding.Message)
}

type structuredMsg struct{ v []byte }

func (m *structuredMsg) ReadEncoding() binding.Encoding { return binding.EncodingStructured }
func (m *structuredMsg) ReadStructured(ctx context.Context, w binding.StructuredWriter) error {
	return w.SetStructuredEvent(ctx, format.JSON, bytes.NewReader(m.v))
}
func (m *structuredMsg) ReadBinary(context.Context, binding.BinaryWriter) error {
	return binding.ErrNotBinary
}
func (m *structuredMsg) Finish(error) error                           { return nil }
func (m *structuredMsg) GetAttribute(spec.Kind) (spec.Attribute, any) { return nil, nil }
func (m *structuredMsg) GetExtension(string) any                      { return nil }

func checkEvent(t *testing.T, ev *codec.Event, got readEvent, mode codec.Mode) {
	t.Helper()
	want := map[string]string{
		"id": ev.ID, "type": ev.Type, "source": ev.Source,
		codec.ExtTopic: ev.Topic, codec.ExtPartitionKey: ev.PartitionKey(),
	}
	if ev.Org != "" {
		want[codec.ExtOrg] = ev.Org
	}
	if ev.Site != "" {
		want[codec.ExtSite] = ev.Site
	}
	if !ev.Time.IsZero() {
		want["time"] = ev.Time.Format(time.RFC3339Nano)
	}
	if mode == codec.Binary {
		want["specversion"] = "1.0"
		want["datacontenttype"] = "application/json"
	}
	for k, v := range want {
		if got.attrs[k] != v {
			t.Errorf("%s: attribute %s = %q, want %q", mode, k, got.attrs[k], v)
		}
	}
	if mode == codec.Binary && !bytes.Equal(got.data, ev.Data) {
		t.Errorf("binary data is not the event's bytes")
	}
	if mode == codec.Structured {
		var a, b any
		_ = json.Unmarshal(got.data, &a)
		_ = json.Unmarshal(ev.Data, &b)
		ab, _ := json.Marshal(a)
		bb, _ := json.Marshal(b)
		if !bytes.Equal(ab, bb) {
			t.Errorf("structured data differs: %s vs %s", ab, bb)
		}
	}
}

func TestPercentEncodedNATSHeaders(t *testing.T) {
	ev := codec.Map("t", []byte(`{"org_id":"caf\u00e9 \"x\" 50%"}`))
	h, _, err := codec.NATSMessage(context.Background(), &ev, codec.Binary)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := h["ce-mistorg"][0], "caf%C3%A9%20%22x%22%2050%25"; got != want {
		t.Errorf("ce-mistorg = %q, want %q", got, want)
	}
	kh, _, _ := codec.KafkaRecord(context.Background(), &ev, codec.Binary)
	for _, x := range kh {
		if x.Key == "ce_mistorg" && string(x.Value) != "café \"x\" 50%" {
			t.Errorf("kafka header is %q, want the raw value", x.Value)
		}
	}
}

func TestSubjectAndTopic(t *testing.T) {
	uuid := "4ac1dcf4-9d8b-7211-65c4-057819f0862b"
	tests := []struct {
		name, prefix string
		ev           codec.Event
		want         string
	}{
		{name: "uuids as is", prefix: "mist", ev: codec.Event{Topic: "device-events", Org: uuid, Site: uuid}, want: "mist.device-events." + uuid + "." + uuid},
		{name: "missing org and site", prefix: "a.b", ev: codec.Event{Topic: "audits", Org: "o"}, want: "a.b.audits.o._"},
		{name: "empty is not missing", prefix: "mist", ev: codec.Event{Topic: "audits", Org: "", OrgSet: true}, want: "mist.audits.__" + hash12("") + "._"},
		{name: "dot and wildcards", prefix: "mist", ev: codec.Event{Topic: "device-events", Org: "o.1", Site: "s*>"}, want: "mist.device-events._o-1_" + hash12("o.1") + "._s--_" + hash12("s*>")},
		{name: "underscore first", prefix: "mist", ev: codec.Event{Topic: "t", Org: "_", Site: "_x"}, want: "mist.t.___" + hash12("_") + ".__x_" + hash12("_x")},
		{name: "65 bytes", prefix: "mist", ev: codec.Event{Topic: "t", Site: strings.Repeat("a", 65)}, want: "mist.t._._" + strings.Repeat("a", 24) + "_" + hash12(strings.Repeat("a", 65))},
		{name: "64 bytes as is", prefix: "mist", ev: codec.Event{Topic: "t", Site: strings.Repeat("a", 64)}, want: "mist.t._." + strings.Repeat("a", 64)},
		{name: "bad topic of a hand-built event", prefix: "mist", ev: codec.Event{Topic: "a b"}, want: "mist._a-b_" + hash12("a b") + "._._"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := codec.Subject(tt.prefix, &tt.ev); got != tt.want {
				t.Errorf("subject = %q, want %q", got, tt.want)
			}
		})
	}
	if got := codec.KafkaTopic("mist.{topic}", "zone"); got != "mist.zone" {
		t.Errorf("topic = %q", got)
	}
	for _, bad := range []string{"mist", "mist/{topic}", "mist {topic}"} {
		if err := codec.ValidateKafkaTopicTemplate(bad); err == nil {
			t.Errorf("template %q accepted", bad)
		}
	}
	for _, bad := range []string{"", "a..b", "a.*", "a b"} {
		if err := codec.ValidateSubjectPrefix(bad); err == nil {
			t.Errorf("prefix %q accepted", bad)
		}
	}
}

func TestParseMode(t *testing.T) {
	if m, err := codec.ParseMode("Structured"); err != nil || m != codec.Structured {
		t.Errorf("structured: %v %v", m, err)
	}
	if _, err := codec.ParseMode("xml"); err == nil || !strings.Contains(err.Error(), "binary or structured") {
		t.Errorf("xml: %v", err)
	}
}

func BenchmarkSplitMap(b *testing.B) {
	body := tenEventBody(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		batch, err := codec.Split(body, "")
		if err != nil {
			b.Fatal(err)
		}
		for _, raw := range batch.Events {
			_ = codec.Map(batch.Topic, raw)
		}
	}
}

// BenchmarkSplitEvents is BenchmarkSplitMap through Batch.Event, which
// uses what Split read in its pass instead of reading each event again.
func BenchmarkSplitEvents(b *testing.B) {
	body := tenEventBody(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		batch, err := codec.Split(body, "")
		if err != nil {
			b.Fatal(err)
		}
		for i := range batch.Events {
			_ = batch.Event(i)
		}
	}
}

func BenchmarkKafkaRecord(b *testing.B) {
	body := tenEventBody(b)
	batch, _ := codec.Split(body, "")
	ev := codec.Map(batch.Topic, batch.Events[0])
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := codec.KafkaRecord(ctx, &ev, codec.Binary); err != nil {
			b.Fatal(err)
		}
	}
}

func tenEventBody(b *testing.B) []byte {
	raw, err := os.ReadFile(filepath.Join(samplesDir(b), "device-events.ap-restarted.json"))
	if err != nil {
		b.Fatal(err)
	}
	var env struct {
		Topic  string
		Events []json.RawMessage
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		b.Fatal(err)
	}
	for len(env.Events) < 10 {
		env.Events = append(env.Events, env.Events[0])
	}
	env.Events = env.Events[:10]
	out, _ := json.Marshal(env)
	return out
}

func BenchmarkMap(b *testing.B) {
	body := tenEventBody(b)
	batch, _ := codec.Split(body, "")
	b.SetBytes(int64(len(batch.Events[0])))
	b.ReportAllocs()
	for b.Loop() {
		_ = codec.Map(batch.Topic, batch.Events[0])
	}
}

// FuzzCompact holds Compact, the oracle of the compaction behind event
// ids (FuzzEventID), to encoding/json's Compact on every valid input, so
// ids never change with it.
func FuzzCompact(f *testing.F) {
	for _, s := range []string{`{"a" : [1, 2, {"b":"x y \" z\\\\"}]}`, " [ ] ", `"\u00e9 \t"`, `{"k":"\\\"","n":null}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var want bytes.Buffer
		if json.Compact(&want, raw) != nil {
			return
		}
		if got := codec.Compact(nil, raw); !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("compact(%q) = %q, json.Compact gives %q", raw, got, want.Bytes())
		}
	})
}

// FuzzReadMeta holds the streaming reader behind Map to the plain
// encoding/json one on every object Split accepts.
func FuzzReadMeta(f *testing.F) {
	for _, s := range []string{
		`{"org_id":"o","site_id":"s","timestamp":1.5}`,
		`{"orgid":"o","siteid":"s","timestamp":"1763546876.209649"}`,
		`{"org_id":"a","org_id":5,"orgid":"b","x":{"org_id":"nested"},"site_id":"caf\u00e9"}`,
		`{"Org_ID":"case","site_id":null,"timestamp":[1]}`,
		"{\"site_id\":\"\xff\xfe\",\"y\":[1,{\"z\":\"w\"}]}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		b, err := codec.Split(raw, "t")
		if err != nil {
			return
		}
		for _, ev := range b.Events {
			got, want := codec.ReadMeta(ev), codec.ReadMetaSlow(ev)
			if !got.OK {
				t.Fatalf("streaming reader refused %q, which Split accepted", ev)
			}
			if got.Org != want.Org || got.OrgAlt != want.OrgAlt || got.Site != want.Site || got.SiteAlt != want.SiteAlt || got.Has != want.Has || !got.Time.Equal(want.Time) {
				t.Fatalf("readMeta(%q) = %+v, encoding/json gives %+v", ev, got, want)
			}
		}
	})
}

// BenchmarkSplit splits real Mist bodies: zone.json as published (three
// events) and ten device events.
func BenchmarkSplit(b *testing.B) {
	zone, err := os.ReadFile(filepath.Join(samplesDir(b), "zone.json"))
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		body []byte
	}{{"zone", zone}, {"ten-device-events", tenEventBody(b)}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(bc.body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := codec.Split(bc.body, ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
