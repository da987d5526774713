package codec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// Sentinel errors returned (wrapped) by [Split]. Each maps to a 4xx answer.
var (
	// ErrNotJSON means the body is not one well-formed JSON value in UTF-8
	// (RFC 8259), e.g. it is truncated, has trailing data, or holds invalid
	// UTF-8 or a lone surrogate escape outside any event.
	ErrNotJSON = errors.New("codec: body is not valid JSON")
	// ErrNoTopic means neither the envelope nor the caller named a topic.
	ErrNoTopic = errors.New("codec: no topic")
	// ErrBadTopic means the topic has characters a Kafka topic or NATS token cannot hold.
	ErrBadTopic = errors.New("codec: invalid topic")
	// ErrBadEnvelope means the envelope's "topic" or "events" member has the
	// wrong type or is given twice, or the body is neither an object nor an
	// array.
	ErrBadEnvelope = errors.New("codec: invalid envelope")
)

// ItemError reports an event of a batch that Split refuses: it is not a JSON
// object, it holds invalid UTF-8 or a lone surrogate escape, or it gives one
// of the members the bridge routes by twice.
type ItemError struct {
	Index  int    // position in the events array, from 0
	Reason string // safe to show to the sender: it quotes none of the event's content
	// Err is the sentinel the problem also falls under, or nil: [ErrNotJSON]
	// for invalid UTF-8 and lone surrogates.
	Err error
}

func (e *ItemError) Error() string {
	return fmt.Sprintf("codec: events[%d]: %s", e.Index, e.Reason)
}

// Unwrap returns e.Err, so errors.Is(err, ErrNotJSON) holds for an event
// that is not valid JSON text.
func (e *ItemError) Unwrap() error { return e.Err }

// Batch is one webhook body split into its events. Each item of Events is
// the exact bytes the sender wrote for that event, never re-encoded, in
// memory of its own: the body may be reused once Split returns. The events
// of one batch share one allocation, each capped at its own length, so
// appending to one never overwrites another.
type Batch struct {
	Topic  string
	Events [][]byte

	// meta holds what Split read from each event, parallel to Events as
	// Split returned them; see [Batch.Event].
	meta []eventMeta
}

// eventMeta is what Split read from one event, and which event it was
// read from: Batch.Event trusts it only while Events[i] is still that event.
type eventMeta struct {
	meta
	first *byte
	n     int
}

// Event returns the CloudEvent of b.Events[i], exactly what
// Map(b.Topic, b.Events[i]) returns. When the batch comes from [Split] and
// b.Events[i] is still the slice Split returned, Event does not read the
// event's members again. It panics if i is out of range, as indexing does.
func (b *Batch) Event(i int) Event {
	m := b.metaAt(i)
	return newEvent(b.Topic, b.Events[i], &m)
}

// AppendEvents appends the CloudEvent of every event of b to dst, in
// order, and returns the extended slice: element i is exactly what
// b.Event(i) returns. It is the cheaper way to map a whole batch: one
// allocation holds the ids of all its events, every event shares one
// type string, and consecutive events of the same org and site share one
// source string.
func (b *Batch) AppendEvents(dst []Event) []Event {
	n := len(b.Events)
	if n == 0 {
		return dst
	}
	dst = slices.Grow(dst, n)
	first := len(dst)
	typ := TypePrefix + b.Topic
	var (
		ids            strings.Builder
		id             [idLen]byte
		org, site, src string
		haveSrc        bool
	)
	ids.Grow(n * idLen)
	for i, raw := range b.Events {
		m := b.metaAt(i)
		ev := eventOf(b.Topic, typ, raw, &m)
		if !haveSrc || ev.Org != org || ev.Site != site {
			org, site, src, haveSrc = ev.Org, ev.Site, source(ev.Org, ev.Site), true
		}
		ev.Source = src
		ids.Write(appendID(id[:0], b.Topic, raw))
		dst = append(dst, ev)
	}
	all := ids.String()
	for i := range n {
		dst[first+i].ID = all[i*idLen : (i+1)*idLen]
	}
	return dst
}

