package codec

import (
	"context"
	"time"
)

// Compact is the oracle of the id's compaction: it appends raw to dst
// without the whitespace outside strings, one byte at a time. For valid
// JSON the result is exactly json.Compact's (FuzzCompact), and
// FuzzEventID holds the streaming hash behind ids to hashing its output.
func Compact(dst, raw []byte) []byte {
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

// MetaFields is what readMeta found, comparable across implementations.
type MetaFields struct {
	Org, OrgAlt, Site, SiteAlt string
	Has                        int
	Time                       time.Time
	OK                         bool
}

// ReadMeta runs the streaming reader; ReadMetaSlow the encoding/json one.
func ReadMeta(raw []byte) MetaFields {
	m, ok := readMeta(raw)
	return MetaFields{m.org, m.orgAlt, m.site, m.siteAlt, m.has, m.time, ok}
}

func ReadMetaSlow(raw []byte) MetaFields {
	m := readMetaSlow(raw)
	return MetaFields{m.org, m.orgAlt, m.site, m.siteAlt, m.has, m.time, true}
}

// EventID is the id of raw under topic, as Map computes it.
func EventID(topic string, raw []byte) string {
	var id [idLen]byte
	return string(appendID(id[:0], topic, raw))
}

// KafkaRecordSDK and NATSMessageSDK are the binary-mode encodings through
// the CloudEvents SDK's binding writer: the oracle of the direct writers.
func KafkaRecordSDK(ctx context.Context, e *Event) ([]Header, []byte, error) {
	return kafkaRecordSDK(ctx, e, Binary)
}

func NATSMessageSDK(ctx context.Context, e *Event) (map[string][]string, []byte, error) {
	return natsMessageSDK(ctx, e, Binary)
}
