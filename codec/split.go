package codec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Sentinel errors returned (wrapped) by [Split]. Each maps to a 4xx answer.
var (
	// ErrNotJSON means the body is not one well-formed JSON value.
	ErrNotJSON = errors.New("codec: body is not valid JSON")
	// ErrNoTopic means neither the envelope nor the caller named a topic.
	ErrNoTopic = errors.New("codec: no topic")
	// ErrBadTopic means the topic has characters a Kafka topic or NATS token cannot hold.
	ErrBadTopic = errors.New("codec: invalid topic")
	// ErrBadEnvelope means the envelope's "topic" or "events" member has the wrong type.
	ErrBadEnvelope = errors.New("codec: invalid envelope")
)

// ItemError reports an item of a batch that is not a JSON object.
type ItemError struct {
	Index  int    // position in the events array, from 0
	Reason string // safe to show to the sender
}

func (e *ItemError) Error() string {
	return fmt.Sprintf("codec: events[%d]: %s", e.Index, e.Reason)
}

// Batch is one webhook body split into its events. Each item of Events is
// the exact bytes the sender wrote for that event, never re-encoded, in
// memory of its own: the body may be reused once Split returns.
type Batch struct {
	Topic  string
	Events [][]byte
}

// MaxTopicLen bounds a topic name so that it fits a Kafka topic (249 bytes)
// after the default template adds its prefix.
const MaxTopicLen = 200

// Split parses a webhook body. It accepts three shapes:
//
//   - Mist's envelope {"topic": "...", "events": [{...}, ...]}: an object
//     with an "events" member;
//   - a bare JSON array of event objects;
//   - a bare JSON object, which is one event.
//
// The topic is the envelope's "topic" when present, else fallbackTopic.
// Split fails with [ErrNotJSON], [ErrNoTopic], [ErrBadTopic], [ErrBadEnvelope]
// (wrapped with the detail) or an [*ItemError] naming the first event that is
// not a JSON object. On error no event of the body is returned.
func Split(body []byte, fallbackTopic string) (Batch, error) {
	trimmed := trimJSONSpace(body)
	if len(trimmed) == 0 {
		return Batch{}, fmt.Errorf("%w: the body is empty", ErrNotJSON)
	}
	var (
		topic = fallbackTopic
		items []json.RawMessage
	)
	switch trimmed[0] {
	case '{':
		// One pass for the common case: the envelope with its events array.
		var env struct {
			Topic  json.RawMessage   `json:"topic"`
			Events []json.RawMessage `json:"events"`
		}
		if err := json.Unmarshal(trimmed, &env); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) && te.Field == "events" {
				return Batch{}, fmt.Errorf("%w: \"events\" must be an array, got %s", ErrBadEnvelope, article(te.Value))
			}
			return Batch{}, fmt.Errorf("%w: %v", ErrNotJSON, err)
		}
		if env.Events == nil {
			// No "events" array: either a bare object, which is one event
			// (its own "topic" member, if any, is event data), or
			// "events": null. Telling them apart needs a second look, but
			// only for these rare bodies.
			var probe struct {
				Events json.RawMessage `json:"events"`
			}
			_ = json.Unmarshal(trimmed, &probe) // valid JSON: cannot fail
			if probe.Events != nil {
				return Batch{}, fmt.Errorf("%w: \"events\" must be an array, got %s", ErrBadEnvelope, kindOf(probe.Events))
			}
			// Clone it: no returned event aliases body.
			items = []json.RawMessage{bytes.Clone(trimmed)}
			break
		}
		if len(env.Topic) > 0 && string(env.Topic) != "null" {
			if err := json.Unmarshal(env.Topic, &topic); err != nil {
				return Batch{}, fmt.Errorf("%w: \"topic\" must be a string, got %s", ErrBadEnvelope, kindOf(env.Topic))
			}
		}
		items = env.Events
	case '[':
		if err := json.Unmarshal(trimmed, &items); err != nil {
			return Batch{}, fmt.Errorf("%w: %v", ErrNotJSON, err)
		}
	default:
		if !json.Valid(trimmed) {
			return Batch{}, fmt.Errorf("%w: %s", ErrNotJSON, describeJSONError(trimmed))
		}
		return Batch{}, fmt.Errorf("%w: want an object or an array, got %s", ErrBadEnvelope, kindOf(trimmed))
	}
	if topic == "" {
		return Batch{}, fmt.Errorf("%w: the body has no \"topic\" and none was given by the receiver or ?topic=", ErrNoTopic)
	}
	if err := ValidateTopic(topic); err != nil {
		return Batch{}, err
	}
	events := make([][]byte, len(items))
	for i, it := range items {
		if len(it) == 0 || it[0] != '{' {
			return Batch{}, &ItemError{Index: i, Reason: "must be a JSON object, got " + kindOf(it)}
		}
		events[i] = it
	}
	return Batch{Topic: topic, Events: events}, nil
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

// trimJSONSpace trims the four whitespace bytes JSON allows; bytes.TrimSpace
// would also drop others (form feed, U+0085) and so accept invalid JSON.
func trimJSONSpace(b []byte) []byte {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// article turns encoding/json's type names ("object", "string") into the
// words kindOf uses.
func article(jsonType string) string {
	switch jsonType {
	case "object", "array":
		return "an " + jsonType
	case "null":
		return "null"
	case "bool":
		return "a boolean"
	case "number", "string":
		return "a " + jsonType
	}
	return "a " + jsonType
}

func kindOf(v []byte) string {
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
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
	default:
		return "a number"
	}
}

func describeJSONError(b []byte) string {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err.Error()
	}
	return "malformed"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