// metaAt is what Map reads from b.Events[i]: what Split read, while
// b.Events[i] is still the slice Split returned, else read again.
func (b *Batch) metaAt(i int) meta {
	raw := b.Events[i]
	if len(b.meta) == len(b.Events) && len(raw) > 0 {
		if m := &b.meta[i]; m.first == &raw[0] && m.n == len(raw) {
			return m.meta
		}
	}
	m, ok := readMeta(raw)
	if !ok {
		m = readMetaSlow(raw)
	}
	return m
}

// MaxTopicLen bounds a topic name so that it fits a Kafka topic (249 bytes)
// after the default template adds its prefix.
const MaxTopicLen = 200

// Split parses a webhook body in one pass, without re-encoding anything. It
// accepts three shapes:
//
//   - Mist's envelope {"topic": "...", "events": [{...}, ...]}: an object
//     with an "events" member;
//   - a bare JSON array of event objects;
//   - a bare JSON object, which is one event (a "topic" member in it is
//     event data).
//
// The envelope's member names match as encoding/json matches struct fields
// (case-insensitively, so "Events" is "events"); its other members are
// ignored. The topic is the envelope's "topic" when present and not null,
// else fallbackTopic.
//
// Split is stricter than encoding/json, because what it accepts is then read
// by consumers whose JSON parsers disagree on these cases:
//
//   - the whole body must be UTF-8 (RFC 8259, section 8.1) and every \u
//     escape a valid code point: invalid UTF-8 or a lone surrogate such as
//     "\ud800" anywhere fails, with an [*ItemError] (which also matches
//     [ErrNotJSON]) inside an element of the events array, else with
//     [ErrNotJSON];
//   - the envelope may not give "topic" or "events" twice (in any case):
//     [ErrBadEnvelope];
//   - an event may not give a member the bridge routes by ("org_id",
//     "orgid", "site_id", "siteid", "timestamp"; names match exactly) twice:
//     [*ItemError]. Other members of an event may repeat: the bridge does not
//     read them and forwards the event's bytes unchanged, so refusing them
//     would only lose events Mist sent.
//
// Split fails with [ErrNotJSON], [ErrBadEnvelope], [ErrNoTopic],
// [ErrBadTopic] (wrapped with the detail) or an [*ItemError] naming the first
// event that is refused. Syntax errors come first, then the envelope, then
// the topic, then the events. On error no event of the body is returned.
func Split(body []byte, fallbackTopic string) (Batch, error) {
	sp := splitPool.Get().(*splitter)
	defer sp.release()
	return sp.split(body, fallbackTopic)
}

// splitter is the reusable state of one Split call.
type splitter struct {
	buf   bytes.Buffer // aliases the body: jsontext reads a bytes.Buffer in place
	d     *jsontext.Decoder
	body  []byte
	spans []span
	metas []meta
	strs  []byte // unescaped org and site values of every event, in order
	name  []byte // scratch for unescaping a member name
}

// span is where an event lies in the body, and where its org and site
// values lie in splitter.strs.
type span struct {
	start, end                 int
	org, orgAlt, site, siteAlt [2]int
}

// Duplicate names and invalid UTF-8 are decided here, not by the decoder:
// it would refuse duplicates at every depth, and Split refuses only those
// that change how the bridge reads a body.
var splitOptions = []jsontext.Options{jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(false)}

var splitPool = sync.Pool{New: func() any {
	s := &splitter{}
	s.d = jsontext.NewDecoder(&s.buf, splitOptions...)
	return s
}}

func (s *splitter) release() {
	// Drop every reference to the body and to what was read from it.
	s.body = nil
	s.buf = bytes.Buffer{}
	s.d.Reset(&s.buf, splitOptions...)
	if cap(s.spans) > 1024 || cap(s.strs) > 64<<10 {
		return // do not let one huge batch pin its buffers
	}
	s.spans, s.metas, s.strs = s.spans[:0], s.metas[:0], s.strs[:0]
	splitPool.Put(s)
}

