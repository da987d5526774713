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
	r.latest = newBounded(o.MaxTopics, func() *latestRing { return &latestRing{buf: make([]EventInfo, o.Latest)} })
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
		var arr [DefaultLatest]EventInfo
		infos := arr[:0]
		if len(run) > len(arr) {
			infos = make([]EventInfo, 0, len(run))
		}
		// The kept strings of the run share one buffer: one allocation
		// for them all rather than several per event.
		buf := make([]byte, 0, keptBytes(run))
		for _, e := range run {
			var in EventInfo
			in, buf = r.info(e, at, buf)
			infos = append(infos, in)
		}
		r.latest.get(topic).push(infos)
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

// info is what is kept of e. Its strings are appended to buf, which it
// returns; they stay valid as buf grows, since what was appended is never
// written again.
func (r *Recorder) info(e *codec.Event, at time.Time, buf []byte) (EventInfo, []byte) {
	in := EventInfo{Received: at, Time: e.Time, DataBytes: len(e.Data)}
	in.ID, buf = keep(buf, e.ID, MaxAttrLen, "")
	in.Type, buf = keep(buf, e.Type, MaxAttrLen, "")
	in.Source, buf = keep(buf, e.Source, MaxAttrLen, "")
	in.Key, buf = keep(buf, e.PartitionKey(), MaxAttrLen, "")
	in.Data, buf = keep(buf, unsafe.String(unsafe.SliceData(e.Data), len(e.Data)), PreviewBytes, "…")
	if r.o.SubjectPrefix != "" {
		in.Subject = codec.Subject(r.o.SubjectPrefix, e) // a new string, bounded
		if len(in.Subject) > MaxAttrLen {
			in.Subject = clip(in.Subject)
		}
	}
	return in, buf
}

// keptBytes bounds what info appends for the events of run.
func keptBytes(run []*codec.Event) int {
	n := 0
	for _, e := range run {
		n += min(len(e.ID), MaxAttrLen) + min(len(e.Type), MaxAttrLen) + min(len(e.Source), MaxAttrLen) +
			min(len(e.PartitionKey()), MaxAttrLen) + min(len(e.Data), PreviewBytes) + len("…")
	}
	return n
}

// keep appends to buf at most n bytes of s, cut back to a whole UTF-8
// character and followed by more when cut, and returns them as a string
// of valid UTF-8 (invalid bytes become U+FFFD) with the grown buf. The
// string shares no memory with s, which may be pooled.
func keep(buf []byte, s string, n int, more string) (string, []byte) {
	cut := ""
	if len(s) > n {
		c := n
		for c > 0 && !utf8.RuneStart(s[c]) {
			c--
		}
		s, cut = s[:c], more
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	start := len(buf)
	buf = append(append(buf, s...), cut...)
	kept := buf[start:]
	return unsafe.String(unsafe.SliceData(kept), len(kept)), buf
}

// latestRing keeps the latest events of one topic.
type latestRing struct {
	mu   sync.Mutex
	buf  []EventInfo
	next int // where the next event goes
	n    int // how many are kept
}

func (l *latestRing) push(infos []EventInfo) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, in := range infos {
		l.buf[l.next] = in
		l.next = (l.next + 1) % len(l.buf)
		l.n = min(l.n+1, len(l.buf))
	}
}

// newest returns the kept events, newest first.
func (l *latestRing) newest() []EventInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]EventInfo, 0, l.n)
	for i := 1; i <= l.n; i++ {
		out = append(out, l.buf[(l.next-i+len(l.buf))%len(l.buf)])
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
// whole character, "…" appended when cut.
func preview(data []byte) string {
	p, _ := keep(nil, string(data), PreviewBytes, "…")
	return p
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
