package codec_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mistbridge/mistbridge/codec"
)

// TestSplitStrict covers what Split refuses although encoding/json accepts
// it, and the duplicates it deliberately lets through.
func TestSplitStrict(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		wantErr   error  // a sentinel, or nil with wantIndex >= 0
		wantIndex int    // -1: no item error expected
		wantMsg   string // part of the message
	}{
		{name: "events twice", body: `{"topic":"t","events":[{"a":1}],"events":[{"b":2}]}`, wantErr: codec.ErrBadEnvelope, wantIndex: -1, wantMsg: `has "events" twice`},
		{name: "events twice in another case", body: `{"topic":"t","Events":[{"a":1}],"events":[{"b":2}]}`, wantErr: codec.ErrBadEnvelope, wantIndex: -1, wantMsg: `has "events" twice`},
		{name: "topic twice", body: `{"topic":"a","topic":"b","events":[]}`, wantErr: codec.ErrBadEnvelope, wantIndex: -1, wantMsg: `has "topic" twice`},
		{name: "escaped topic twice", body: `{"topic":"a","\u0074opic":"b","events":[]}`, wantErr: codec.ErrBadEnvelope, wantIndex: -1, wantMsg: `has "topic" twice`},
		{name: "invalid utf-8 in an event", body: "{\"topic\":\"t\",\"events\":[{},{\"a\":\"x\xffy\"}]}", wantIndex: 1, wantMsg: "events[1]: invalid UTF-8 in a string"},
		{name: "invalid utf-8 in a name", body: "[{\"a\xff\":1}]", wantIndex: 0, wantMsg: "invalid UTF-8 in a string"},
		{name: "lone high surrogate", body: `{"topic":"t","events":[{"a":"\ud800"}]}`, wantIndex: 0, wantMsg: `events[0]: lone surrogate \ud800`},
		{name: "lone low surrogate", body: `[{},{},{"a":["\uDC00x"]}]`, wantIndex: 2, wantMsg: `lone surrogate \uDC00`},
		{name: "two high surrogates", body: `[{"a":"\ud800\ud800"}]`, wantIndex: 0, wantMsg: `invalid surrogate pair \ud800`},
		{name: "invalid utf-8 in the topic", body: "{\"topic\":\"\xc3\",\"events\":[]}", wantErr: codec.ErrNotJSON, wantIndex: -1, wantMsg: "invalid UTF-8 in a string at byte 10"},
		{name: "lone surrogate in the envelope", body: `{"x":"\udfff","events":[]}`, wantErr: codec.ErrNotJSON, wantIndex: -1, wantMsg: `lone surrogate \udfff`},
		{name: "invalid utf-8 in a bare object", body: "{\"a\":\"\xff\"}", wantErr: codec.ErrNotJSON, wantIndex: -1, wantMsg: "invalid UTF-8"},
		{name: "org_id twice", body: `{"topic":"t","events":[{"org_id":"a"},{"org_id":"a","x":1,"org_id":"b"}]}`, wantIndex: 1, wantMsg: `events[1]: has "org_id" twice`},
		{name: "site_id twice, other type", body: `[{"site_id":"a","site_id":null}]`, wantIndex: 0, wantMsg: `has "site_id" twice`},
		{name: "escaped siteid twice", body: `[{"siteid":"a","s\u0069teid":"b"}]`, wantIndex: 0, wantMsg: `has "siteid" twice`},
		{name: "orgid twice", body: `[{"orgid":"a","orgid":"a"}]`, wantIndex: 0, wantMsg: `has "orgid" twice`},
		{name: "timestamp twice", body: `[{"timestamp":1,"timestamp":2}]`, wantIndex: 0, wantMsg: `has "timestamp" twice`},
		{name: "routing member twice in a bare object", body: `{"site_id":"a","site_id":"b"}`, wantIndex: 0, wantMsg: `has "site_id" twice`},
		{name: "syntax error beats an item error", body: `[42, {]`, wantErr: codec.ErrNotJSON, wantIndex: -1},
		{name: "truncated", body: `{"topic":"t","events":[{"a":"\ud800`, wantErr: codec.ErrNotJSON, wantIndex: -1, wantMsg: "ends early"},
		{name: "trailing value", body: `[{}] {}`, wantErr: codec.ErrNotJSON, wantIndex: -1, wantMsg: "after the top-level value"},
		{name: "whitespace only", body: " \n\t", wantErr: codec.ErrNotJSON, wantIndex: -1, wantMsg: "empty"},
		{name: "events null", body: `{"topic":"t","events":null}`, wantErr: codec.ErrBadEnvelope, wantIndex: -1, wantMsg: `"events" must be an array, got null`},
		{name: "events type beats topic type", body: `{"topic":1,"events":"x"}`, wantErr: codec.ErrBadEnvelope, wantIndex: -1, wantMsg: `got a string`},
		{name: "empty topic beats the fallback", body: `{"topic":"","events":[{}]}`, wantErr: codec.ErrNoTopic, wantIndex: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := codec.Split([]byte(tt.body), "fallback")
			if err == nil {
				t.Fatal("accepted")
			}
			var ie *codec.ItemError
			isItem := errors.As(err, &ie)
			switch {
			case tt.wantIndex >= 0 && (!isItem || ie.Index != tt.wantIndex):
				t.Errorf("err = %v, want an item error at index %d", err, tt.wantIndex)
			case tt.wantIndex < 0 && isItem:
				t.Errorf("err = %v, want no item error", err)
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("err = %q, want it to say %q", err, tt.wantMsg)
			}
			if strings.Contains(tt.wantMsg, "UTF-8") || strings.Contains(tt.wantMsg, "surrogate") {
				if !errors.Is(err, codec.ErrNotJSON) {
					t.Errorf("err = %v does not match ErrNotJSON", err)
				}
			}
			if !utf8.ValidString(err.Error()) {
				t.Errorf("message %q is not valid UTF-8", err)
			}
		})
	}
}