// Member name bits, for duplicate checks.
const (
	nameOrg = 1 << iota
	nameOrgAlt
	nameSite
	nameSiteAlt
	nameTimestamp
	nameTopic
	nameEvents
)

// envelope is what the pass learned about a top-level object.
type envelope struct {
	names     int    // nameTopic, nameEvents seen
	dup       string // first envelope name given twice
	topic     string // value of "topic" when a string
	hasTopic  bool
	topicKind jsontext.Kind // kind of a "topic" that is neither a string nor null
	eventsErr error         // "events" is not an array
	itemErr   error         // first refused element of "events"
}

func (s *splitter) split(body []byte, fallbackTopic string) (Batch, error) {
	s.body = body
	s.buf = *bytes.NewBuffer(body)
	s.d.Reset(&s.buf, splitOptions...)
	d := s.d

	var (
		env     envelope
		bare    bool  // a bare object: it is the one event
		bareErr error // why the bare object is refused, if it is
		itemErr error // first refused element of a bare array
	)
	switch k := d.PeekKind(); k {
	case 0:
		if _, err := d.ReadToken(); err == io.EOF {
			return Batch{}, fmt.Errorf("%w: the body is empty", ErrNotJSON)
		} else if err != nil {
			return Batch{}, s.syntaxError(err, -1)
		}
		return Batch{}, fmt.Errorf("%w: the body is not a JSON value", ErrNotJSON)
	case '{':
		var err error
		bare, bareErr, err = s.topObject(&env)
		if err != nil {
			return Batch{}, err
		}
	case '[':
		if _, err := d.ReadToken(); err != nil {
			return Batch{}, s.syntaxError(err, -1)
		}
		var err error
		if itemErr, err = s.items(); err != nil {
			return Batch{}, err
		}
	default:
		if err := d.SkipValue(); err != nil {
			return Batch{}, s.syntaxError(err, -1)
		}
		if err := s.end(); err != nil {
			return Batch{}, err
		}
		return Batch{}, fmt.Errorf("%w: want an object or an array, got %s", ErrBadEnvelope, kindName(k))
	}
	if err := s.end(); err != nil {
		return Batch{}, err
	}

	topic := fallbackTopic
	switch {
	case bare:
		itemErr = bareErr
	case env.names&nameEvents != 0:
		if env.dup != "" {
			return Batch{}, fmt.Errorf("%w: the envelope has %q twice", ErrBadEnvelope, env.dup)
		}
		if env.eventsErr != nil {
			return Batch{}, env.eventsErr
		}
		if env.topicKind != 0 {
			return Batch{}, fmt.Errorf("%w: \"topic\" must be a string, got %s", ErrBadEnvelope, kindName(env.topicKind))
		}
		if env.hasTopic {
			topic = env.topic
		}
		itemErr = env.itemErr
	}
	if topic == "" {
		return Batch{}, fmt.Errorf("%w: the body has no \"topic\" and none was given by the receiver or ?topic=", ErrNoTopic)
	}
	if err := ValidateTopic(topic); err != nil {
		return Batch{}, err
	}
	if itemErr != nil {
		return Batch{}, itemErr
	}
	return s.batch(topic), nil
}

// batch copies the events into one allocation and their org and site
// values into one string.
func (s *splitter) batch(topic string) Batch {
	total := 0
	for _, sp := range s.spans {
		total += sp.end - sp.start
	}
	data := make([]byte, 0, total)
	strs := string(s.strs)
	events := make([][]byte, len(s.spans))
	metas := make([]eventMeta, len(s.spans))
	sub := func(r [2]int) string { return strs[r[0]:r[1]] }
	for i, sp := range s.spans {
		at := len(data)
		data = append(data, s.body[sp.start:sp.end]...)
		ev := data[at:len(data):len(data)]
		events[i] = ev
		m := s.metas[i]
		m.org, m.orgAlt, m.site, m.siteAlt = sub(sp.org), sub(sp.orgAlt), sub(sp.site), sub(sp.siteAlt)
		metas[i] = eventMeta{meta: m, first: &ev[0], n: len(ev)}
	}
	return Batch{Topic: topic, Events: events, meta: metas}
}

