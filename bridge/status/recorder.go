package status

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mistbridge/mistbridge/codec"
)

// Other is the name under which topics, receivers and reasons past the
// bounds of [Options] are counted together. Parentheses cannot appear in a
// topic or a receiver's name, so it never stands for a real one.
const Other = "(other)"

// The defaults and bounds of [Options].
const (
	DefaultWindow    = 5 * time.Minute
	MinWindow        = time.Minute
	MaxWindow        = time.Hour
	DefaultLatest    = 10
	MaxLatest        = 100
	DefaultMaxTopics = 64
	// PreviewBytes is how much of an event's data is kept: its first 200
	// bytes, cut back to a whole UTF-8 character.
	PreviewBytes = 200
	// MaxAttrLen bounds each kept attribute (id, source, key...), in bytes.
	MaxAttrLen = 300
	// maxReasonLen bounds a reason given to Request.
	maxReasonLen = 64
)

// Options tune a [Recorder]. The zero value is usable: every field has the
// default it documents.
type Options struct {
	// Gatherer is read once a second by [Recorder.Run]: the registry the
	// bridge, the sinks and the spool register their metrics with. Nil
	// leaves the rates, totals, spool depth and sink errors empty.
	Gatherer prometheus.Gatherer
	// Window is how far back the per-second figures go, in whole seconds.
	// The default is 5 minutes; it is held between 1 minute and 1 hour.
	Window time.Duration
	// Latest is how many events are kept per topic. The default is 10, at
	// most 100.
	Latest int
	// MaxTopics bounds the topics that get figures and latest events of
	// their own, and separately the receivers and the refusal reasons; the
	// others are counted together under [Other]. The default is 64.
	MaxTopics int
	// SubjectPrefix, when set, is the NATS subject prefix
	// (MISTBRIDGE_NATS_SUBJECT_PREFIX): each kept event then shows its
	// NATS subject. Empty shows none.
	SubjectPrefix string
}

func (o Options) withDefaults() Options {
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	o.Window = min(max(o.Window.Truncate(time.Second), MinWindow), MaxWindow)
	if o.Latest <= 0 {
		o.Latest = DefaultLatest
	}
	o.Latest = min(o.Latest, MaxLatest)
	if o.MaxTopics <= 0 {
		o.MaxTopics = DefaultMaxTopics
	}
	return o
}

// Recorder collects what the status page shows. Build it with [New] when
// the registry is made, before any traffic (its first sample counts every
// counter from zero), and run [Recorder.Run] for the life of the process.
// It is safe for concurrent use; [Recorder.Request] and [Recorder.Events]
// are cheap enough for the webhook path.
type Recorder struct {
	o   Options
	now func() time.Time

	// Fed by the webhook path: lock-free once a name is known.
	hooked    atomic.Bool // Request was called: answers carry reasons
	receivers *bounded[*receiverStat]
	reasons   *bounded[*reasonStat]
	latest    *bounded[*latestRing]

	mu sync.RWMutex // guards st, written once a second by Sample
	st *sampled
}

// New returns a Recorder with o's settings.
func New(o Options) *Recorder {
	o = o.withDefaults()
	r := &Recorder{o: o, now: time.Now}
	r.receivers = newBounded(o.MaxTopics, func() *receiverStat { return new(receiverStat) })
	r.reasons = newBounded(o.MaxTopics, func() *reasonStat { return new(reasonStat) })
	r.reasons.other.reason = Other
	r.latest = newBounded(o.MaxTopics, func() *latestRing { return newLatestRing(o.Latest, o.SubjectPrefix) })
	r.st = newSampled(int(o.Window / time.Second))
	return r
}

// Run samples the gatherer once a second until ctx is done. Its caller owns
// the goroutine and waits for it: Run returns once ctx is done.
func (r *Recorder) Run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	r.Sample(r.now())
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.Sample(r.now())
		}
	}
}

// receiverStat is what Request counts for one receiver.
type receiverStat struct {
	last atomic.Pointer[LastRequest]
}

// reasonStat counts the answers of one status code and reason.
type reasonStat struct {
	code   int
	reason string
	n      atomic.Int64
}