// TestSplitAllows covers what Split accepts on purpose.
func TestSplitAllows(t *testing.T) {
	tests := []struct {
		name, body string
		wantTopic  string
		wantN      int
	}{
		{name: "other members twice in an event", body: `[{"id":1,"id":2,"x":{"org_id":"a","org_id":"b"}}]`, wantTopic: "fallback", wantN: 1},
		{name: "routing members twice in the envelope", body: `{"org_id":"a","org_id":"b","events":[{}]}`, wantTopic: "fallback", wantN: 1},
		{name: "topic twice in a bare object is data", body: `{"topic":"a","topic":"b"}`, wantTopic: "fallback", wantN: 1},
		{name: "capitalised envelope", body: `{"Topic":"alarms","EVENTS":[{}]}`, wantTopic: "alarms", wantN: 1},
		{name: "surrogate pair", body: `[{"a":"\ud83d\ude00 \u00e9 é"}]`, wantTopic: "fallback", wantN: 1},
		{name: "topic null", body: `{"topic":null,"events":[{}]}`, wantTopic: "fallback", wantN: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := codec.Split([]byte(tt.body), "fallback")
			if err != nil {
				t.Fatal(err)
			}
			if b.Topic != tt.wantTopic || len(b.Events) != tt.wantN {
				t.Errorf("got %q/%d, want %q/%d", b.Topic, len(b.Events), tt.wantTopic, tt.wantN)
			}
		})
	}
}

