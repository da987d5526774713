package codec

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/binding/format"
	"github.com/cloudevents/sdk-go/v2/binding/spec"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
)

// Mode is a CloudEvents content mode.
type Mode int

const (
	// Binary puts the attributes in headers and the event's bytes, unchanged,
	// in the message body. It is the default.
	Binary Mode = iota
	// Structured puts the whole CloudEvent, data included, in a JSON body
	// (application/cloudevents+json).
	Structured
)

// ParseMode parses "binary" or "structured".
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "binary", "":
		return Binary, nil
	case "structured":
		return Structured, nil
	}
	return 0, fmt.Errorf("codec: unknown content mode %q: want binary or structured", s)
}

func (m Mode) String() string {
	if m == Structured {
		return "structured"
	}
	return "binary"
}

// Header is one protocol header, as Kafka carries them.
type Header struct {
	Key   string
	Value []byte
}

// Header name prefixes of the CloudEvents Kafka and NATS bindings. Names are
// lowercase: Kafka and NATS headers are case-sensitive and the CloudEvents
// SDKs read lowercase names.
const (
	KafkaPrefix       = "ce_"
	NATSPrefix        = "ce-"
	ContentTypeHeader = "content-type"
)

// CloudEvent returns e as a CloudEvents SDK event whose data is e.Data, not
// a copy or a re-encoding.
func (e *Event) CloudEvent() event.Event {
	ce := event.New(event.CloudEventsVersionV1)
	ce.SetID(e.ID)
	ce.SetType(e.Type)
	ce.SetSource(e.Source)
	if !e.Time.IsZero() {
		ce.SetTime(e.Time)
	}
	ce.SetDataContentType(event.ApplicationJSON)
	ce.DataEncoded = e.Data
	// Extension names are constants that satisfy the spec and every value is
	// a string, so SetExtension records no field error here.
	// An empty id is left out, as a missing one; a long one is bounded
	// (see BoundValue).
	if e.Org != "" {
		ce.SetExtension(ExtOrg, BoundValue(e.Org))
	}
	if e.Site != "" {
		ce.SetExtension(ExtSite, BoundValue(e.Site))
	}
	ce.SetExtension(ExtTopic, e.Topic)
	ce.SetExtension(ExtPartitionKey, e.PartitionKey())
	if e.TraceParent != "" {
		ce.SetExtension(ExtTraceParent, e.TraceParent)
		if e.TraceState != "" {
			ce.SetExtension(ExtTraceState, e.TraceState)
		}
	}
	return ce
}

// KafkaRecord encodes e in the CloudEvents Kafka protocol binding: in binary
// mode the attributes become ce_ headers plus content-type and the value is
// e.Data itself (shared, not copied); in structured mode the value is the
// JSON event format. The record key is e.PartitionKey().
//
// Binary mode writes the headers straight from e's fields, byte for byte
// what the CloudEvents SDK's binding writes (a differential test holds it
// to the SDK), in the order id, source, specversion, type, content-type,
// time, mistorg, mistsite, misttopic, partitionkey, absent ones left out.
// The order is fixed but is not part of the contract: the SDK itself
// writes extensions in map order, and readers look headers up by name.
// The header values of one record share one allocation the caller owns.
// Binary mode never fails; structured mode fails only if the SDK cannot
// encode the event.
func KafkaRecord(ctx context.Context, e *Event, mode Mode) ([]Header, []byte, error) {
	if mode == Binary {
		hs, _ := AppendKafkaHeaders(nil, nil, e)
		return hs, e.Data, nil
	}
	return kafkaRecordSDK(ctx, e, mode)
}

// NATSMessage encodes e in the CloudEvents NATS protocol binding: binary mode
// writes ce- headers with percent-encoded values and content-type, and the
// body is e.Data itself (shared, not copied); structured mode writes the JSON
// event format. The returned map converts directly to nats.Header; it is
// the caller's, with room for a few more headers (Nats-Msg-Id, the
// dead-letter headers) before it grows.
//
// Binary mode writes the headers straight from e's fields, as
// [KafkaRecord] does: the same names after the ce- prefix and the same
// values, percent-encoded, as the CloudEvents SDK's binding would write.
// Each value slice has length and capacity 1. Binary mode never fails.
func NATSMessage(ctx context.Context, e *Event, mode Mode) (map[string][]string, []byte, error) {
	if mode == Binary {
		h := make(map[string][]string, natsHeaderRoom)
		AppendNATSHeaders(h, nil, e)
		return h, e.Data, nil
	}
	return natsMessageSDK(ctx, e, mode)
}

