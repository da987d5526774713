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
		case isTokenByte(c) || c == '.' || c == '~' || c == '/':
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			i += 2
		default:
			return false
		}
	}
	return true
}

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
	var a binaryAttrs
	a.read(e)
	vals = slices.Grow(vals, bits.OnesCount16(a.set))
	for i := range numAttrs {
		if !a.has(i) {
			continue
		}
		v := a.val[i]
		if i == attrTime {
			var tbuf [64]byte
			v = string(a.appendTime(tbuf[:0]))
		}
		vals = append(vals, percentEncode(v))
		h[natsKeys[i]] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	return vals
}
