package natssink

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mistbridge/mistbridge/sinks"
)

// MaxSubjectLen is the longest subject, in bytes, the sink publishes to.
//
// nats-server closes a client's connection, rather than refusing one
// message, when a protocol line is longer than its max_control_line (4096
// bytes by default). A publish's line holds the subject, a reply inbox
// (JetStream: about 50 bytes, longer with a custom inbox prefix) and two
// sizes, so the subject must stay well under the limit. 1024 leaves that
// margin, still fits a server whose max_control_line was lowered to 2048,
// and is far above any subject the codec builds from real Mist ids. A
// longer subject gets a permanent [ErrSubjectTooLong] for its message.
const MaxSubjectLen = 1024

var (
	// ErrSubjectTooLong is wrapped by the permanent error of a message
	// whose subject is longer than [MaxSubjectLen].
	ErrSubjectTooLong = errors.New("natssink: subject too long")

	// ErrInvalidSubject is wrapped by the permanent error of a message
	// whose subject nats-server would refuse or misread as a publish
	// subject: empty, an empty token, whitespace or control characters, or
	// a wildcard ('*', '>').
	ErrInvalidSubject = errors.New("natssink: invalid subject")
)

// subjectShown is how much of a refused subject an error quotes: enough
// to recognise it, never kilobytes.
const subjectShown = 64

// checkMessage refuses, before it reaches the wire, a message that
// nats-server would refuse: its subject fails [checkSubject], or its size
// with headers is over maxPayload (the server's max_payload, from its INFO;
// 0 before the first connection, when it is not checked). The size error
// wraps nats.ErrMaxPayload.
func checkMessage(msg *nats.Msg, maxPayload int64) error {
	return checkSized(msg.Subject, len(msg.Data)+headerLen(msg.Header), maxPayload)
}

// checkSized is checkMessage of a message to subject whose data and
// headers (in the wire format: see headerLen) are size bytes.
func checkSized(subject string, size int, maxPayload int64) error {
	if err := checkSubject(subject); err != nil {
		return err
	}
	if n := int64(size); maxPayload > 0 && n > maxPayload {
		return fmt.Errorf("%w: the message is %d bytes with its headers, over the server's max_payload of %d",
			nats.ErrMaxPayload, n, maxPayload)
	}
	return nil
}

// checkSubject reports why subject cannot be published to, or nil.
func checkSubject(subject string) error {
	if len(subject) > MaxSubjectLen {
		return fmt.Errorf("%w: %d bytes (%s...), over the limit of %d", ErrSubjectTooLong,
			len(subject), subject[:subjectShown], MaxSubjectLen)
	}
	if subject == "" {
		return fmt.Errorf("%w: empty", ErrInvalidSubject)
	}
	for i := 0; i < len(subject); i++ {
		switch c := subject[i]; {
		case c <= ' ' || c == 0x7f:
			return fmt.Errorf("%w: %q has whitespace or a control character at byte %d", ErrInvalidSubject, shorten(subject), i)
		case c == '*' || c == '>':
			return fmt.Errorf("%w: %q has the wildcard %q at byte %d", ErrInvalidSubject, shorten(subject), c, i)
		case c == '.' && (i == 0 || i == len(subject)-1 || subject[i-1] == '.'):
			return fmt.Errorf("%w: %q has an empty token", ErrInvalidSubject, shorten(subject))
		}
	}
	return nil
}

func shorten(s string) string {
	if len(s) > subjectShown {
		return s[:subjectShown] + "..."
	}
	return s
}

// headerLen is the size of h in the NATS wire format ("NATS/1.0\r\n",
// "key: value\r\n" per value, "\r\n"), which nats.go and nats-server
// count against max_payload with the data. An empty h is sent as no header.
func headerLen(h nats.Header) int {
	if len(h) == 0 {
		return 0
	}
	n := len("NATS/1.0\r\n") + 2
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + 2 + len(v) + 2
		}
	}
	return n
}

// permanentJSCodes are the JetStream API error codes of a PubAck that
// publishing the same message again cannot fix.
var permanentJSCodes = map[jetstream.ErrorCode]bool{
	jetstream.JSErrCodeStreamMessageExceedsMaximum: true, // 10054: larger than the stream's max_msg_size
	10097: true, // header size exceeds maximum allowed of 64k
	10109: true, // invalid operation on sealed stream
	10157: true, // pedantic mode
}

// classify marks err [sinks.Permanent] when publishing the same message
// again cannot succeed: the payload is over the server's max_payload or the
// stream's limit, the subject is invalid, the account may not publish
// there. Everything else (no responders while a stream leader is elected,
// a timeout, a disconnection, a full stream) is transient.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, nats.ErrMaxPayload),
		errors.Is(err, nats.ErrBadSubject),
		errors.Is(err, ErrSubjectTooLong),
		errors.Is(err, ErrInvalidSubject),
		errors.Is(err, jetstream.ErrInvalidSubject),
		errors.Is(err, nats.ErrPermissionViolation),
		errors.Is(err, nats.ErrAuthorization),
		errors.Is(err, nats.ErrAuthExpired),
		errors.Is(err, nats.ErrAuthRevoked),
		errors.Is(err, nats.ErrAccountAuthExpired):
		return sinks.Permanent(err)
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && permanentJSCodes[apiErr.ErrorCode] {
		return sinks.Permanent(err)
	}
	return err
}