// TestBatchEvent checks that the metadata read during Split gives the
// events Map gives, and that Event falls back to Map once Events changed.
func TestBatchEvent(t *testing.T) {
	body := []byte(`{"topic":"t","events":[{"org_id":"o\u00e9","site_id":"","timestamp":"1763546876.5"},{"orgid":"o2","siteid":"s2","timestamp":1},{"x":1}]}`)
	b, err := codec.Split(body, "")
	if err != nil {
		t.Fatal(err)
	}
	for i, raw := range b.Events {
		if got, want := b.Event(i), codec.Map(b.Topic, raw); !reflect.DeepEqual(got, want) {
			t.Errorf("event %d: %+v, Map gives %+v", i, got, want)
		}
	}
	if ev := b.Event(0); ev.Org != "oé" || !ev.OrgSet || ev.Site != "" || !ev.SiteSet {
		t.Errorf("event 0: org %q/%v site %q/%v", ev.Org, ev.OrgSet, ev.Site, ev.SiteSet)
	}
	if ev := b.Event(2); ev.OrgSet || ev.SiteSet {
		t.Errorf("event 2 has ids: %+v", ev)
	}
	// Replace an event: Event must read the new bytes, not the old metadata.
	b.Events[1] = []byte(`{"site_id":"other"}`)
	if ev := b.Event(1); ev.Site != "other" {
		t.Errorf("Event used stale metadata: site %q", ev.Site)
	}
	// Appending to one event must not overwrite the next.
	_ = append(b.Events[0], 'X')
	if b.Events[1][0] != '{' || b.Events[2][0] != '{' {
		t.Errorf("appending to an event overwrote its neighbour")
	}
	merged := codec.Batch{Topic: b.Topic, Events: append(b.Events[:2:2], []byte(`{"org_id":"m"}`))}
	if ev := merged.Event(2); ev.Org != "m" {
		t.Errorf("a batch built by hand: org %q", ev.Org)
	}
}

// FuzzSplit checks Split against an oracle built on encoding/json plus the
// strictness rules, written here independently of the code under test:
// Split accepts exactly what the oracle accepts, with the same topic and
// byte-identical events, and what Split read during its pass matches Map.
func FuzzSplit(f *testing.F) {
	for _, s := range []string{
		`{"topic":"t","events":[{"a":1}]}`, `[{"a":1},{}]`, `{"a":"b"}`, `{"events":[1]}`, `[]`, `{"topic":null,"events":null}`,
		`{"events":[],"events":[]}`, `{"Topic":"a","tOpIc":"b","events":[]}`, `[{"org_id":"a","org_id":"b"}]`, `[{"a":"\ud800"}]`,
		"[{\"a\":\"\xff\"}]", `{"site_id":"s","site_id":"s"}`, `[{"timestamp":"1.5","siteid":"\u00e9"}]`, `{"eventſ":[{}]}`,
	} {
		f.Add([]byte(s))
	}
	files, _ := filepath.Glob(filepath.Join(goldenSamplesDir, "*.json"))
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		want := oracleSplit(body, "fallback")
		b, err := codec.Split(body, "fallback")
		if (err == nil) != want.ok {
			t.Fatalf("Split(%q) err = %v, oracle accepts: %v (%s)", body, err, want.ok, want.why)
		}
		if err != nil {
			var ie *codec.ItemError
			if !errors.As(err, &ie) && !errors.Is(err, codec.ErrNotJSON) && !errors.Is(err, codec.ErrBadEnvelope) &&
				!errors.Is(err, codec.ErrNoTopic) && !errors.Is(err, codec.ErrBadTopic) {
				t.Fatalf("Split(%q): unclassified error %v", body, err)
			}
			return
		}
		if b.Topic != want.topic || len(b.Events) != len(want.events) {
			t.Fatalf("Split(%q) = %q/%d events, oracle %q/%d", body, b.Topic, len(b.Events), want.topic, len(want.events))
		}
		for i := range want.events {
			if !bytes.Equal(b.Events[i], want.events[i]) {
				t.Fatalf("event %d = %q, want %q", i, b.Events[i], want.events[i])
			}
			if got, want := b.Event(i), codec.Map(b.Topic, b.Events[i]); !reflect.DeepEqual(got, want) {
				t.Fatalf("Batch.Event(%d) = %+v, Map gives %+v", i, got, want)
			}
		}
	})
}

type oracle struct {
	ok     bool
	why    string
	topic  string
	events [][]byte
}