// Request records one answered webhook request of receiver: its topic (""
// when unknown), the events it carried, the status code it was answered
// with, the reason of a refusal ("" for a 200) and when it arrived or was
// answered. Call it once per request, after the answer. It takes no lock
// once receiver and reason are known.
func (r *Recorder) Request(receiver, topic string, events int, code int, reason string, at time.Time) {
	r.hooked.Store(true)
	st := r.receivers.get(receiver)
	lr := &LastRequest{At: at, Topic: clip(topic), Events: events, Code: code, Reason: clipN(reason, maxReasonLen)}
	for {
		cur := st.last.Load()
		if cur != nil && cur.At.After(at) {
			break // a later request already answered
		}
		if st.last.CompareAndSwap(cur, lr) {
			break
		}
	}
	if code != 200 {
		if reason == "" {
			reason = "unknown"
		}
		key := strconv.Itoa(code) + " " + reason
		rs := r.reasons.getWith(key, func(s *reasonStat) { s.code, s.reason = code, lr.Reason })
		rs.n.Add(1)
	}
}

// Events records the events of one request that were accepted (answered
// 200): the latest [Options.Latest] of each topic are kept with their
// CloudEvent attributes and the first [PreviewBytes] of their data. The
// events and their Data are only read during the call, never kept.
//
// It allocates nothing once the rings are warm: each kept event is copied
// into a slot of its topic's ring that owns its bytes and is overwritten
// when reused, and the strings of [EventInfo] are made only when read.
func (r *Recorder) Events(evs []*codec.Event) {
	if len(evs) == 0 {
		return
	}
	at := r.now()
	for i := 0; i < len(evs); {
		if evs[i] == nil {
			i++
			continue
		}
		topic := evs[i].Topic
		j := i + 1
		for j < len(evs) && evs[j] != nil && evs[j].Topic == topic {
			j++
		}
		run := evs[i:j]
		if len(run) > r.o.Latest {
			run = run[len(run)-r.o.Latest:]
		}
		r.latest.get(topic).push(run, at)
		i = j
	}
}

// EventInfo is one kept event: its CloudEvent attributes and the start of
// its data.
type EventInfo struct {
	// Received is when the bridge accepted it.
	Received time.Time `json:"received"`
	ID       string    `json:"id"`
	Type     string    `json:"type"`
	Source   string    `json:"source"`
	// Time is the event's own time; zero when it has none.
	Time time.Time `json:"time,omitzero"`
	// Subject is its NATS subject, when [Options.SubjectPrefix] is set.
	Subject string `json:"subject,omitempty"`
	// Key is the partitionkey extension: the Kafka record key.
	Key string `json:"partitionkey"`
	// DataBytes is the size of its data; Data is the first [PreviewBytes]
	// of it (empty where the page does not show data).
	DataBytes int    `json:"data_bytes"`
	Data      string `json:"data,omitempty"`
}

// The fields a slot keeps as bytes, in the order they lie in its buffer.
const (
	fID = iota
	fType
	fSource
	fKey
	fData
	// The subject's inputs, kept to make it on read (see subjectInputMax);
	// empty when there is no SubjectPrefix or it was made on write.
	fTopic
	fOrg
	fSite
	nFields
)

// subjectInputMax bounds the topic, org and site that a slot keeps to make
// the event's subject when read. An event with a longer one (none that
// Mist sends: its ids are UUIDs) has its subject made on write instead,
// which allocates it.
const subjectInputMax = 64

// A slot's buffer holds at most this many bytes, so its ends fit in
// uint16 (the conversion fails to compile if they would not).
const _ = uint16(4*MaxAttrLen + PreviewBytes + 3*subjectInputMax)

// slot is one kept event as its ring holds it: the bytes of its strings as
// the event had them, each cut to its bound at a whole UTF-8 character but
// not yet made valid UTF-8. They lie in buf, which the slot owns: it is
// overwritten (and grown when too small) when the slot is reused, so no
// string handed to a reader may point into it; [latestRing.newest] copies
// out. The UTF-8 repair, the "…" of a cut preview and the subject are
// done on read, giving the same bytes as doing them on write.
type slot struct {
	received, time  time.Time
	dataBytes       int
	buf             []byte
	end             [nFields]uint16 // where each field ends in buf
	dataCut         bool            // the data was longer than PreviewBytes
	orgSet, siteSet bool
	// subject is the subject made on write, when its inputs were too long
	// to keep; "" when there is none or it is made on read. A string is
	// never written again, so readers may share it.
	subject string
}

