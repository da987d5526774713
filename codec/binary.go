package codec

import (
	"math/bits"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// The binary-mode writers below write an event's headers straight from its
// fields. They reproduce, value for value, what the CloudEvents SDK's
// binding (binding.EventMessage.ReadBinary into headerWriter) writes for
// Event.CloudEvent(), without building the SDK event, its extension map or
// a boxed value per attribute. FuzzBinaryHeaders and TestBinaryHeadersMatchSDK
// hold them to the SDK, which stays the structured-mode path.

// Binary-mode attributes, in the order the writers emit them: the SDK's
// attribute order (id, source, specversion, type, datacontenttype, time;
// dataschema and subject are never set), then the extensions by name.
const (
	attrID = iota
	attrSource
	attrSpecVersion
	attrType
	attrContentType
	attrTime
	attrOrg
	attrSite
	attrTopic
	attrPartitionKey
	attrTraceParent
	attrTraceState
	numAttrs
)

var kafkaKeys = [numAttrs]string{
	KafkaPrefix + "id", KafkaPrefix + "source", KafkaPrefix + "specversion", KafkaPrefix + "type",
	ContentTypeHeader, KafkaPrefix + "time",
	KafkaPrefix + ExtOrg, KafkaPrefix + ExtSite, KafkaPrefix + ExtTopic, KafkaPrefix + ExtPartitionKey,
	KafkaPrefix + ExtTraceParent, KafkaPrefix + ExtTraceState,
}

var natsKeys = [numAttrs]string{
	NATSPrefix + "id", NATSPrefix + "source", NATSPrefix + "specversion", NATSPrefix + "type",
	ContentTypeHeader, NATSPrefix + "time",
	NATSPrefix + ExtOrg, NATSPrefix + ExtSite, NATSPrefix + ExtTopic, NATSPrefix + ExtPartitionKey,
	NATSPrefix + ExtTraceParent, NATSPrefix + ExtTraceState,
}

// natsHeaderRoom sizes the map NATSMessage returns: its headers plus three
// more (the NATS sink adds Nats-Msg-Id, and two headers to a dead letter),
// so adding them does not grow the map.
const natsHeaderRoom = numAttrs + 3

// binaryAttrs are an event's binary-mode header values as the SDK formats
// them, before percent-encoding. Bit i of set tells whether the SDK writes
// attribute i at all. The time is formatted by each writer into its own
// memory.
type binaryAttrs struct {
	val  [numAttrs]string
	set  uint16
	time time.Time
}

func (a *binaryAttrs) read(e *Event) {
	// The SDK trims the id and the type, and treats a blank one as missing
	// (EventContextV1.SetID, SetType; spec's aStr.Get).
	a.put(attrID, strings.TrimSpace(e.ID))
	a.put(attrSource, sourceAttr(e.Source))
	a.put(attrSpecVersion, event.CloudEventsVersionV1)
	a.put(attrType, strings.TrimSpace(e.Type))
	a.put(attrContentType, event.ApplicationJSON)
	if !e.Time.IsZero() {
		a.time = e.Time
		a.set |= 1 << attrTime
	}
	// Extensions are written even when empty: see Event.CloudEvent.
	var org, site string
	if e.Org != "" {
		org = BoundValue(e.Org)
		a.always(attrOrg, org)
	}
	if e.Site != "" {
		site = BoundValue(e.Site)
		a.always(attrSite, site)
	}
	a.always(attrTopic, e.Topic)
	switch { // e.PartitionKey(), reusing the bounded values
	case site != "":
		a.always(attrPartitionKey, site)
	case org != "":
		a.always(attrPartitionKey, org)
	default:
		a.always(attrPartitionKey, BoundValue(e.Topic))
	}
	// The distributed-tracing extension, only when the request was traced.
	if e.TraceParent != "" {
		a.always(attrTraceParent, e.TraceParent)
		if e.TraceState != "" {
			a.always(attrTraceState, e.TraceState)
		}
	}
}

// put records an attribute the SDK leaves out when blank.
func (a *binaryAttrs) put(i int, v string) {
	if v != "" {
		a.val[i] = v
		a.set |= 1 << i
	}
}

// always records an extension, which the SDK writes whatever its value.
func (a *binaryAttrs) always(i int, v string) {
	a.val[i] = v
	a.set |= 1 << i
}

func (a *binaryAttrs) has(i int) bool { return a.set&(1<<i) != 0 }

// appendTime appends the time as the SDK formats it (types.FormatTime).
func (a *binaryAttrs) appendTime(dst []byte) []byte {
	return a.time.UTC().AppendFormat(dst, time.RFC3339Nano)
}

// sourceAttr is the source as the SDK writes it: parsed as a URI reference
// (EventContextV1.SetSource) and printed again, or "" when it does not
// parse. A plain path, which every source [Map] builds is, prints as it is.
func sourceAttr(s string) string {
	if isPlainPath(s) {
		return s
	}
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	return u.String()
}

// isPlainPath reports whether s is an absolute path (not "//", which
// starts an authority) of letters, digits, '-', '_', '.', '~', '/' and
// %XX escapes. url.Parse keeps such a path as it is written (in RawPath
// when it has escapes) and URL.String prints it back unchanged.
func isPlainPath(s string) bool {
	if len(s) == 0 || s[0] != '/' || len(s) > 1 && s[1] == '/' {
		return false
	}
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case plainPathByte[c]:
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			i += 2
		default:
			return false
		}
	}
	return true
}