// oracleSplit is what Split must do, spelled out with encoding/json.
func oracleSplit(body []byte, fallback string) oracle {
	if !json.Valid(body) {
		return oracle{why: "not JSON"}
	}
	if !utf8.Valid(body) {
		return oracle{why: "invalid UTF-8"}
	}
	if badSurrogate(body) {
		return oracle{why: "lone surrogate"}
	}
	trimmed := bytes.Trim(body, " \t\r\n")
	topic := fallback
	var items []json.RawMessage
	switch trimmed[0] {
	case '[':
		if json.Unmarshal(trimmed, &items) != nil {
			return oracle{why: "unreachable"}
		}
	case '{':
		members := objectMembers(trimmed)
		var events, topics []json.RawMessage
		for _, m := range members {
			switch {
			case strings.EqualFold(m.name, "events"):
				events = append(events, m.value)
			case strings.EqualFold(m.name, "topic"):
				topics = append(topics, m.value)
			}
		}
		if len(events) == 0 {
			items = []json.RawMessage{trimmed} // a bare object
			break
		}
		if len(events) > 1 || len(topics) > 1 {
			return oracle{why: "envelope member twice"}
		}
		if events[0][0] != '[' {
			return oracle{why: "events not an array"}
		}
		if len(topics) == 1 && string(topics[0]) != "null" {
			if json.Unmarshal(topics[0], &topic) != nil {
				return oracle{why: "topic not a string"}
			}
		}
		_ = json.Unmarshal(events[0], &items)
	default:
		return oracle{why: "scalar body"}
	}
	if len(topic) < 1 || len(topic) > 200 {
		return oracle{why: "topic length"}
	}
	for i := 0; i < len(topic); i++ {
		if !isTokenChar(topic[i]) {
			return oracle{why: "topic byte"}
		}
	}
	events := make([][]byte, len(items))
	for i, it := range items {
		if it[0] != '{' {
			return oracle{why: "item not an object"}
		}
		seen := map[string]bool{}
		for _, m := range objectMembers(it) {
			switch m.name {
			case "org_id", "orgid", "site_id", "siteid", "timestamp":
				if seen[m.name] {
					return oracle{why: "routing member twice"}
				}
				seen[m.name] = true
			}
		}
		events[i] = it
	}
	return oracle{ok: true, topic: topic, events: events}
}

type member struct {
	name  string
	value json.RawMessage
}

// objectMembers lists the members of a valid JSON object in order,
// duplicates included, with encoding/json's tokenizer.
func objectMembers(obj []byte) []member {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if _, err := dec.Token(); err != nil {
		return nil
	}
	var out []member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil && err != io.EOF {
			return nil
		}
		out = append(out, member{name: tok.(string), value: v})
	}
	return out
}

// badSurrogate reports whether valid JSON text has a \u escape of a
// surrogate that is not the high half followed at once by an escaped low
// half.
func badSurrogate(b []byte) bool {
	hex := func(s []byte) (int, bool) {
		if len(s) < 4 {
			return 0, false
		}
		n := 0
		for _, c := range s[:4] {
			switch {
			case c >= '0' && c <= '9':
				n = n*16 + int(c-'0')
			case c >= 'a' && c <= 'f':
				n = n*16 + int(c-'a'+10)
			case c >= 'A' && c <= 'F':
				n = n*16 + int(c-'A'+10)
			default:
				return 0, false
			}
		}
		return n, true
	}
	inString := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case !inString:
			inString = c == '"'
		case c == '"':
			inString = false
		case c == '\\':
			if b[i+1] != 'u' {
				i++
				continue
			}
			r, _ := hex(b[i+2:])
			switch {
			case r >= 0xdc00 && r <= 0xdfff:
				return true
			case r >= 0xd800 && r <= 0xdbff:
				if i+11 >= len(b) || b[i+6] != '\\' || b[i+7] != 'u' {
					return true
				}
				r2, _ := hex(b[i+8:])
				if r2 < 0xdc00 || r2 > 0xdfff {
					return true
				}
				i += 11
				continue
			}
			i += 5
		}
	}
	return false
}
