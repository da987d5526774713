package codec

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
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
)

// Event is one webhook event with its CloudEvent attributes. Data holds the
// exact bytes the sender wrote for the event; treat it as read-only.
type Event struct {
	ID     string    // deterministic: see [Map]
	Type   string    // TypePrefix + Topic
	Source string    // "/mist/orgs/<org>/sites/<site>", parts omitted when unknown
	Time   time.Time // zero when the event has no usable timestamp
	Topic  string    // the webhook topic, e.g. "device-events"
	Org    string    // org_id or orgid; may be empty
	Site   string    // site_id or siteid; may be empty
	Data   []byte
}

// PartitionKey is the key that keeps a site's events in order: the site id,
// else the org id, else the topic.
func (e *Event) PartitionKey() string {
	switch {
	case e.Site != "":
		return e.Site
	case e.Org != "":
		return e.Org
	default:
		return e.Topic
	}
}

// Size is the number of bytes the event holds in memory, for admission.
func (e *Event) Size() int { return len(e.Data) + len(e.ID) + len(e.Source) + len(e.Type) + 64 }

// compactPool holds buffers for compacting an event before hashing it.
var compactPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// Map builds the CloudEvent attributes of one event. raw must be a JSON
// object (as [Split] returns); Map never fails on its content:
//
//   - org is "org_id", else "orgid"; site is "site_id", else "siteid"
//     (names match exactly; a member of another type counts as absent);
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
	ev := Event{
		Type:  TypePrefix + topic,
		Topic: topic,
		Org:   cmp.Or(m.org, m.orgAlt),
		Site:  cmp.Or(m.site, m.siteAlt),
		Time:  m.time,
		Data:  raw,
	}
	ev.Source = source(ev.Org, ev.Site)
	ev.ID = eventID(topic, raw)
	return ev
}

func eventID(topic string, raw []byte) string {
	bp := compactPool.Get().(*[]byte)
	c := compact((*bp)[:0], raw)
	h := sha256.New()
	h.Write([]byte(topic))
	h.Write([]byte{0})
	h.Write(c)
	if cap(c) <= 64<<10 { // do not let one huge event pin its buffer
		*bp = c[:0]
		compactPool.Put(bp)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	// Shape it as an RFC 9562 version 8 (custom) UUID so consumers that
	// expect a UUID accept it.
	sum[6] = sum[6]&0x0f | 0x80
	sum[8] = sum[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], sum[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], sum[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], sum[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], sum[8:10])
	out[23] = '-'
	hex.Encode(out[24:36], sum[10:16])
	return string(out[:])
}

// compact appends raw to dst without the whitespace outside strings. For
// valid JSON (what Split returns) the result is exactly json.Compact's, in
// one cheap pass; FuzzCompact holds it to that.
func compact(dst, raw []byte) []byte {
	inString, escaped := false, false
	for _, c := range raw {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			continue
		case c == '"':
			inString = true
		}
		dst = append(dst, c)
	}
	return dst
}

func source(org, site string) string {
	var b strings.Builder
	b.WriteString("/mist")
	if org != "" {
		b.WriteString("/orgs/")
		b.WriteString(pathEscape(org))
	}
	if site != "" {
		b.WriteString("/sites/")
		b.WriteString(pathEscape(site))
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
	if len(v) == 0 {
		return time.Time{}
	}
	s := string(v)
	if v[0] == '"' {
		if json.Unmarshal(v, &s) != nil {
			return time.Time{}
		}
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
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
