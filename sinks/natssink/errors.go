package natssink

import (
	"errors"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mistbridge/mistbridge/sinks"
)

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
