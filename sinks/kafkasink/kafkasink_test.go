package kafkasink

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/cloudevents/sdk-go/protocol/kafka_sarama/v2"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/mistbridge/mistbridge/codec"
	"github.com/mistbridge/mistbridge/sinks"
	"github.com/mistbridge/mistbridge/sinks/sinktest"
)

// maxMessageBytes is the kfake brokers' message.max.bytes in these tests,
// small enough that the suite can exceed it cheaply.
const maxMessageBytes = 64 << 10

func TestConformance(t *testing.T) {
	sinktest.Run(t, sinktest.Setup{
		Features: sinktest.Features{
			HeaderPrefix:    codec.KafkaPrefix,
			Keyed:           true,
			Persistent:      true,
			MaxMessageBytes: maxMessageBytes,
		},
		StartBroker: func(t *testing.T) sinktest.Broker { return startKafka(t) },
	})
}

// kafkaBroker is an in-process kfake cluster of three brokers that creates
// topics on first use, three partitions each.
type kafkaBroker struct {
	c     *kfake.Cluster
	addrs []string
	stop  sync.Once
}

func startKafka(t testing.TB, opts ...kfake.Opt) *kafkaBroker {
	t.Helper()
	opts = append([]kfake.Opt{
		kfake.NumBrokers(3),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(3),
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": strconv.Itoa(maxMessageBytes)}),
	}, opts...)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	b := &kafkaBroker{c: c, addrs: c.ListenAddrs()}
	t.Cleanup(b.Stop)
	return b
}

func (b *kafkaBroker) Stop() { b.stop.Do(b.c.Close) }

func (b *kafkaBroker) config(o sinktest.Options) Config {
	return Config{
		Brokers:          b.addrs,
		TopicTemplate:    o.Namespace + ".{topic}",
		DeadLetterTopic:  o.Namespace + ".deadletter",
		ContentMode:      o.Mode.String(),
		AutoCreateTopics: true,
		WriteTimeout:     5 * time.Second,
	}
}

func (b *kafkaBroker) Open(t *testing.T, o sinktest.Options) sinks.Sink {
	t.Helper()
	s, err := New(b.config(o), nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func (b *kafkaBroker) Reader(t *testing.T, o sinktest.Options) sinktest.Reader {
	t.Helper()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(b.addrs...),
		kgo.ConsumeRegex(),
		kgo.ConsumeTopics("^"+regexp.QuoteMeta(o.Namespace+".")),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.MetadataMinAge(10*time.Millisecond),
		kgo.MetadataMaxAge(50*time.Millisecond),
		kgo.FetchMaxWait(50*time.Millisecond),
	)
	if err != nil {
		t.Fatalf("kgo: %v", err)
	}
	t.Cleanup(cl.Close)
	return &kafkaReader{cl: cl, cfg: b.config(o)}
}

// kafkaReader consumes every topic of a namespace with franz-go.
type kafkaReader struct {
	cl  *kgo.Client
	cfg Config
	got []sinktest.Message
}

func (r *kafkaReader) Destination(ev *codec.Event) string {
	return codec.KafkaTopic(r.cfg.TopicTemplate, ev.Topic)
}

func (r *kafkaReader) DeadLetterDestination() string { return r.cfg.DeadLetterTopic }

func (r *kafkaReader) Read(ctx context.Context, n int) ([]sinktest.Message, error) {
	for len(r.got) < n && ctx.Err() == nil {
		fs := r.cl.PollFetches(ctx)
		for _, fe := range fs.Errors() {
			if !errors.Is(fe.Err, context.Canceled) && !errors.Is(fe.Err, context.DeadlineExceeded) {
				return r.got, fmt.Errorf("fetch %s/%d: %w", fe.Topic, fe.Partition, fe.Err)
			}
		}
		fs.EachRecord(func(rec *kgo.Record) { r.got = append(r.got, toMessage(rec)) })
	}
	return r.got, nil
}

// toMessage converts a franz-go record, and builds the sarama message the
// CloudEvents kafka_sarama binding reads.
func toMessage(rec *kgo.Record) sinktest.Message {
	cm := &sarama.ConsumerMessage{
		Topic:     rec.Topic,
		Partition: rec.Partition,
		Offset:    rec.Offset,
		Key:       rec.Key,
		Value:     rec.Value,
		Timestamp: rec.Timestamp,
	}
	m := sinktest.Message{Destination: rec.Topic, Key: rec.Key, Data: rec.Value}
	for _, h := range rec.Headers {
		cm.Headers = append(cm.Headers, &sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value})
		m.Headers = append(m.Headers, sinktest.Header{Key: h.Key, Value: string(h.Value)})
	}
	m.Binding = kafka_sarama.NewMessageFromConsumerMessage(cm)
	return m
}

