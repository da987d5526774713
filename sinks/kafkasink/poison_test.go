package kafkasink

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/mistbridge/mistbridge/codec"
	"github.com/mistbridge/mistbridge/sinks"
)

// Poison records fail alone and permanently, and leave the writer working:
// a topic name Kafka cannot hold (over 249 characters, or with a character
// outside [a-zA-Z0-9._-]), a record over the brokers' message.max.bytes,
// and an event with a 5,000-character site id (its key) that still fits.
func TestPoisonRecordsFailAlone(t *testing.T) {
	long := &codec.Event{ID: "poison-topic", Topic: strings.Repeat("t", 300), Site: "s1", Data: []byte(`{}`)}
	bad := &codec.Event{ID: "poison-char", Topic: "bad/topic", Site: "s1", Data: []byte(`{}`)}
	huge := codec.Map("device-events", []byte(`{"site_id":"s1","pad":"`+strings.Repeat("x", maxMessageBytes+1024)+`"}`))
	bigSite := codec.Map("device-events", []byte(`{"org_id":"o","site_id":"`+strings.Repeat("s", 5000)+`","timestamp":1}`))
	for _, tc := range []struct {
		name      string
		poison    *codec.Event
		permanent bool // false: the poison is no poison for Kafka and lands
		is        error
	}{
		{"topic-over-249", long, true, kerr.InvalidTopicException},
		{"topic-bad-char", bad, true, kerr.InvalidTopicException},
		{"over-message-max-bytes", &huge, true, kerr.MessageTooLarge},
		{"site-5000", &bigSite, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := startKafka(t)
			s := newSink(t, Config{Brokers: b.addrs, AutoCreateTopics: true, WriteTimeout: 5 * time.Second, BatchTimeout: 20 * time.Millisecond})
			good := events(3, "good")
			batch := []*codec.Event{good[0], tc.poison, good[1], good[2]}
			start := time.Now()
			err := s.Write(testCtx(t), batch)
			if d := time.Since(start); d > 8*time.Second {
				t.Errorf("Write took %v", d)
			}
			if !tc.permanent {
				if err != nil {
					t.Fatalf("Write = %v, want nil", err)
				}
			} else {
				var werrs sinks.WriteErrors
				if !errors.As(err, &werrs) || len(werrs) != len(batch) {
					t.Fatalf("Write = %v (%T), want a WriteErrors of %d", err, err, len(batch))
				}
				if werrs[0] != nil || werrs[2] != nil || werrs[3] != nil {
					t.Errorf("the good events failed: %v", werrs)
				}
				if !sinks.IsPermanent(werrs[1]) || !errors.Is(werrs[1], tc.is) || !strings.Contains(werrs[1].Error(), tc.poison.ID) {
					t.Errorf("poison: %v, want permanent, %v, naming event %s", werrs[1], tc.is, tc.poison.ID)
				}
			}
			if err := s.Write(testCtx(t), events(2, "after")); err != nil {
				t.Errorf("Write after the poison: %v", err)
			}
			if err := s.Ready(testCtx(t)); err != nil {
				t.Errorf("Ready after the poison: %v", err)
			}
		})
	}
}