// set makes s keep e, received at at; prefix is the SubjectPrefix.
func (s *slot) set(e *codec.Event, at time.Time, prefix string) {
	s.received, s.time, s.dataBytes = at, e.Time, len(e.Data)
	b := s.buf[:0]
	b, _ = appendCut(b, e.ID, MaxAttrLen)
	s.end[fID] = uint16(len(b))
	b, _ = appendCut(b, e.Type, MaxAttrLen)
	s.end[fType] = uint16(len(b))
	b, _ = appendCut(b, e.Source, MaxAttrLen)
	s.end[fSource] = uint16(len(b))
	b, _ = appendCut(b, e.PartitionKey(), MaxAttrLen)
	s.end[fKey] = uint16(len(b))
	b, s.dataCut = appendCut(b, unsafe.String(unsafe.SliceData(e.Data), len(e.Data)), PreviewBytes)
	s.end[fData] = uint16(len(b))
	s.subject, s.orgSet, s.siteSet = "", e.OrgSet, e.SiteSet
	var topic, org, site string
	if prefix != "" {
		if len(e.Topic) <= subjectInputMax && len(e.Org) <= subjectInputMax && len(e.Site) <= subjectInputMax {
			topic, org, site = e.Topic, e.Org, e.Site
		} else {
			s.subject = subjectOf(prefix, e)
		}
	}
	b = append(b, topic...)
	s.end[fTopic] = uint16(len(b))
	b = append(b, org...)
	s.end[fOrg] = uint16(len(b))
	b = append(b, site...)
	s.end[fSite] = uint16(len(b))
	s.buf = b
}

// field is the bytes of field f of s.
func (s *slot) field(f int) []byte {
	start := uint16(0)
	if f > 0 {
		start = s.end[f-1]
	}
	return s.buf[start:s.end[f]]
}

// info is what s shows, its strings appended to *strs (see appendValid);
// prefix is the SubjectPrefix. s.buf must be a copy no one writes.
func (s *slot) info(prefix string, strs *[]byte) EventInfo {
	in := EventInfo{Received: s.received, Time: s.time, DataBytes: s.dataBytes}
	in.ID = appendValid(strs, s.field(fID), "")
	in.Type = appendValid(strs, s.field(fType), "")
	in.Source = appendValid(strs, s.field(fSource), "")
	in.Key = appendValid(strs, s.field(fKey), "")
	more := ""
	if s.dataCut {
		more = "…"
	}
	in.Data = appendValid(strs, s.field(fData), more)
	if prefix != "" {
		in.Subject = s.subject
		if in.Subject == "" {
			str := func(f int) string { b := s.field(f); return unsafe.String(unsafe.SliceData(b), len(b)) }
			// Subject reads no other field, and keeps none of these.
			in.Subject = subjectOf(prefix, &codec.Event{
				Topic: str(fTopic), Org: str(fOrg), Site: str(fSite),
				OrgSet: s.orgSet, SiteSet: s.siteSet,
			})
		}
	}
	return in
}

// subjectOf is the subject an EventInfo shows for e: its NATS subject,
// bounded. It is a new string.
func subjectOf(prefix string, e *codec.Event) string {
	sub := codec.Subject(prefix, e) // a new string, bounded
	if len(sub) > MaxAttrLen {
		sub = clip(sub)
	}
	return sub
}

// appendCut appends to b at most n bytes of s, cut back to a whole UTF-8
// character, and tells whether s was cut. It leaves invalid UTF-8 as it
// is: appendValid repairs it.
func appendCut(b []byte, s string, n int) ([]byte, bool) {
	if len(s) <= n {
		return append(b, s...), false
	}
	c := n
	for c > 0 && !utf8.RuneStart(s[c]) {
		c--
	}
	return append(b, s[:c]...), true
}

// appendValid appends raw to *strs as valid UTF-8 (each run of invalid
// bytes becomes U+FFFD, as [strings.ToValidUTF8] does), followed by more,
// and returns what it appended as a string. The string stays valid as
// *strs grows, since what was appended is never written again: *strs must
// only ever be appended to.
func appendValid(strs *[]byte, raw []byte, more string) string {
	b := *strs
	start := len(b)
	if utf8.Valid(raw) {
		b = append(b, raw...)
	} else {
		b = append(b, strings.ToValidUTF8(unsafe.String(unsafe.SliceData(raw), len(raw)), "\uFFFD")...)
	}
	b = append(b, more...)
	*strs = b
	kept := b[start:]
	return unsafe.String(unsafe.SliceData(kept), len(kept))
}