// plainPathByte tells the bytes isPlainPath takes as they are: letters,
// digits, '-', '_', '.', '~' and '/'.
var plainPathByte = func() (t [256]bool) {
	for c := range 256 {
		t[c] = isTokenByte(byte(c)) || c == '.' || c == '~' || c == '/'
	}
	return t
}()

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// AppendKafkaHeaders appends e's binary-mode Kafka headers to hs and
// their values to buf, and returns both: the headers [KafkaRecord] returns
// in binary mode, without an allocation when hs and buf have room (a
// record has at most 10 headers; see [KafkaRecord] for their order). Every
// value of one call lies in one array; values of earlier calls stay valid
// when buf grows, as they keep the array they were written to. It is for a
// caller that encodes many records into memory of its own.
func AppendKafkaHeaders(hs []Header, buf []byte, e *Event) ([]Header, []byte) {
	var a binaryAttrs
	a.read(e)
	var tbuf [64]byte
	var tm []byte
	if a.has(attrTime) {
		tm = a.appendTime(tbuf[:0])
	}
	size := len(tm)
	for i := range numAttrs {
		if a.has(i) {
			size += len(a.val[i])
		}
	}
	// Grown once, so no append below moves what this call's headers
	// point to.
	buf = slices.Grow(buf, size)
	hs = slices.Grow(hs, bits.OnesCount16(a.set))
	for i := range numAttrs {
		if !a.has(i) {
			continue
		}
		at := len(buf)
		if i == attrTime {
			buf = append(buf, tm...)
		} else {
			buf = append(buf, a.val[i]...)
		}
		hs = append(hs, Header{Key: kafkaKeys[i], Value: buf[at:len(buf):len(buf)]})
	}
	return hs, buf
}

// AppendNATSHeaders sets e's binary-mode NATS headers in h and returns vals
// with their values appended: the headers [NATSMessage] returns in binary
// mode, in a map the caller provides. Each h[name] is a slice of vals of
// length and capacity 1, so appending to it copies. Values that need no
// percent-encoding are e's own strings; a call allocates only the time's
// text, and vals's growth when it has no room. Values of earlier calls stay
// valid when vals grows. Existing entries of h with other names are left
// as they are.
func AppendNATSHeaders(h map[string][]string, vals []string, e *Event) []string {
	var slots [NATSHeaderSlots]string
	set, _ := PutNATSHeaders(&slots, e)
	vals = slices.Grow(vals, bits.OnesCount16(set))
	for i := range numAttrs {
		if set&(1<<i) != 0 {
			vals = append(vals, slots[i])
			h[natsKeys[i]] = vals[len(vals)-1 : len(vals) : len(vals)]
		}
	}
	return vals
}

