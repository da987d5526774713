package kafkasink

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mistbridge/mistbridge/sinks"
)

// permanentCodes are the Kafka error codes that sending the same record
// again cannot fix: the record, the topic name or the client's rights or
// settings are wrong. Every other code, and every error that is not a Kafka
// error code (a refused connection, a timeout, a leader election, a topic
// still being created), is transient.
var permanentCodes = map[int16]bool{
	kerr.InvalidFetchSize.Code:                   true, // INVALID_MESSAGE_SIZE before Kafka 0.11
	kerr.MessageTooLarge.Code:                    true,
	kerr.InvalidTopicException.Code:              true,
	kerr.RecordListTooLarge.Code:                 true,
	kerr.InvalidRequiredAcks.Code:                true,
	kerr.TopicAuthorizationFailed.Code:           true,
	kerr.ClusterAuthorizationFailed.Code:         true,
	kerr.TransactionalIDAuthorizationFailed.Code: true,
	kerr.InvalidTimestamp.Code:                   true,
	kerr.UnsupportedSaslMechanism.Code:           true,
	kerr.IllegalSaslState.Code:                   true,
	kerr.SaslAuthenticationFailed.Code:           true,
	kerr.UnsupportedVersion.Code:                 true,
	kerr.InvalidRequest.Code:                     true,
	kerr.UnsupportedForMessageFormat.Code:        true,
	kerr.PolicyViolation.Code:                    true,
	kerr.SecurityDisabled.Code:                   true,
	kerr.UnsupportedCompressionType.Code:         true,
	kerr.InvalidRecord.Code:                      true,
}

// classify marks err [sinks.Permanent] when it carries a Kafka error code
// that retrying cannot fix, and returns it unchanged otherwise.
func classify(err error) error {
	var ke *kerr.Error
	if errors.As(err, &ke) && permanentCodes[ke.Code] {
		return sinks.Permanent(err)
	}
	return err
}

// isBatchRefusal reports whether the brokers may have refused a whole
// record batch for the sake of one of its records: the batch is too large,
// or a record of it is invalid. The producer then fails every record the
// partition had buffered, so a record that fails so may be innocent; sent
// alone, it is written or refused for what it is.
func isBatchRefusal(err error) bool {
	return errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) ||
		errors.Is(err, kerr.InvalidRecord) || errors.Is(err, kerr.InvalidTimestamp)
}

// errCancelledAhead is the transient error of a record that failed because
// a record of another call ahead of it on the partition was cancelled:
// franz-go then fails what the partition has buffered, to keep its order.
var errCancelledAhead = errors.New("kafkasink: not written: a cancelled write ahead of it on the partition failed it")

// recordError is the error of a record of a call whose ctx is ctx, as the
// producer reported it. A context error the call did not cause (its own
// ctx is not done) is another call's, and says so; a closed client means
// the sink gave up on it in Close.
func recordError(ctx context.Context, err error) error {
	switch {
	case (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) && ctx.Err() == nil:
		return fmt.Errorf("%w (%v)", errCancelledAhead, err)
	case errors.Is(err, kgo.ErrClientClosed):
		return fmt.Errorf("closed before the brokers answered: %w", sinks.ErrClosed)
	}
	return err
}

// produceError wraps the error of the record of event id sent to topic.
func produceError(id, topic string, err error) error {
	return classify(fmt.Errorf("kafkasink: event %s: produce to %s: %w", id, topic, err))
}

// maxTopicLen is Kafka's limit on a topic name.
const maxTopicLen = 249

// checkTopic applies Kafka's rule for topic names (1 to 249 characters of
// [a-zA-Z0-9._-], not "." or ".."), which the brokers enforce when they
// create a topic and kfake does not. The error wraps
// kerr.InvalidTopicException.
func checkTopic(topic string) error {
	switch {
	case topic == "" || topic == "." || topic == "..":
		return fmt.Errorf("topic %q: %w", topic, kerr.InvalidTopicException)
	case len(topic) > maxTopicLen:
		return fmt.Errorf("topic %.40q... of %d characters, over Kafka's %d: %w", topic, len(topic), maxTopicLen, kerr.InvalidTopicException)
	}
	for i := 0; i < len(topic); i++ {
		c := topic[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("topic %q has %q: a Kafka topic accepts letters, digits, '.', '_' and '-': %w", topic, c, kerr.InvalidTopicException)
		}
	}
	return nil
}
