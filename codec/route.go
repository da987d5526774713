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

// Subject is the NATS subject of e: "<prefix>.<topic>.<org>.<site>". The
// topic is written as is when [ValidateTopic] accepts it (as it does every
// topic [Split] returns), else encoded as an org is; the org and site are
// [SubjectToken]s, "_" standing for a missing one. So
// "mist.device-events.*.<site>" and "mist.*.<org>.>" select what they say,
// and no event can add a token, a wildcard or a space to a subject, or make
// it longer than len(prefix) + 1 + [MaxTopicLen] + 2 * (1 + [MaxTokenLen]).
func Subject(prefix string, e *Event) string {
	var b strings.Builder
	b.Grow(len(prefix) + len(e.Topic) + 2*MaxTokenLen + 3)
	b.WriteString(prefix)
	b.WriteByte('.')
	if ValidateTopic(e.Topic) == nil {
		b.WriteString(e.Topic)
	} else {
		writeToken(&b, e.Topic, e.Topic != "")
	}
	b.WriteByte('.')
	writeToken(&b, e.Org, e.Org != "" || e.OrgSet)
	b.WriteByte('.')
	writeToken(&b, e.Site, e.Site != "" || e.SiteSet)
	return b.String()
}

// Limits of the subject token encoding; see [SubjectToken].
const (
	// MaxCleanTokenLen is the longest value a token carries verbatim.
	MaxCleanTokenLen = 64
	// tokenPrefixLen is how many bytes of an encoded value stay readable.
	tokenPrefixLen = 24
	// maxEncodedTokenLen bounds an encoded token:
	// "_" + 24 bytes + "_" + 12 characters of hash.
	maxEncodedTokenLen = 1 + tokenPrefixLen + 1 + hashLen
	// MaxTokenLen bounds every token SubjectToken returns: a clean value
	// of up to 64 bytes, or an encoded one of up to 38.
	MaxTokenLen = max(MaxCleanTokenLen, maxEncodedTokenLen)
)

// SubjectToken is how an org or site id appears as a NATS subject token.
// present is false when the event has no such id (see [Event.OrgSet]).
//
//   - A missing value is "_".
//   - A clean value, 1 to 64 bytes of ASCII letters, digits, '-' and '_'
//     not starting with '_', is the token as is (so Mist's UUIDs are).
//   - Any other value (empty, longer than 64 bytes, starting with '_', or
//     with any other byte) is encoded: "_", then its first 24 bytes with
//     every byte other than ASCII letters, digits, '-' and '_' replaced by
//     '-', then "_", then the first 12 characters of the lowercase, unpadded
//     base32 (RFC 4648 alphabet: a-z, 2-7) of the SHA-256 of the exact
//     value. The empty value is "__" followed by that hash.
//
// A token is never empty, is at most [MaxTokenLen] (64) bytes (an encoded
// one at most 38), and holds
// only ASCII letters, digits, '-' and '_' (never '.', '*', '>' or
// whitespace). Distinct values give distinct tokens (short of a SHA-256
// collision in 60 bits): a clean value never starts with '_', an encoded one
// always does and ends with the hash of the value, and "_" alone means
// missing.
func SubjectToken(value string, present bool) string {
	var b strings.Builder
	writeToken(&b, value, present)
	return b.String()
}

func writeToken(b *strings.Builder, s string, present bool) {
	switch {
	case !present:
		b.WriteByte('_')
	case isCleanToken(s):
		b.WriteString(s)
	default:
		b.WriteByte('_')
		for i := 0; i < len(s) && i < tokenPrefixLen; i++ {
			if c := s[i]; isTokenByte(c) {
				b.WriteByte(c)
			} else {
				b.WriteByte('-')
			}
		}
		b.WriteByte('_')
		writeHash(b, s)
	}
}

func isCleanToken(s string) bool {
	if len(s) == 0 || len(s) > MaxCleanTokenLen || s[0] == '_' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenByte(s[i]) {
			return false
		}
	}
	return true
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
