package loadgen

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// TestTrafficEvents builds bodies from every sample and checks each event
// against its sample: same fields in the same order, the same values but
// for org, site, id, audit_id and timestamp, which are fresh; every event
// of the run differs from every other.
func TestTrafficEvents(t *testing.T) {
	samples := mustSamples(t)
	tr, err := NewTraffic(samples, TrafficOptions{Orgs: 2, Sites: 4, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	// The sample events by topic, to compare with.
	want := map[string][]map[string]any{}
	for _, s := range samples {
		topic, events, err := splitSample(s.Body)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range events {
			var m map[string]any
			if err := json.Unmarshal(e, &m); err != nil {
				t.Fatal(err)
			}
			want[topic] = append(want[topic], m)
		}
	}
	orgs, sites := map[string]bool{}, map[string]bool{}
	for _, o := range tr.orgs {
		orgs[o] = true
	}
	for _, ss := range tr.sites {
		for _, s := range ss {
			sites[s] = true
		}
	}
	if len(orgs) != 2 || len(sites) != 4 {
		t.Fatalf("%d orgs, %d sites: want 2 and 4", len(orgs), len(sites))
	}
	src := tr.NewSource()
	seen := map[string]bool{}
	topics := map[string]int{}
	var lastTS float64
	for i := 0; i < 2000; i++ {
		body, topic := src.AppendBody(nil, 3)
		topics[topic]++
		var env struct {
			Topic  string            `json:"topic"`
			Events []json.RawMessage `json:"events"`
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&env); err != nil {
			t.Fatalf("body %d is not JSON: %v\n%s", i, err, body)
		}
		if env.Topic != topic || len(env.Events) != 3 {
			t.Fatalf("body %d: topic %q with %d events, want %q with 3", i, env.Topic, len(env.Events), topic)
		}
		var org string
		for _, raw := range env.Events {
			if seen[topic+string(raw)] {
				t.Fatalf("event repeated: %s", raw)
			}
			seen[topic+string(raw)] = true
			var got map[string]any
			_ = json.Unmarshal(raw, &got)
			ts, ok := got["timestamp"].(float64)
			if !ok {
				if s, isStr := got["timestamp"].(string); isStr {
					ts, _ = strconv.ParseFloat(s, 64)
				}
			}
			if math.Abs(ts-float64(time.Now().Unix())) > 60 {
				t.Fatalf("timestamp %v is not now: %s", got["timestamp"], raw)
			}
			if ts < lastTS {
				t.Fatalf("timestamp %v went back from %v", ts, lastTS)
			}
			lastTS = ts
			match := false
			for _, w := range want[topic] {
				if sameBut(w, got) {
					match = true
					break
				}
			}
			if !match {
				t.Fatalf("%s event matches no sample but for the fresh fields: %s", topic, raw)
			}
			for _, k := range []string{"org_id", "orgid"} {
				if v, ok := got[k]; ok {
					if !orgs[v.(string)] {
						t.Fatalf("%s %v is not one of the orgs", k, v)
					}
					if org != "" && v != org {
						t.Fatalf("one request, two orgs: %s and %v", org, v)
					}
					org = v.(string)
				}
			}
			for _, k := range []string{"site_id", "siteid"} {
				if v, ok := got[k]; ok && !sites[v.(string)] {
					t.Fatalf("%s %v is not one of the sites", k, v)
				}
			}
			for _, k := range []string{"id", "audit_id"} {
				if v, ok := got[k].(string); ok && !uuidRE.MatchString(v) {
					t.Fatalf("%s %q is not a fresh UUID", k, v)
				}
			}
		}
	}
	if len(topics) != len(tr.topics) {
		t.Errorf("sent %d topics of %d", len(topics), len(tr.topics))
	}
}

// sameBut says whether got is sample w with fresh org, site, id and
// timestamp values (and a timestamp where w has none).
func sameBut(w, got map[string]any) bool {
	if len(got) != len(w) && !(len(got) == len(w)+1 && w["timestamp"] == nil) {
		return false
	}
	for k, v := range got {
		switch k {
		case "org_id", "orgid", "site_id", "siteid", "id", "audit_id", "timestamp":
			continue
		}
		if !reflect.DeepEqual(v, w[k]) {
			return false
		}
	}
	return true
}

func TestTrafficFieldOrderAndTimestampForm(t *testing.T) {
	tr, err := NewTraffic([]Sample{
		{Name: "a", Body: []byte(`{"topic":"x","events":[{"b":1, "site_id":"s","timestamp":"1.5","nested":{ "k" : [1, 2] }}]}`)},
		{Name: "b", Body: []byte(`{"topic":"y","events":[{"site_id":"s"}]}`)},
	}, TrafficOptions{Mix: map[string]float64{"x": 1}, Orgs: 1, Sites: 1, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	tr.now = func() time.Time { return time.Unix(1700000000, 250_000_000) }
	src := tr.NewSource()
	b1, _ := src.AppendBody(nil, 2)
	site := tr.sites[0][0]
	want := `{"topic":"x","events":[{"b":1,"site_id":"` + site + `","timestamp":"1700000000.250000","nested":{"k":[1,2]}},` +
		`{"b":1,"site_id":"` + site + `","timestamp":"1700000000.250001","nested":{"k":[1,2]}}]}`
	if string(b1) != want {
		t.Errorf("got  %s\nwant %s", b1, want)
	}
	// A sample without a timestamp gets one, last.
	tr2, err := NewTraffic([]Sample{{Name: "b", Body: []byte(`{"topic":"y","events":[{"site_id":"s"},{}]}`)}}, TrafficOptions{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	tr2.now = tr.now
	for i := 0; i < 20; i++ {
		b, _ := tr2.NewSource().AppendBody(nil, 1)
		if !regexp.MustCompile(`^\{"topic":"y","events":\[\{("site_id":"[0-9a-f-]{36}",)?"timestamp":1700000000\.25\d{4}\}\]\}$`).Match(b) {
			t.Fatalf("got %s", b)
		}
	}
}

func TestNewTrafficErrors(t *testing.T) {
	ok := Sample{Name: "ok", Body: []byte(`{"topic":"x","events":[{"a":1}]}`)}
	tests := []struct {
		name    string
		samples []Sample
		mix     map[string]float64
		want    string
	}{
		{"not an envelope", []Sample{{Name: "bad", Body: []byte(`[1]`)}}, nil, "sample bad: not a Mist envelope"},
		{"event not an object", []Sample{{Name: "bad", Body: []byte(`{"topic":"x","events":[1]}`)}}, nil, "events[0]: not a JSON object"},
		{"unknown topic in mix", []Sample{ok}, map[string]float64{"nope": 1}, `mix names topic "nope"`},
		{"everything weighs 0", []Sample{ok}, map[string]float64{"x": 0}, "no topic to send"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewTraffic(tt.samples, TrafficOptions{Mix: tt.mix})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestParseMix(t *testing.T) {
	tests := []struct {
		in      string
		want    map[string]float64
		wantErr bool
	}{
		{"", RealisticMix, false},
		{"realistic", RealisticMix, false},
		{"even", nil, false},
		{"device-events", map[string]float64{"device-events": 1}, false},
		{"location=3, alarms=0.5", map[string]float64{"location": 3, "alarms": 0.5}, false},
		{"location=-1", nil, true},
		{"location=x", nil, true},
		{",", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseMix(tt.in)
			if (err != nil) != tt.wantErr || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseMix(%q) = %v, %v; want %v (error %v)", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// TestTrafficMix: topics come in the proportions of the mix.
func TestTrafficMix(t *testing.T) {
	tr, err := NewTraffic(mustSamples(t), TrafficOptions{Mix: map[string]float64{"location": 3, "alarms": 1}, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	if got := tr.Topics(); !reflect.DeepEqual(got, map[string]float64{"alarms": 0.25, "location": 0.75}) {
		t.Fatalf("Topics() = %v", got)
	}
	src := tr.NewSource()
	n := map[string]int{}
	for i := 0; i < 4000; i++ {
		_, topic := src.AppendBody(nil, 1)
		n[topic]++
	}
	if n["location"] < 2800 || n["location"] > 3200 || n["alarms"]+n["location"] != 4000 {
		t.Errorf("4000 requests: %v, want about 3000 location and 1000 alarms", n)
	}
}

func BenchmarkAppendBody(b *testing.B) {
	samples, err := Samples(func() string { d, _ := SamplesDir(); return d }())
	if err != nil {
		b.Fatal(err)
	}
	tr, err := NewTraffic(samples, TrafficOptions{Mix: RealisticMix})
	if err != nil {
		b.Fatal(err)
	}
	src := tr.NewSource()
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = src.AppendBody(buf[:0], 10)
	}
}
