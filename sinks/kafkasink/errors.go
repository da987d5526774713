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

// produceError wraps the error of one record sent to topic.
func produceError(topic string, err error) error {
	return classify(fmt.Errorf("kafkasink: produce to %s: %w", topic, err))
}
