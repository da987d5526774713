package loadgen

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// RealisticMix weighs the Mist topics of deploy/samples by how much of a busy
// organisation's webhook traffic each is likely to be: location and client
// topics (sent per device and per client, every few seconds) dominate; device
// events, NAC and session topics follow; alarms, audits and the rest are
// rare. Mist publishes no such figures: these weights are a judgement, for
// traffic that is shaped like Mist's rather than a measurement of it. ping
// (sent only when an admin asks) and vbeacon (a made-up sample) weigh 0.
var RealisticMix = map[string]float64{
	"location": 20, "location-client": 6, "location-unclient": 4, "location-asset": 3,
	"location-sdk": 2, "location-centrak": 1, "zone": 3, "rssizone": 2,
	"asset-raw-rssi": 5, "discovered-raw-rssi": 3, "wifi-conn-raw": 3, "wifi-unconn-raw": 3,
	"sdkclient-scan-data": 1,
	"client-sessions":     8, "client-join": 6, "client-info": 4, "client-latency": 3,
	"device-events": 8, "device-updowns": 3, "nac-accounting": 3, "nac-events": 3,
	"alarms": 2, "audits": 1, "guest-authorizations": 1, "mxedge-events": 1,
	"occupancy-alerts": 1, "site-sle": 1, "minis-application": 1, "minis-reachability": 1,
}

// ParseMix reads a topic mix: "realistic" ([RealisticMix]), "even" (every
// topic of the samples alike, nil), one topic ("device-events"), or weights
// ("location=5,device-events=2,alarms=0.5"). An empty string is "realistic".
func ParseMix(s string) (map[string]float64, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "", "realistic":
		return RealisticMix, nil
	case "even":
		return nil, nil
	}
	mix := map[string]float64{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		topic, w, found := strings.Cut(part, "=")
		weight := 1.0
		if found {
			f, err := strconv.ParseFloat(strings.TrimSpace(w), 64)
			if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
				return nil, fmt.Errorf("loadgen: mix %q: weight %q of %s is not a number >= 0", s, w, topic)
			}
			weight = f
		}
		mix[strings.TrimSpace(topic)] = weight
	}
	if len(mix) == 0 {
		return nil, fmt.Errorf("loadgen: mix %q names no topic", s)
	}
	return mix, nil
}

// TrafficOptions shape the events a [Traffic] makes. The zero value of each
// field means its documented default.
type TrafficOptions struct {
	// Mix weighs topics (see [ParseMix]); a topic of the samples that is not
	// in it is not sent, a topic in it that no sample has is an error. The
	// default (nil) sends every topic of the samples alike.
	Mix map[string]float64

	// Orgs and Sites are how many organisations and sites the events are
	// spread over (sites are dealt to orgs in turn). The defaults are 3 and
	// 30. Each site is one partition key, so Sites bounds how far a
	// consumer group can spread the load.
	Orgs, Sites int

	// Seed fixes the org and site ids (and every random choice) so two runs
	// address the same sites. The default (0) draws new ones each run.
	Seed uint64
}

// Traffic makes request bodies shaped like Mist's webhooks from sample
// bodies: each request is one topic's envelope {"topic":...,"events":[...]}
// whose events copy that topic's sample events with fresh values where Mist's
// would differ:
//
//   - org_id / orgid and site_id / siteid: ids from a pool of Orgs orgs and
//     Sites sites (a request's events share an org, as an org's webhook's do);
//   - id and audit_id: a new random UUID per event;
//   - timestamp: the time of sending in seconds with six decimals, unique in
//     the run (it steps by a microsecond when two events would share one),
//     written as a number, or as a string where the sample has a string. An
//     event whose sample has no timestamp gets one as its last field.
//
// So no two events of a run are alike, and a bridge that derives an event's
// id from its bytes (and JetStream's duplicate window keyed on it) sees every
// one as new. The other fields keep the sample's bytes (compacted).
// A Traffic is safe for concurrent use; each goroutine makes its bodies with
// its own [Traffic.NewSource].
type Traffic struct {
	topics  []*topicTemplates
	cum     []float64 // cumulative weights over topics
	orgs    []string
	sites   [][]string // per org
	seed    uint64
	lastUS  atomic.Int64 // the last timestamp handed out, in µs
	sources atomic.Uint64
	now     func() time.Time
}

type topicTemplates struct {
	name     string
	envelope []byte // {"topic":"<name>","events":[
	events   []eventTemplate
}