// kafkaRecordSDK is KafkaRecord through the CloudEvents SDK's binding
// writer: the structured-mode path, and the oracle of the binary one.
func kafkaRecordSDK(ctx context.Context, e *Event, mode Mode) ([]Header, []byte, error) {
	w := &headerWriter{prefix: KafkaPrefix, data: e.Data}
	if err := write(ctx, e, mode, w); err != nil {
		return nil, nil, fmt.Errorf("codec: kafka binding: %w", err)
	}
	return w.headers, w.data, nil
}

// natsMessageSDK is NATSMessage through the CloudEvents SDK's binding
// writer: the structured-mode path, and the oracle of the binary one.
func natsMessageSDK(ctx context.Context, e *Event, mode Mode) (map[string][]string, []byte, error) {
	w := &headerWriter{prefix: NATSPrefix, data: e.Data, percent: true}
	if err := write(ctx, e, mode, w); err != nil {
		return nil, nil, fmt.Errorf("codec: nats binding: %w", err)
	}
	h := make(map[string][]string, len(w.headers))
	for _, kv := range w.headers {
		h[kv.Key] = []string{string(kv.Value)}
	}
	return h, w.data, nil
}

func write(ctx context.Context, e *Event, mode Mode, w *headerWriter) error {
	ce := e.CloudEvent()
	msg := (*binding.EventMessage)(&ce)
	if mode == Structured {
		return msg.ReadStructured(ctx, w)
	}
	return msg.ReadBinary(ctx, w)
}

// headerWriter is a binding.BinaryWriter and binding.StructuredWriter that
// collects headers in a slice, in the order the SDK visits attributes.
type headerWriter struct {
	prefix  string
	percent bool
	headers []Header
	data    []byte
}

func (w *headerWriter) Start(context.Context) error {
	w.headers = make([]Header, 0, 10)
	return nil
}

func (w *headerWriter) End(context.Context) error { return nil }

// SetData ignores the reader: it yields the same bytes as Event.Data, which
// the writer already holds, and reading it would only copy them.
func (w *headerWriter) SetData(io.Reader) error { return nil }

func (w *headerWriter) SetAttribute(attr spec.Attribute, value any) error {
	if attr.Kind() == spec.DataContentType {
		return w.set(ContentTypeHeader, value)
	}
	return w.set(w.prefix+attr.Name(), value)
}

func (w *headerWriter) SetExtension(name string, value any) error {
	return w.set(w.prefix+name, value)
}

func (w *headerWriter) set(key string, value any) error {
	if value == nil {
		return nil
	}
	s, err := types.Format(value)
	if err != nil {
		return err
	}
	if w.percent {
		s = percentEncode(s)
	}
	w.headers = append(w.headers, Header{Key: key, Value: []byte(s)})
	return nil
}

func (w *headerWriter) SetStructuredEvent(_ context.Context, f format.Format, r io.Reader) error {
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(r); err != nil {
		return err
	}
	w.headers = []Header{{Key: ContentTypeHeader, Value: []byte(f.MediaType())}}
	w.data = buf.Bytes()
	return nil
}

// percentEncode applies the CloudEvents HTTP/NATS header rule: bytes outside
// printable ASCII, space, '"' and '%' are percent-encoded (UTF-8 octets).
func percentEncode(s string) string {
	for i := 0; i < len(s); i++ {
		if needsPercent(s[i]) {
			return percentSlow(s)
		}
	}
	return s
}

func needsPercent(c byte) bool { return c <= ' ' || c >= 0x7f || c == '"' || c == '%' }

func percentSlow(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !needsPercent(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte("0123456789ABCDEF"[c>>4])
		b.WriteByte("0123456789ABCDEF"[c&15])
	}
	return b.String()
}