// latestRing keeps the latest events of one topic.
type latestRing struct {
	prefix string // the SubjectPrefix

	mu    sync.Mutex
	slots []slot
	next  int // where the next event goes
	n     int // how many are kept
}

func newLatestRing(latest int, prefix string) *latestRing {
	return &latestRing{prefix: prefix, slots: make([]slot, latest)}
}

// push keeps the events of run, received at at, in order.
func (l *latestRing) push(run []*codec.Event, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range run {
		l.slots[l.next].set(e, at, l.prefix)
		l.next = (l.next + 1) % len(l.slots)
		l.n = min(l.n+1, len(l.slots))
	}
}

// newestAt returns when the newest kept event was received; false when
// none is kept.
func (l *latestRing) newestAt() (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n == 0 {
		return time.Time{}, false
	}
	return l.slots[(l.next-1+len(l.slots))%len(l.slots)].received, true
}

// newest returns the kept events, newest first. Their strings are new:
// they share no memory with the slots, which later events overwrite.
func (l *latestRing) newest() []EventInfo {
	// Under the lock, only copy the slots and their bytes out; the
	// strings are made after.
	l.mu.Lock()
	kept := make([]slot, l.n)
	size := 0
	for i := range kept {
		kept[i] = l.slots[(l.next-1-i+2*len(l.slots))%len(l.slots)]
		size += len(kept[i].buf)
	}
	raw := make([]byte, 0, size)
	for i := range kept {
		start := len(raw)
		raw = append(raw, kept[i].buf...)
		kept[i].buf = raw[start:len(raw):len(raw)]
	}
	l.mu.Unlock()

	out := make([]EventInfo, len(kept))
	strs := make([]byte, 0, size+len(kept)*len("…")) // grown only for invalid UTF-8
	for i := range kept {
		out[i] = kept[i].info(l.prefix, &strs)
	}
	return out
}

// clip returns a copy of s of at most MaxAttrLen bytes of valid UTF-8: the
// copy detaches it from whatever larger string or buffer s points into.
func clip(s string) string { return clipN(s, MaxAttrLen) }

func clipN(s string, n int) string {
	if len(s) > n {
		cut := n
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	if !utf8.ValidString(s) {
		return strings.ToValidUTF8(s, "\uFFFD")
	}
	return strings.Clone(s)
}

// preview is the first PreviewBytes of data as valid UTF-8, cut back to a
// whole character, "…" appended when cut: the Data an EventInfo shows.
func preview(data []byte) string {
	raw, cut := appendCut(nil, string(data), PreviewBytes)
	more := ""
	if cut {
		more = "…"
	}
	var strs []byte
	return appendValid(&strs, raw, more)
}

// bounded maps names to values, lock-free for names already there. At most
// max names get a value of their own; later ones share the value of Other.
type bounded[V any] struct {
	m     sync.Map // string -> V
	full  atomic.Bool
	mu    sync.Mutex // guards n and inserts
	n     int
	max   int
	newV  func() V
	other V
}

func newBounded[V any](max int, newV func() V) *bounded[V] {
	return &bounded[V]{max: max, newV: newV, other: newV()}
}

func (b *bounded[V]) get(name string) V { return b.getWith(name, nil) }

// getWith is get; init sets up a value made for a new name.
func (b *bounded[V]) getWith(name string, init func(V)) V {
	if v, ok := b.m.Load(name); ok {
		return v.(V)
	}
	if b.full.Load() {
		return b.other
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if v, ok := b.m.Load(name); ok {
		return v.(V)
	}
	if b.n >= b.max {
		b.full.Store(true)
		return b.other
	}
	v := b.newV()
	if init != nil {
		init(v)
	}
	b.m.Store(strings.Clone(name), v)
	b.n++
	return v
}

// each calls f for every name, then for Other when it was used.
func (b *bounded[V]) each(f func(name string, v V)) {
	b.m.Range(func(k, v any) bool {
		f(k.(string), v.(V))
		return true
	})
	if b.full.Load() {
		f(Other, b.other)
	}
}