// eventTemplate is one sample event cut into literal bytes and holes.
type eventTemplate struct {
	parts []part
	size  int // bytes of the literal parts, to size buffers
}

type holeKind uint8

const (
	holeNone    holeKind = iota
	holeOrg              // the request's org id, quoted
	holeSite             // a site of the request's org, quoted
	holeUUID             // a fresh UUID, quoted
	holeTimeNum          // the unique timestamp as a number
	holeTimeStr          // the unique timestamp as a string
)

type part struct {
	lit  []byte
	hole holeKind
}

// NewTraffic compiles samples (Mist envelopes, as [Samples] reads them) into
// a Traffic. It fails when a sample is not an envelope of JSON objects, when
// o.Mix names a topic no sample has, or when no topic is left to send.
func NewTraffic(samples []Sample, o TrafficOptions) (*Traffic, error) {
	if o.Orgs <= 0 {
		o.Orgs = 3
	}
	if o.Sites <= 0 {
		o.Sites = 30
	}
	if o.Sites < o.Orgs {
		o.Sites = o.Orgs
	}
	seed := o.Seed
	if seed == 0 {
		seed = rand.Uint64() | 1
	}
	byTopic := map[string]*topicTemplates{}
	var order []string
	for _, s := range samples {
		topic, events, err := splitSample(s.Body)
		if err != nil {
			return nil, fmt.Errorf("loadgen: sample %s: %w", s.Name, err)
		}
		tt := byTopic[topic]
		if tt == nil {
			tt = &topicTemplates{name: topic}
			byTopic[topic] = tt
			order = append(order, topic)
		}
		for i, ev := range events {
			t, err := compile(ev)
			if err != nil {
				return nil, fmt.Errorf("loadgen: sample %s: events[%d]: %w", s.Name, i, err)
			}
			tt.events = append(tt.events, t)
		}
	}
	slices.Sort(order)
	t := &Traffic{seed: seed, now: time.Now}
	for topic := range o.Mix {
		if byTopic[topic] == nil {
			return nil, fmt.Errorf("loadgen: mix names topic %q but no sample has it (topics: %s)", topic, strings.Join(order, ", "))
		}
	}
	total := 0.0
	for _, topic := range order {
		tt := byTopic[topic]
		w := 1.0
		if o.Mix != nil {
			w = o.Mix[topic]
		}
		if w <= 0 || len(tt.events) == 0 {
			continue
		}
		name, _ := json.Marshal(topic)
		tt.envelope = slices.Concat([]byte(`{"topic":`), name, []byte(`,"events":[`))
		total += w
		t.topics = append(t.topics, tt)
		t.cum = append(t.cum, total)
	}
	if len(t.topics) == 0 {
		return nil, errors.New("loadgen: no topic to send: the samples are empty or the mix weighs every topic 0")
	}
	rng := rand.New(rand.NewPCG(seed, 0x6d697374))
	var b []byte
	for i := 0; i < o.Orgs; i++ {
		b = appendUUID(b[:0], rng)
		t.orgs = append(t.orgs, string(b))
		t.sites = append(t.sites, nil)
	}
	for i := 0; i < o.Sites; i++ {
		b = appendUUID(b[:0], rng)
		t.sites[i%o.Orgs] = append(t.sites[i%o.Orgs], string(b))
	}
	return t, nil
}

// Topics returns the topics t sends, each with its share of requests.
func (t *Traffic) Topics() map[string]float64 {
	out := make(map[string]float64, len(t.topics))
	prev := 0.0
	total := t.cum[len(t.cum)-1]
	for i, tt := range t.topics {
		out[tt.name] = (t.cum[i] - prev) / total
		prev = t.cum[i]
	}
	return out
}

// Source makes bodies for one goroutine. It is not safe for concurrent use.
type Source struct {
	t   *Traffic
	rng *rand.Rand
}

// NewSource returns a [Source] with its own random stream.
func (t *Traffic) NewSource() *Source {
	n := t.sources.Add(1)
	return &Source{t: t, rng: rand.New(rand.NewPCG(t.seed, n))}
}

