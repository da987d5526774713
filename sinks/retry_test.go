package sinks_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mistbridge/mistbridge/codec"
	"github.com/mistbridge/mistbridge/sinks"
	"github.com/mistbridge/mistbridge/sinks/kafkasink"
)

// kafkaRig is a kfake broker and a kafkasink in front of it. Faults are
// injected into the real broker's produce path, not faked in the client.
func kafkaRig(t *testing.T) (*kfake.Cluster, *kafkasink.Sink) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	var cfg kafkasink.Config
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: map[string]string{"BROKERS": c.ListenAddrs()[0], "WRITE_TIMEOUT": "2s"}}); err != nil {
		t.Fatal(err)
	}
	s, err := kafkasink.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return c, s
}

// failProduce makes the next n produce requests for topic fail with code.
func failProduce(c *kfake.Cluster, topic string, code int16, n int) *atomic.Int32 {
	var hits atomic.Int32
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		preq := req.(*kmsg.ProduceRequest)
		if len(preq.Topics) == 0 || preq.Topics[0].Topic != topic || hits.Load() >= int32(n) {
			return nil, nil, false
		}
		hits.Add(1)
		resp := preq.ResponseKind().(*kmsg.ProduceResponse)
		resp.Version = preq.Version
		for _, rt := range preq.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	return &hits
}

func events(topic string, n int) []*codec.Event {
	out := make([]*codec.Event, n)
	for i := range out {
		ev := codec.Map(topic, []byte(`{"site_id":"s1","n":`+string(rune('0'+i))+`}`))
		out[i] = &ev
	}
	return out
}

func readTopic(t *testing.T, c *kfake.Cluster, topic string, want int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	deadline := time.Now().Add(5 * time.Second)
	for len(out) < want && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { out = append(out, r) })
		cancel()
	}
	return out
}

func TestRetryingRetriesTransientErrors(t *testing.T) {
	c, s := kafkaRig(t)
	// Create the topic first so the injected error is the only failure.
	if err := s.Write(context.Background(), events("warm", 1)); err != nil {
		t.Fatal(err)
	}
	hits := failProduce(c, "mist.retry", kerr.NotEnoughReplicas.Code, 2)
	m := sinks.NewMetrics(nil)
	r := sinks.NewRetrying(s, sinks.RetryPolicy{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}, m, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Deliver(ctx, events("retry", 3)); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	if hits.Load() != 2 {
		t.Fatalf("broker refused %d times, want 2 before success", hits.Load())
	}
	if recs := readTopic(t, c, "mist.retry", 3); len(recs) != 3 {
		t.Fatalf("%d records landed, want 3", len(recs))
	}
	if r.Failing() {
		t.Error("Failing after a successful delivery")
	}
}

func TestRetryingGivesUpAtTheDeadline(t *testing.T) {
	c, s := kafkaRig(t)
	if err := s.Write(context.Background(), events("warm", 1)); err != nil {
		t.Fatal(err)
	}
	failProduce(c, "mist.down", kerr.NotEnoughReplicas.Code, 1<<30)
	r := sinks.NewRetrying(s, sinks.RetryPolicy{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}, nil, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err := r.Deliver(ctx, events("down", 2))
	if err == nil || sinks.IsPermanent(err) {
		t.Fatalf("Deliver = %v, want a transient error", err)
	}
	if !r.Failing() {
		t.Error("not Failing after the deadline passed")
	}
	if !strings.Contains(err.Error(), "not acknowledged") {
		t.Errorf("error %q does not say the events were not acknowledged", err)
	}
}

func TestRetryingDeadLettersPermanentErrors(t *testing.T) {
	c, s := kafkaRig(t)
	if err := s.Write(context.Background(), events("warm", 1)); err != nil {
		t.Fatal(err)
	}
	failProduce(c, "mist.refused", kerr.TopicAuthorizationFailed.Code, 1<<30)
	r := sinks.NewRetrying(s, sinks.RetryPolicy{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}, nil, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	evs := events("refused", 2)
	if err := r.Deliver(ctx, evs); err != nil {
		t.Fatalf("Deliver with a working dead-letter topic: %v", err)
	}
	recs := readTopic(t, c, "mistbridge.deadletter", 2)
	if len(recs) != 2 {
		t.Fatalf("%d dead letters, want 2", len(recs))
	}
	for i, rec := range recs {
		var reason, id string
		for _, h := range rec.Headers {
			switch h.Key {
			case sinks.HeaderDeadLetterReason:
				reason = string(h.Value)
			case "ce_id":
				id = string(h.Value)
			}
		}
		if id != evs[i].ID || string(rec.Value) != string(evs[i].Data) {
			t.Errorf("dead letter %d: id %q data %s, want the original %s %s", i, id, rec.Value, evs[i].ID, evs[i].Data)
		}
		if !strings.Contains(strings.ToLower(reason), "authoriz") {
			t.Errorf("dead letter reason %q does not name the cause", reason)
		}
	}
	// When the dead-letter topic refuses too, the delivery fails.
	failProduce(c, "mistbridge.deadletter", kerr.TopicAuthorizationFailed.Code, 1<<30)
	err := r.Deliver(ctx, events("refused", 1))
	if err == nil || !errors.Is(err, kerr.TopicAuthorizationFailed) && !strings.Contains(err.Error(), "dead letter") {
		t.Fatalf("Deliver with the dead-letter topic refused = %v, want an error", err)
	}
}
