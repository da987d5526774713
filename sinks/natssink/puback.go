package natssink

import (
	"encoding/json"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ackError returns nil when m is a PubAck, or why the stream did not store
// the message, as nats.go's jetstream package reads a reply (see its
// handleAsyncReply): an empty reply with the status 503 means no stream
// captures the subject ([jetstream.ErrNoStreamResponse]); a JetStream API
// error is returned as its *[jetstream.APIError]; anything else that is
// not a PubAck naming its stream is [jetstream.ErrInvalidJSAck].
func ackError(m *nats.Msg) error {
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
		return jetstream.ErrNoStreamResponse
	}
	return parsePubAck(m.Data)
}

// parsePubAck reads a PubAck as [ackError] does. The PubAcks nats-server
// sends ({"stream":"MIST","seq":123}, maybe with "duplicate":true and
// "domain") are read by hand, without allocating; everything else (an
// error, escapes, keys it does not know) by encoding/json, which decides
// as nats.go does. FuzzParsePubAck holds the two to the same answers.
func parsePubAck(data []byte) error {
	if stream, ok := scanPubAck(data); ok {
		if !stream {
			return jetstream.ErrInvalidJSAck
		}
		return nil
	}
	return decodePubAck(data)
}

// decodePubAck is parsePubAck with encoding/json, as nats.go decodes a
// PubAck.
func decodePubAck(data []byte) error {
	var r struct {
		Error *jetstream.APIError `json:"error,omitempty"`
		*jetstream.PubAck
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return jetstream.ErrInvalidJSAck
	}
	if r.Error != nil {
		return r.Error
	}
	if r.PubAck == nil || r.Stream == "" {
		return jetstream.ErrInvalidJSAck
	}
	return nil
}

// scanPubAck reads data when it is a JSON object whose keys are all
// "stream", "seq", "duplicate", "domain" or "val", each with a value of
// its type that needs no unescaping (or null), and reports whether the
// last "stream" is a non-empty string. For any other input ok is false.
func scanPubAck(data []byte) (stream, ok bool) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false, false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return false, skipSpace(data, i+1) == len(data)
	}
	for {
		ka, kb, j, ok := scanString(data, i)
		if !ok {
			return false, false
		}
		i = skipSpace(data, j)
		if i >= len(data) || data[i] != ':' {
			return false, false
		}
		i = skipSpace(data, i+1)
		switch key := string(data[ka:kb]); key {
		case "stream", "domain", "val":
			var a, b int
			if a, b, j, ok = scanString(data, i); !ok {
				if j, ok = scanLiteral(data, i, "null"); !ok {
					return false, false
				}
			}
			if key == "stream" {
				stream = b > a
			}
		case "seq":
			if j, ok = scanUint(data, i); !ok {
				if j, ok = scanLiteral(data, i, "null"); !ok {
					return false, false
				}
			}
		case "duplicate":
			if j, ok = scanLiteral(data, i, "true"); !ok {
				if j, ok = scanLiteral(data, i, "false"); !ok {
					if j, ok = scanLiteral(data, i, "null"); !ok {
						return false, false
					}
				}
			}
		default:
			return false, false
		}
		i = skipSpace(data, j)
		if i >= len(data) {
			return false, false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			return stream, skipSpace(data, i+1) == len(data)
		default:
			return false, false
		}
	}
}

func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString reads a JSON string at data[i] that has no escape, no
// control character and only ASCII: its content is data[a:b], and next
// the index after it.
func scanString(data []byte, i int) (a, b, next int, ok bool) {
	if i >= len(data) || data[i] != '"' {
		return 0, 0, i, false
	}
	for j := i + 1; j < len(data); j++ {
		switch c := data[j]; {
		case c == '"':
			return i + 1, j, j + 1, true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return 0, 0, i, false
		}
	}
	return 0, 0, i, false
}

// scanUint reads a JSON number at data[i] that fits a uint64 for sure: no
// sign, fraction or exponent, no leading zero, at most 19 digits.
func scanUint(data []byte, i int) (int, bool) {
	j := i
	for j < len(data) && data[j] >= '0' && data[j] <= '9' {
		j++
	}
	n := j - i
	if n == 0 || n > 19 || n > 1 && data[i] == '0' {
		return i, false
	}
	if j < len(data) {
		switch data[j] {
		case '.', 'e', 'E':
			return i, false
		}
	}
	return j, true
}

func scanLiteral(data []byte, i int, lit string) (int, bool) {
	if len(data)-i >= len(lit) && string(data[i:i+len(lit)]) == lit {
		return i + len(lit), true
	}
	return i, false
}
