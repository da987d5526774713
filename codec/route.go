package codec

import (
	"fmt"
	"strings"
)

// TopicPlaceholder is replaced by the webhook topic in a Kafka topic template.
const TopicPlaceholder = "{topic}"

// KafkaTopic expands template for the webhook topic, e.g. "mist.{topic}"
// and "device-events" give "mist.device-events".
func KafkaTopic(template, topic string) string {
	return strings.ReplaceAll(template, TopicPlaceholder, topic)
}

// ValidateKafkaTopicTemplate checks that template yields legal Kafka topic
// names: it must contain {topic}, and everything else must be letters,
// digits, '.', '_' or '-'.
func ValidateKafkaTopicTemplate(template string) error {
	if !strings.Contains(template, TopicPlaceholder) {
		return fmt.Errorf("%q does not contain %s", template, TopicPlaceholder)
	}
	rest := strings.ReplaceAll(template, TopicPlaceholder, "")
	for i := 0; i < len(rest); i++ {
		if c := rest[i]; !isTokenByte(c) && c != '.' {
			return fmt.Errorf("%q has %q: a Kafka topic accepts only letters, digits, '.', '_' and '-'", template, c)
		}
	}
	if len(rest)+MaxTopicLen > 249 {
		return fmt.Errorf("%q is too long: a Kafka topic has at most 249 characters and a webhook topic up to %d", template, MaxTopicLen)
	}
	return nil
}

// Subject is the NATS subject of e: "<prefix>.<topic>.<org>.<site>", each
// token sanitised (characters other than letters, digits, '-' and '_'
// become '_') and "_" standing for an unknown org or site. So
// "mist.device-events.*.<site>" and "mist.*.<org>.>" select what they say.
func Subject(prefix string, e *Event) string {
	var b strings.Builder
	b.Grow(len(prefix) + len(e.Topic) + len(e.Org) + len(e.Site) + 3)
	b.WriteString(prefix)
	for _, tok := range [...]string{e.Topic, e.Org, e.Site} {
		b.WriteByte('.')
		writeToken(&b, tok)
	}
	return b.String()
}

func writeToken(b *strings.Builder, s string) {
	if s == "" {
		b.WriteByte('_')
		return
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; isTokenByte(c) {
			b.WriteByte(c)
		} else {
			b.WriteByte('_')
		}
	}
}

// ValidateSubjectPrefix checks a NATS subject prefix: one or more tokens of
// letters, digits, '-' and '_', separated by '.'.
func ValidateSubjectPrefix(prefix string) error {
	if prefix == "" {
		return fmt.Errorf("the prefix is empty")
	}
	for _, tok := range strings.Split(prefix, ".") {
		if tok == "" {
			return fmt.Errorf("%q has an empty token", prefix)
		}
		for i := 0; i < len(tok); i++ {
			if !isTokenByte(tok[i]) {
				return fmt.Errorf("%q has %q: tokens accept only letters, digits, '-' and '_'", prefix, tok[i])
			}
		}
	}
	return nil
}