// end checks that nothing follows the top-level value.
func (s *splitter) end() error {
	if s.d.PeekKind() == 0 {
		_, err := s.d.ReadToken()
		if err == io.EOF {
			return nil
		}
		return s.syntaxError(err, -1)
	}
	return fmt.Errorf("%w: more data after the top-level value at byte %d", ErrNotJSON, s.d.InputOffset())
}

// topObject reads a top-level object: an envelope, or a bare event. It
// reads every member once, keeping both readings until it knows which.
func (s *splitter) topObject(env *envelope) (bare bool, bareErr error, err error) {
	d := s.d
	if _, err := d.ReadToken(); err != nil {
		return false, nil, s.syntaxError(err, -1)
	}
	sp := span{start: int(d.InputOffset()) - 1}
	var m meta
	seen := 0
	for d.PeekKind() == '"' {
		name, err := d.ReadValue()
		if err != nil {
			return false, nil, s.syntaxError(err, -1)
		}
		if bit := envelopeName(name); bit != 0 {
			if err := s.envelopeMember(env, bit); err != nil {
				return false, nil, err
			}
			continue
		}
		bit, err := s.routingMember(name, &m, &sp, -1)
		if err != nil {
			return false, nil, err
		}
		if bit != 0 && seen&bit != 0 && bareErr == nil {
			bareErr = &ItemError{Index: 0, Reason: fmt.Sprintf("has %q twice", routingNames[bit])}
		}
		seen |= bit
	}
	if _, err := d.ReadToken(); err != nil {
		return false, nil, s.syntaxError(err, -1)
	}
	if env.names&nameEvents != 0 {
		return false, nil, nil
	}
	// A bare object: discard the spans of any "events" that was not one.
	sp.end = int(d.InputOffset())
	s.spans = append(s.spans[:0], sp)
	s.metas = append(s.metas[:0], m)
	return true, bareErr, nil
}

// envelopeMember reads the value of the envelope's "topic" or "events".
func (s *splitter) envelopeMember(env *envelope, bit int) error {
	d := s.d
	if env.names&bit != 0 && env.dup == "" {
		env.dup = envelopeNames[bit]
	}
	again := env.names&bit != 0
	env.names |= bit
	k := d.PeekKind()
	switch {
	case again:
		// Read the duplicate only to check its syntax: Split refuses it.
		if err := d.SkipValue(); err != nil {
			return s.syntaxError(err, -1)
		}
	case bit == nameTopic && k == '"':
		v, err := d.ReadValue()
		if err != nil {
			return s.syntaxError(err, -1)
		}
		env.topic, env.hasTopic = unquote(v), true
	case bit == nameEvents && k == '[':
		if _, err := d.ReadToken(); err != nil {
			return s.syntaxError(err, -1)
		}
		itemErr, err := s.items()
		if err != nil {
			return err
		}
		env.itemErr = itemErr
	default:
		if err := d.SkipValue(); err != nil {
			return s.syntaxError(err, -1)
		}
		switch {
		case bit == nameEvents:
			env.eventsErr = fmt.Errorf("%w: \"events\" must be an array, got %s", ErrBadEnvelope, kindName(k))
		case k != 'n': // "topic": null counts as absent
			env.topicKind = k
		}
	}
	return nil
}

// items reads the elements of an events array, its '[' already read,
// through its ']'. It returns the first element it refuses, having read
// (and checked the syntax of) the rest.
func (s *splitter) items() (itemErr error, err error) {
	d := s.d
	s.spans, s.metas, s.strs = s.spans[:0], s.metas[:0], s.strs[:0]
	for i := 0; ; i++ {
		k := d.PeekKind()
		if k == ']' || k == 0 {
			break
		}
		if k != '{' {
			if err := d.SkipValue(); err != nil {
				return nil, s.syntaxError(err, i)
			}
			if itemErr == nil {
				itemErr = &ItemError{Index: i, Reason: "must be a JSON object, got " + kindName(k)}
			}
			continue
		}
		if err := s.event(i, &itemErr); err != nil {
			return nil, err
		}
	}
	if _, err := d.ReadToken(); err != nil {
		return nil, s.syntaxError(err, -1)
	}
	return itemErr, nil
}

