package codec

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// TypePrefix is prepended to the webhook topic to form the CloudEvent type.
const TypePrefix = "com.juniper.mist."

// Extension attribute names. CloudEvents allows lowercase alphanumerics, at
// most 20 characters; the "mist" prefix keeps them clear of other conventions.
const (
	ExtOrg          = "mistorg"
	ExtSite         = "mistsite"
	ExtTopic        = "misttopic"
	ExtPartitionKey = "partitionkey"
	// ExtTraceParent and ExtTraceState are the CloudEvents
	// distributed-tracing extension: the W3C trace context of the webhook
	// request that carried the event, so a consumer can join its trace.
	ExtTraceParent = "traceparent"
	ExtTraceState  = "tracestate"
)

// Event is one webhook event with its CloudEvent attributes. Data holds the
// exact bytes the sender wrote for the event; treat it as read-only.
//
// Org and Site are the ids exactly as the event gives them, of any length;
// everything that carries them out of the bridge (the Kafka record key,
// headers, source, NATS subject) bounds them: see [Event.PartitionKey],
// [BoundValue] and [SubjectToken].
type Event struct {
	ID     string    // deterministic: see [Map]
	Type   string    // TypePrefix + Topic
	Source string    // "/mist/orgs/<org>/sites/<site>", parts omitted when unknown or empty
	Time   time.Time // zero when the event has no usable timestamp
	Topic  string    // the webhook topic, e.g. "device-events"
	Org    string    // org_id, else orgid; "" when missing or empty
	Site   string    // site_id, else siteid; "" when missing or empty
	// OrgSet and SiteSet tell an id given as "" from a missing one: they
	// are true when the event has the member as a JSON string, even an
	// empty one. A non-empty Org or Site counts as given whatever these
	// say, so an Event built by hand needs them only for an empty id.
	OrgSet, SiteSet bool
	Data            []byte
	// TraceParent and TraceState are the W3C trace context of the request
	// that carried the event (the distributed-tracing extension), set by
	// the bridge only when it traces; "" otherwise. They are not part of
	// the id.
	TraceParent, TraceState string
}

// PartitionKey is the Kafka record key, which keeps a site's events in
// order: the site id, else the org id, else the topic (the first that is
// not empty), passed through [BoundValue]. So an id of up to
// [MaxValueLen] bytes is the key exactly as the event gives it.
func (e *Event) PartitionKey() string {
	switch {
	case e.Site != "":
		return BoundValue(e.Site)
	case e.Org != "":
		return BoundValue(e.Org)
	default:
		return BoundValue(e.Topic)
	}
}

// MaxValueLen is the longest org or site id that the Kafka record key, the
// mistorg, mistsite and partitionkey extensions and the source carry
// verbatim; see [BoundValue].
const MaxValueLen = 256

// BoundValue is how an org or site id (or topic) appears in the Kafka
// record key and in the mistorg, mistsite, partitionkey and source
// attributes, so that no event can make them arbitrarily long:
//
//   - a value of at most [MaxValueLen] (256) bytes is returned unchanged;
//   - a longer value becomes its first 256 bytes, cut back to the start of a
//     UTF-8 sequence (253 to 256 bytes), then "~", then the first 12
//     characters of the lowercase, unpadded base32 (RFC 4648 alphabet) of
//     the SHA-256 of the whole value: 266 to 269 bytes.
//
// Distinct values give distinct results (short of a SHA-256 collision in
// 60 bits): a result of at most 256 bytes is the value itself, and a longer
// one ends with the hash of the value. BoundValue does not escape anything:
// the NATS binding percent-encodes header values (control characters
// included), and Kafka header values and keys are bytes.
func BoundValue(s string) string {
	if len(s) <= MaxValueLen {
		return s
	}
	cut := MaxValueLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	var b strings.Builder
	b.Grow(cut + 1 + hashLen)
	b.WriteString(s[:cut])
	b.WriteByte('~')
	writeHash(&b, s)
	return b.String()
}

// hashLen is the length of the hash that [BoundValue] and [SubjectToken]
// append: 12 base32 characters, 60 bits.
const hashLen = 12

var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// writeHash writes the first hashLen characters of the lowercase base32 of
// the SHA-256 of s.
func writeHash(b *strings.Builder, s string) {
	sum := sha256.Sum256([]byte(s))
	var enc [8]byte // 5 bytes of hash make 8 base32 characters
	lowerBase32.Encode(enc[:], sum[0:5])
	b.Write(enc[:])
	lowerBase32.Encode(enc[:], sum[5:10])
	b.Write(enc[:hashLen-8])
}

// Size is the number of bytes the event holds in memory, for admission.
func (e *Event) Size() int { return len(e.Data) + len(e.ID) + len(e.Source) + len(e.Type) + 64 }

// Map builds the CloudEvent attributes of one event. raw must be a JSON
// object (as [Split] returns); Map never fails on its content:
//
//   - org is "org_id", else "orgid"; site is "site_id", else "siteid"
//     (names match exactly; "else" means when the first is missing or "";
//     a member of another type than string counts as missing; OrgSet and
//     SiteSet tell "" from missing; a member given twice counts with its
//     last value, though [Split] refuses such an event);
//   - time is "timestamp" in seconds (a number or a numeric string, fractions
//     kept); values above 1e11 are taken as milliseconds; 0, negatives and
//     anything else leave Time zero;
//   - id is a UUID-shaped SHA-256 of the topic and the event's compacted
//     bytes, so the same event re-sent gets the same id whatever its
//     whitespace, and an alarm update (same "id" member, new content) does not.
func Map(topic string, raw []byte) Event {
	m, ok := readMeta(raw)
	if !ok {
		m = readMetaSlow(raw)
	}
	return newEvent(topic, raw, &m)
}

