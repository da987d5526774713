package kafkasink

import (
	"errors"
	"fmt"

	"github.com/segmentio/kafka-go"

	"github.com/mistbridge/mistbridge/sinks"
)

// permanentCodes are the Kafka error codes that sending the same record
// again cannot fix: the record, the topic name or the client's rights or
// settings are wrong. Every other code, and every error that is not a Kafka
// error code (a refused connection, a timeout, a leader election, a topic
// still being created), is transient.
var permanentCodes = map[kafka.Error]bool{
	kafka.InvalidMessageSize:                 true,
	kafka.MessageSizeTooLarge:                true,
	kafka.InvalidTopic:                       true,
	kafka.RecordListTooLarge:                 true,
	kafka.InvalidRequiredAcks:                true,
	kafka.TopicAuthorizationFailed:           true,
	kafka.ClusterAuthorizationFailed:         true,
	kafka.TransactionalIDAuthorizationFailed: true,
	kafka.BrokerAuthorizationFailed:          true,
	kafka.InvalidTimestamp:                   true,
	kafka.UnsupportedSASLMechanism:           true,
	kafka.IllegalSASLState:                   true,
	kafka.SASLAuthenticationFailed:           true,
	kafka.UnsupportedVersion:                 true,
	kafka.InvalidRequest:                     true,
	kafka.UnsupportedForMessageFormat:        true,
	kafka.PolicyViolation:                    true,
	kafka.SecurityDisabled:                   true,
	kafka.UnsupportedCompressionType:         true,
	kafka.InvalidRecord:                      true,
}

// classify marks err [sinks.Permanent] when it carries a Kafka error code
// that retrying cannot fix, and returns it unchanged otherwise.
func classify(err error) error {
	var code kafka.Error
	if errors.As(err, &code) && permanentCodes[code] {
		return sinks.Permanent(err)
	}
	return err
}

// isSizeError reports whether the broker refused a whole record batch for
// its size. The batch may hold several records that fit one by one.
func isSizeError(err error) bool {
	return errors.Is(err, kafka.MessageSizeTooLarge) || errors.Is(err, kafka.RecordListTooLarge)
}

// produceError wraps the error of the record of event id sent to topic.
func produceError(id, topic string, err error) error {
	return classify(fmt.Errorf("kafkasink: event %s: produce to %s: %w", id, topic, err))
}

// maxTopicLen is Kafka's limit on a topic name.
const maxTopicLen = 249

// checkTopic applies Kafka's rule for topic names (1 to 249 characters of
// [a-zA-Z0-9._-], not "." or ".."), which the brokers enforce when they
// create a topic and kfake does not. The error wraps kafka.InvalidTopic.
func checkTopic(topic string) error {
	switch {
	case topic == "" || topic == "." || topic == "..":
		return fmt.Errorf("topic %q: %w", topic, kafka.InvalidTopic)
	case len(topic) > maxTopicLen:
		return fmt.Errorf("topic %.40q... of %d characters, over Kafka's %d: %w", topic, len(topic), maxTopicLen, kafka.InvalidTopic)
	}
	for i := 0; i < len(topic); i++ {
		c := topic[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("topic %q has %q: a Kafka topic accepts letters, digits, '.', '_' and '-': %w", topic, c, kafka.InvalidTopic)
		}
	}
	return nil
}