// event reads one event object of the events array, recording its span
// and the members the bridge routes by.
func (s *splitter) event(i int, itemErr *error) error {
	d := s.d
	if _, err := d.ReadToken(); err != nil {
		return s.syntaxError(err, i)
	}
	sp := span{start: int(d.InputOffset()) - 1}
	var m meta
	seen := 0
	for d.PeekKind() == '"' {
		name, err := d.ReadValue()
		if err != nil {
			return s.syntaxError(err, i)
		}
		bit, err := s.routingMember(name, &m, &sp, i)
		if err != nil {
			return err
		}
		if bit != 0 && seen&bit != 0 && *itemErr == nil {
			*itemErr = &ItemError{Index: i, Reason: fmt.Sprintf("has %q twice", routingNames[bit])}
		}
		seen |= bit
	}
	if _, err := d.ReadToken(); err != nil {
		return s.syntaxError(err, i)
	}
	sp.end = int(d.InputOffset())
	s.spans = append(s.spans, sp)
	s.metas = append(s.metas, m)
	return nil
}

// routingMember reads the value of the member called name (a quoted JSON
// string) in the object at events[index] (-1: the top level). For a member
// the bridge routes by it records the value in m and sp and returns its bit;
// it skips any other member.
func (s *splitter) routingMember(name jsontext.Value, m *meta, sp *span, index int) (int, error) {
	d := s.d
	bit := s.routingName(name)
	k := d.PeekKind()
	var dst *[2]int
	wanted := bit != 0 && (k == '"' || bit == nameTimestamp && k == '0')
	switch {
	case !wanted:
		// Not a member Map reads, or of a type it ignores (absent).
		if err := d.SkipValue(); err != nil {
			return 0, s.syntaxError(err, index)
		}
		return bit, nil
	case bit == nameTimestamp:
		v, err := d.ReadValue()
		if err != nil {
			return 0, s.syntaxError(err, index)
		}
		m.time = parseTimestamp(v)
		return bit, nil
	case bit == nameOrg:
		dst = &sp.org
	case bit == nameOrgAlt:
		dst = &sp.orgAlt
	case bit == nameSite:
		dst = &sp.site
	default:
		dst = &sp.siteAlt
	}
	v, err := d.ReadValue()
	if err != nil {
		return 0, s.syntaxError(err, index)
	}
	m.has |= bit
	at := len(s.strs)
	if bytes.IndexByte(v, '\\') < 0 {
		s.strs = append(s.strs, v[1:len(v)-1]...)
	} else {
		// The decoder has validated v: unquoting cannot fail.
		s.strs, _ = jsontext.AppendUnquote(s.strs, v)
	}
	*dst = [2]int{at, len(s.strs)}
	return bit, nil
}

var routingNames = map[int]string{nameOrg: "org_id", nameOrgAlt: "orgid", nameSite: "site_id", nameSiteAlt: "siteid", nameTimestamp: "timestamp"}

var envelopeNames = map[int]string{nameTopic: "topic", nameEvents: "events"}

// routingName is the bit of a member name Map reads (matched exactly,
// after unescaping), or 0.
func (s *splitter) routingName(name jsontext.Value) int {
	raw := name[1 : len(name)-1]
	if len(raw) > 9*6 { // "timestamp" with every letter escaped
		return 0
	}
	if bytes.IndexByte(raw, '\\') >= 0 {
		s.name, _ = jsontext.AppendUnquote(s.name[:0], name)
		raw = s.name
	}
	switch string(raw) {
	case "org_id":
		return nameOrg
	case "orgid":
		return nameOrgAlt
	case "site_id":
		return nameSite
	case "siteid":
		return nameSiteAlt
	case "timestamp":
		return nameTimestamp
	}
	return 0
}