func newSink(t testing.TB, cfg Config) *Sink {
	t.Helper()
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func events(n int, tag string) []*codec.Event {
	out := make([]*codec.Event, n)
	for i := range out {
		raw := fmt.Sprintf(`{"org_id":"org-1","site_id":"site-%s-%d","timestamp":1700000000,"type":"AP_RESTARTED"}`, tag, i)
		ev := codec.Map("device-events", []byte(raw))
		out[i] = &ev
	}
	return out
}

// consume reads n records of topic with franz-go.
func consume(t *testing.T, addrs []string, topic string, n int, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	opts = append([]kgo.Opt{kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50 * time.Millisecond)}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := testCtx(t)
	var recs []*kgo.Record
	for len(recs) < n && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
	}
	if len(recs) != n {
		t.Fatalf("consumed %d records of %s, want %d", len(recs), topic, n)
	}
	return recs
}

// The partition of every record is the one the Java client's default
// partitioner picks for its key (franz-go's StickyKeyPartitioner with no
// hasher reproduces it), so Java and Go producers keep a site in one partition.
func TestMurmur2LikeJava(t *testing.T) {
	b := startKafka(t)
	s := newSink(t, Config{Brokers: b.addrs, TopicTemplate: "keys.{topic}", AutoCreateTopics: true})
	evs := events(30, "k")
	if err := s.Write(testCtx(t), evs); err != nil {
		t.Fatal(err)
	}
	recs := consume(t, b.addrs, "keys.device-events", len(evs))
	java := kgo.StickyKeyPartitioner(nil).ForTopic("keys.device-events")
	used := map[int32]bool{}
	for _, r := range recs {
		want := int32(java.Partition(&kgo.Record{Key: r.Key}, 3))
		if r.Partition != want {
			t.Errorf("key %q in partition %d, want %d", r.Key, r.Partition, want)
		}
		used[r.Partition] = true
	}
	if len(used) < 2 {
		t.Errorf("30 keys used %d partition(s): the test does not exercise partitioning", len(used))
	}
}

func TestCompression(t *testing.T) {
	b := startKafka(t)
	for _, c := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		t.Run(c, func(t *testing.T) {
			topic := "comp" + c
			s := newSink(t, Config{Brokers: b.addrs, TopicTemplate: topic + ".{topic}", Compression: c, AutoCreateTopics: true})
			evs := events(5, c)
			if err := s.Write(testCtx(t), evs); err != nil {
				t.Fatal(err)
			}
			recs := consume(t, b.addrs, topic+".device-events", len(evs))
			want := map[string]bool{}
			for _, ev := range evs {
				want[string(ev.Data)] = true
			}
			for _, r := range recs {
				if !want[string(r.Value)] {
					t.Errorf("unexpected value %q", r.Value)
				}
			}
		})
	}
}

func TestSASL(t *testing.T) {
	b := startKafka(t,
		kfake.EnableSASL(),
		kfake.Superuser(SASLPlain, "plain-user", "plain-pass"),
		kfake.Superuser(SASLScramSHA256, "scram256-user", "scram256-pass"),
		kfake.Superuser(SASLScramSHA512, "scram512-user", "scram512-pass"),
	)
	for _, tc := range []struct {
		mech, user, pass string
		ok               bool
	}{
		{SASLPlain, "plain-user", "plain-pass", true},
		{SASLScramSHA256, "scram256-user", "scram256-pass", true},
		{"scram-sha-512", "scram512-user", "scram512-pass", true},
		{SASLPlain, "plain-user", "wrong", false},
		{SASLScramSHA256, "scram256-user", "wrong", false},
		{SASLScramSHA512, "scram256-user", "scram256-pass", false}, // a SHA-256 user
	} {
		t.Run(fmt.Sprintf("%s/%s/%v", tc.mech, tc.user, tc.ok), func(t *testing.T) {
			s := newSink(t, Config{Brokers: b.addrs, TopicTemplate: "sasl.{topic}", AutoCreateTopics: true,
				SASLMechanism: tc.mech, SASLUsername: tc.user, SASLPassword: tc.pass})
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			werr := s.Write(ctx, events(2, "sasl"))
			rerr := s.Ready(ctx)
			if tc.ok && (werr != nil || rerr != nil) {
				t.Fatalf("Write = %v, Ready = %v, want both nil", werr, rerr)
			}
			if !tc.ok && (werr == nil || rerr == nil) {
				t.Fatalf("Write = %v, Ready = %v, want both to fail", werr, rerr)
			}
		})
	}
}