// NATSHeaderSlots is the number of binary-mode NATS headers an event can
// have: the length of the array [PutNATSHeaders] fills.
const NATSHeaderSlots = numAttrs

// NATSHeaderName is the name of the header whose value [PutNATSHeaders]
// writes in slot i, 0 <= i < [NATSHeaderSlots].
func NATSHeaderName(i int) string { return natsKeys[i] }

// PutNATSHeaders writes e's binary-mode NATS headers into vals, the value
// of header [NATSHeaderName](i) in vals[i]: the headers and values
// [NATSMessage] returns in binary mode (it and [AppendNATSHeaders] are
// built on this), percent-encoded as the SDK's binding does. Bit i of set
// tells whether e has header i; vals[i] is "" when it has not. size is the
// headers' length in the NATS wire format, without the "NATS/1.0\r\n"
// line and the final "\r\n": len(name) + len(": ") + len(value) +
// len("\r\n") summed over the headers e has. It is for a caller that
// keeps a header map pointing at vals, and so need not touch the map for
// an event whose headers are those of the last one; a call allocates
// only the time's text.
func PutNATSHeaders(vals *[NATSHeaderSlots]string, e *Event) (set uint16, size int) {
	var a binaryAttrs
	a.read(e)
	for i := range numAttrs {
		if !a.has(i) {
			vals[i] = ""
			continue
		}
		var v string
		switch i {
		case attrTime:
			// RFC 3339 text has no byte to percent-encode.
			var tbuf [64]byte
			v = string(a.appendTime(tbuf[:0]))
		case attrSpecVersion, attrContentType:
			v = a.val[i] // constants with no byte to percent-encode
		case attrPartitionKey:
			// The site's or the org's bounded id (the very string),
			// whose encoding is done, else the topic's.
			switch p := a.val[i]; {
			case a.has(attrSite) && p == a.val[attrSite]:
				v = vals[attrSite]
			case a.has(attrOrg) && p == a.val[attrOrg]:
				v = vals[attrOrg]
			default:
				v = natsValue(p)
			}
		default:
			v = natsValue(a.val[i])
		}
		vals[i] = v
		size += len(natsKeys[i]) + len(v) + 4
	}
	return a.set, size
}

// natsValue is percentEncode(s), testing 8 bytes at a time for a byte to
// encode: the last 8 bytes of s make the last word, which overlaps the
// one before it when len(s) is not a multiple of 8.
func natsValue(s string) string {
	if len(s) < 8 {
		return percentEncode(s)
	}
	for t := s; ; t = t[8:] {
		if len(t) < 8 {
			t = s[len(s)-8:]
		}
		if needsPercent8(word(t[:8])) {
			return percentSlow(s)
		}
		if len(t) == 8 {
			return s
		}
	}
}

// word is the 8 bytes of w, little-endian: one load.
func word(w string) uint64 {
	_ = w[7]
	return uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
		uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
}

// needsPercent8 reports whether any of the 8 bytes of x needsPercent: one
// below 0x21, one above 0x7e, a '"' or a '%'. The tests for a byte below
// n (hasless) and for a zero byte (haszero) are exact: a borrow only ever
// flags a byte above one that matches.
func needsPercent8(x uint64) bool {
	const (
		ones = 0x0101010101010101
		high = 0x8080808080808080
	)
	ctl := (x - 0x21*ones) &^ x // a byte < 0x21 (or >= 0x80, caught below)
	hi := x | (x + ones)        // a byte >= 0x7f sets its high bit here
	q := x ^ ('"' * ones)       // a zero byte where x has '"'
	p := x ^ ('%' * ones)       // a zero byte where x has '%'
	quote := (q - ones) &^ q
	pct := (p - ones) &^ p
	return (ctl|hi|quote|pct)&high != 0
}