// envelopeName is the bit of an envelope member name, matched as
// encoding/json matches a struct field's name (Unicode case folding), or 0.
func envelopeName(name jsontext.Value) int {
	raw := name[1 : len(name)-1]
	if len(raw) > 6*6 { // "events" with every letter escaped
		return 0
	}
	var s string
	if bytes.IndexByte(raw, '\\') >= 0 || !isASCII(raw) {
		u, _ := jsontext.AppendUnquote(nil, name)
		s = string(u)
	} else if len(raw) != 5 && len(raw) != 6 {
		return 0
	} else {
		s = string(raw)
	}
	switch {
	case strings.EqualFold(s, "topic"):
		return nameTopic
	case strings.EqualFold(s, "events"):
		return nameEvents
	}
	return 0
}

// unquote is the string a validated JSON string literal stands for.
func unquote(v jsontext.Value) string {
	if bytes.IndexByte(v, '\\') < 0 {
		return string(v[1 : len(v)-1])
	}
	u, _ := jsontext.AppendUnquote(nil, v)
	return string(u)
}

// syntaxError turns a decoder error into Split's: an [*ItemError] for
// invalid UTF-8 or a lone surrogate inside events[index] (index >= 0), else
// [ErrNotJSON]. The message quotes no content of the body.
func (s *splitter) syntaxError(err error, index int) error {
	var se *jsontext.SyntacticError
	if !errors.As(err, &se) {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return fmt.Errorf("%w: the body ends early", ErrNotJSON)
		}
		return fmt.Errorf("%w: %v", ErrNotJSON, err)
	}
	off := se.ByteOffset
	if se.Err == io.ErrUnexpectedEOF {
		return fmt.Errorf("%w: the body ends early, at byte %d", ErrNotJSON, len(s.body))
	}
	if reason := encodingProblem(s.body, off); reason != "" {
		if index >= 0 {
			return &ItemError{Index: index, Reason: reason, Err: ErrNotJSON}
		}
		return fmt.Errorf("%w: %s at byte %d", ErrNotJSON, reason, off)
	}
	return fmt.Errorf("%w: %v at byte %d", ErrNotJSON, se.Err, off)
}

// encodingProblem says what is wrong at body[off] when it is invalid UTF-8
// or a surrogate escape not part of a valid pair, else "".
func encodingProblem(body []byte, off int64) string {
	if off < 0 || off >= int64(len(body)) {
		return ""
	}
	b := body[off:]
	if len(b) >= 6 && b[0] == '\\' && b[1] == 'u' {
		r, ok := hex4(b[2:6])
		if !ok || !utf16.IsSurrogate(r) {
			return ""
		}
		kind := "lone surrogate"
		if len(b) >= 12 && b[6] == '\\' && b[7] == 'u' {
			if r2, ok := hex4(b[8:12]); ok && utf16.IsSurrogate(r2) {
				kind = "invalid surrogate pair"
			}
		}
		return kind + " " + string(b[:6]) // six ASCII bytes checked by hex4
	}
	if r, _ := utf8.DecodeRune(b); r == utf8.RuneError {
		return "invalid UTF-8 in a string"
	}
	return ""
}

func hex4(b []byte) (rune, bool) {
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// ValidateTopic reports whether topic can name a Kafka topic and a NATS
// subject token: 1 to [MaxTopicLen] ASCII letters, digits, '-' or '_'.
func ValidateTopic(topic string) error {
	if len(topic) == 0 || len(topic) > MaxTopicLen {
		return fmt.Errorf("%w: %q: want 1 to %d characters", ErrBadTopic, truncate(topic, 64), MaxTopicLen)
	}
	for i := 0; i < len(topic); i++ {
		if !isTokenByte(topic[i]) {
			return fmt.Errorf("%w: %q: only letters, digits, '-' and '_' are accepted", ErrBadTopic, truncate(topic, 64))
		}
	}
	return nil
}

func isTokenByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// kindName names a JSON value by the kind jsontext reports for it.
func kindName(k jsontext.Kind) string {
	switch k {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	case '0':
		return "a number"
	}
	return "nothing"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