// A batch refused for its size is sent again record by record: the small
// records land, only the large one is permanent. Here the topic's own
// max.message.bytes is below the batch's size but above each small record.
func TestBatchTooLargeIsolatesRecords(t *testing.T) {
	b := startKafka(t)
	if err := b.c.CreateTopic("iso.device-events", 1, map[string]string{"max.message.bytes": "3000"}); err != nil {
		t.Fatal(err)
	}
	s := newSink(t, Config{Brokers: b.addrs, TopicTemplate: "iso.{topic}"})
	evs := events(20, "iso") // about 450 bytes each, one request: 20 exceed 3000 together, not alone
	if err := s.Write(testCtx(t), evs); err != nil {
		t.Fatalf("Write = %v, want nil: each record fits the topic", err)
	}
	consume(t, b.addrs, "iso.device-events", len(evs))
}

// A topic the brokers refuse fails only the events bound for it, and
// permanently; the events of another topic in the same Write land.
func TestRefusedTopicFailsOnlyItsEvents(t *testing.T) {
	b := startKafka(t,
		kfake.EnableSASL(),
		kfake.EnableACLs(),
		kfake.Superuser(SASLPlain, "admin", "admin-pw"),
		kfake.User(SASLPlain, "writer", "pw", kfake.ACL{
			Resource:  kmsg.ACLResourceTypeTopic,
			Name:      "acl.device-events",
			Pattern:   kmsg.ACLResourcePatternTypeLiteral,
			Operation: kmsg.ACLOperationAll,
			Allow:     true,
		}),
	)
	s := newSink(t, Config{Brokers: b.addrs, TopicTemplate: "acl.{topic}", AutoCreateTopics: true,
		SASLMechanism: SASLPlain, SASLUsername: "writer", SASLPassword: "pw"})
	good := events(2, "good")
	bad := codec.Map("alarms", []byte(`{"site_id":"s","timestamp":1}`))
	err := s.Write(testCtx(t), []*codec.Event{good[0], &bad, good[1]})
	var werrs sinks.WriteErrors
	if !errors.As(err, &werrs) {
		t.Fatalf("Write = %v (%T), want sinks.WriteErrors", err, err)
	}
	if werrs[0] != nil || werrs[2] != nil || werrs[1] == nil {
		t.Fatalf("Write errors = %v, want only the middle event to fail", werrs)
	}
	if !sinks.IsPermanent(werrs[1]) || !errors.Is(werrs[1], kerr.TopicAuthorizationFailed) {
		t.Errorf("refused topic: %v, want a permanent TopicAuthorizationFailed", werrs[1])
	}
	consume(t, b.addrs, "acl.device-events", 2, kgo.SASL(plain.Auth{User: "admin", Pass: "admin-pw"}.AsMechanism()))
}

func TestReadyWithoutBroker(t *testing.T) {
	s := newSink(t, Config{Brokers: []string{"127.0.0.1:1"}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	if err := s.Ready(ctx); err == nil {
		t.Fatal("Ready = nil, want an error")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Ready took %v, past its deadline", d)
	}
	err := s.Write(ctx, events(1, "nobroker"))
	if err == nil || sinks.IsPermanent(err) {
		t.Errorf("Write = %v, want a transient error", err)
	}
}

func TestNewAppliesDefaults(t *testing.T) {
	in := Config{Brokers: []string{" localhost:9092"}}
	s, err := New(in, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	want := Config{
		Brokers:         []string{"localhost:9092"},
		TopicTemplate:   "mist.{topic}",
		DeadLetterTopic: "mistbridge.deadletter",
		BatchTimeout:    0,
		BatchBytes:      1 << 20,
		WriteTimeout:    10 * time.Second,
	}
	if s.cfg.String() != want.String() {
		t.Errorf("config with defaults:\n got %s\nwant %s", s.cfg, want)
	}
	if in.Brokers[0] != " localhost:9092" {
		t.Errorf("New modified the caller's Brokers: %q", in.Brokers[0])
	}
}

// BenchmarkWrite writes 10-event batches: serially (the bridge's latency
// per webhook), and from parallel goroutines, where concurrent Writes share
// produce requests (its throughput). See also sinks.BenchmarkKafkaWrite.
func BenchmarkWrite(b *testing.B) {
	for _, bs := range []int{DefaultBatchBytes, 100 << 10} {
		br := startKafka(b)
		s := newSink(b, Config{Brokers: br.addrs, TopicTemplate: "bench.{topic}", AutoCreateTopics: true, BatchBytes: bs})
		ctx := context.Background()
		if err := s.Write(ctx, events(10, "bench")); err != nil { // creates the topic
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("serial/batchbytes=%d", bs), func(b *testing.B) {
			batch := events(10, "bench")
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Write(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/event")
		})
		b.Run(fmt.Sprintf("parallel/batchbytes=%d", bs), func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				batch := events(10, "bench")
				for pb.Next() {
					if err := s.Write(ctx, batch); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*10), "ns/event")
		})
	}
}