// newEvent builds the event of raw from what was read from it.
func newEvent(topic string, raw []byte, m *meta) Event {
	var id [idLen]byte
	ev := eventOf(topic, TypePrefix+topic, raw, m)
	ev.Source = source(ev.Org, ev.Site)
	ev.ID = string(appendID(id[:0], topic, raw))
	return ev
}

// eventOf is the event of raw without its Source and ID.
func eventOf(topic, typ string, raw []byte, m *meta) Event {
	return Event{
		Type:    typ,
		Topic:   topic,
		Org:     cmp.Or(m.org, m.orgAlt),
		Site:    cmp.Or(m.site, m.siteAlt),
		OrgSet:  m.has&(nameOrg|nameOrgAlt) != 0,
		SiteSet: m.has&(nameSite|nameSiteAlt) != 0,
		Time:    m.time,
		Data:    raw,
	}
}

// idLen is the length of an event id: a UUID in its 36-character form.
const idLen = 36

// appendID appends the id of raw under topic to dst: the SHA-256 of the
// topic, a zero byte and raw without the whitespace (space, tab, CR, LF)
// outside strings, shaped as a UUID. For valid JSON the bytes hashed are
// exactly json.Compact's output, but they are never built: each run
// between two stretches of whitespace goes to the hash as it lies in raw,
// so a compact event (as Mist and most senders write them) is hashed in
// one call, with no copy. A string runs from a '"' to the next '"' not
// preceded by an odd number of backslashes (or to the end of raw): the
// reading of a byte-by-byte scan in which a backslash escapes the next
// byte, for any input, valid JSON or not. FuzzEventID holds it to hashing
// the compacted copy.
func appendID(dst []byte, topic string, raw []byte) []byte {
	// The loop stays in this function so that every call on h is
	// devirtualized and the digest lives on the stack.
	h := sha256.New()
	h.Write([]byte(topic))
	h.Write([]byte{0})
	start := 0 // of the run not yet hashed
	for i := 0; i < len(raw); {
		switch raw[i] {
		case '"':
			i = stringEnd(raw, i)
		case ' ', '\t', '\n', '\r':
			if start < i {
				h.Write(raw[start:i])
			}
			i++
			start = i
		default:
			i++
		}
	}
	if start < len(raw) {
		h.Write(raw[start:])
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	// Shape it as an RFC 9562 version 8 (custom) UUID so consumers that
	// expect a UUID accept it.
	sum[6] = sum[6]&0x0f | 0x80
	sum[8] = sum[8]&0x3f | 0x80
	var out [idLen]byte
	hex.Encode(out[0:8], sum[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], sum[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], sum[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], sum[8:10])
	out[23] = '-'
	hex.Encode(out[24:36], sum[10:16])
	return append(dst, out[:]...)
}

// stringEnd returns the index just past the string that opens at raw[open]
// (a '"'), or len(raw) when it is not closed.
func stringEnd(raw []byte, open int) int {
	j := open + 1
	for {
		k := bytes.IndexByte(raw[j:], '"')
		if k < 0 {
			return len(raw)
		}
		j += k
		n := 0 // backslashes right before the quote
		for p := j - 1; p > open && raw[p] == '\\'; p-- {
			n++
		}
		j++
		if n%2 == 0 {
			return j
		}
	}
}

// source is the CloudEvent source: each id passed through [BoundValue],
// then percent-encoded as a URI path segment (bytes other than letters,
// digits, '-', '_', '.' and '~' become %XX), so it is at most about 1.6 KB.
func source(org, site string) string {
	if org != "" {
		org = pathEscape(BoundValue(org))
	}
	if site != "" {
		site = pathEscape(BoundValue(site))
	}
	var b strings.Builder
	b.Grow(len("/mist/orgs/") + len(org) + len("/sites/") + len(site))
	b.WriteString("/mist")
	if org != "" {
		b.WriteString("/orgs/")
		b.WriteString(org)
	}
	if site != "" {
		b.WriteString("/sites/")
		b.WriteString(site)
	}
	return b.String()
}

func pathEscape(s string) string {
	for i := 0; i < len(s); i++ {
		if !isTokenByte(s[i]) {
			return escapeSlow(s)
		}
	}
	return s
}

func escapeSlow(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isTokenByte(c) || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte("0123456789ABCDEF"[c>>4])
		b.WriteByte("0123456789ABCDEF"[c&15])
	}
	return b.String()
}

func parseTimestamp(v []byte) time.Time {
	switch {
	case len(v) == 0:
		return time.Time{}
	case v[0] != '"':
		return secondsTime(v)
	case len(v) >= 2 && v[len(v)-1] == '"' && bytes.IndexByte(v, '\\') < 0:
		return secondsTime(v[1 : len(v)-1]) // the common case: nothing to unescape
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return time.Time{}
	}
	return secondsTime([]byte(s))
}

// secondsTime is the time of a number of seconds (or milliseconds, see
// [Map]) written in b, or the zero time.
func secondsTime(b []byte) time.Time {
	// The string does not escape: one of up to 32 bytes (any timestamp
	// Mist sends) is converted on the stack.
	f, err := strconv.ParseFloat(string(bytes.TrimSpace(b)), 64)
	if err != nil || f <= 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return time.Time{}
	}
	if f > 1e11 { // milliseconds: 1e11 seconds is the year 5138
		f /= 1000
	}
	if f > 253402300799 { // past 9999-12-31: not representable in RFC 3339
		return time.Time{}
	}
	sec, frac := math.Modf(f)
	// Round to microseconds: Mist sends at most six decimals, and float64
	// noise below that would make the same timestamp print differently.
	usec := math.Round(frac * 1e6)
	return time.Unix(int64(sec), int64(usec)*1e3).UTC()
}