// AppendBody appends a request body of n events to dst and returns it and
// the request's topic.
func (s *Source) AppendBody(dst []byte, n int) ([]byte, string) {
	t := s.t
	tt := t.topics[s.pickTopic()]
	org := s.rng.IntN(len(t.orgs))
	sites := t.sites[org]
	dst = append(dst, tt.envelope...)
	for i := 0; i < n; i++ {
		if i > 0 {
			dst = append(dst, ',')
		}
		ev := &tt.events[s.rng.IntN(len(tt.events))]
		site := sites[s.rng.IntN(len(sites))]
		for _, p := range ev.parts {
			switch p.hole {
			case holeNone:
				dst = append(dst, p.lit...)
			case holeOrg:
				dst = append(append(append(dst, '"'), t.orgs[org]...), '"')
			case holeSite:
				dst = append(append(append(dst, '"'), site...), '"')
			case holeUUID:
				dst = append(appendUUID(append(dst, '"'), s.rng), '"')
			case holeTimeNum:
				dst = appendMicros(dst, t.nextMicros())
			case holeTimeStr:
				dst = append(appendMicros(append(dst, '"'), t.nextMicros()), '"')
			}
		}
	}
	return append(dst, "]}"...), tt.name
}

func (s *Source) pickTopic() int {
	cum := s.t.cum
	if len(cum) == 1 {
		return 0
	}
	x := s.rng.Float64() * cum[len(cum)-1]
	return min(sort.Search(len(cum), func(i int) bool { return cum[i] > x }), len(cum)-1)
}

// nextMicros returns the time in µs, later than every value it returned
// before: unique across the goroutines of the run.
func (t *Traffic) nextMicros() int64 {
	now := t.now().UnixMicro()
	for {
		last := t.lastUS.Load()
		v := max(now, last+1)
		if t.lastUS.CompareAndSwap(last, v) {
			return v
		}
	}
}

func appendMicros(dst []byte, us int64) []byte {
	dst = strconv.AppendInt(dst, us/1e6, 10)
	frac := us % 1e6
	dst = append(dst, '.')
	for d := int64(100000); d > 0; d /= 10 {
		dst = append(dst, byte('0'+frac/d%10))
	}
	return dst
}

const hexDigits = "0123456789abcdef"

// appendUUID appends a random (version 4) UUID in its 36-character form.
func appendUUID(dst []byte, rng *rand.Rand) []byte {
	var u [16]byte
	a, b := rng.Uint64(), rng.Uint64()
	for i := 0; i < 8; i++ {
		u[i], u[8+i] = byte(a>>(8*i)), byte(b>>(8*i))
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hexDigits[c>>4], hexDigits[c&0x0f])
	}
	return dst
}

// splitSample returns the topic and the raw events of a Mist envelope.
func splitSample(body []byte) (string, []json.RawMessage, error) {
	var env struct {
		Topic  string            `json:"topic"`
		Events []json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return "", nil, fmt.Errorf("not a Mist envelope: %w", err)
	}
	if env.Topic == "" {
		return "", nil, errors.New("no topic")
	}
	return env.Topic, env.Events, nil
}

// compile cuts one event (a JSON object) into literal parts and holes, in
// the order of its fields.
func compile(event []byte) (eventTemplate, error) {
	dec := json.NewDecoder(bytes.NewReader(event))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return eventTemplate{}, errors.New("not a JSON object")
	}
	var t eventTemplate
	lit := []byte{'{'}
	flush := func(h holeKind) {
		t.parts = append(t.parts, part{lit: lit}, part{hole: h})
		t.size += len(lit)
		lit = nil
	}
	first, hasTime := true, false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return eventTemplate{}, err
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return eventTemplate{}, err
		}
		if !first {
			lit = append(lit, ',')
		}
		first = false
		k, _ := json.Marshal(key)
		lit = append(append(lit, k...), ':')
		isString := len(raw) > 0 && raw[0] == '"'
		switch {
		case (key == "org_id" || key == "orgid") && isString:
			flush(holeOrg)
		case (key == "site_id" || key == "siteid") && isString:
			flush(holeSite)
		case (key == "id" || key == "audit_id") && isString:
			flush(holeUUID)
		case key == "timestamp" && isString:
			flush(holeTimeStr)
			hasTime = true
		case key == "timestamp":
			flush(holeTimeNum)
			hasTime = true
		default:
			var c bytes.Buffer
			if err := json.Compact(&c, raw); err != nil {
				return eventTemplate{}, err
			}
			lit = append(lit, c.Bytes()...)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return eventTemplate{}, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return eventTemplate{}, errors.New("data after the object")
	}
	if !hasTime {
		if !first {
			lit = append(lit, ',')
		}
		lit = append(lit, `"timestamp":`...)
		flush(holeTimeNum)
	}
	lit = append(lit, '}')
	t.parts = append(t.parts, part{lit: lit})
	t.size += len(lit)
	return t, nil
}
