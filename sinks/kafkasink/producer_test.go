package kafkasink

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mistbridge/mistbridge/codec"
	"github.com/mistbridge/mistbridge/sinks"
)

// produceWatch observes the produce requests a kfake cluster handles for
// one topic: how many records each carried, in order. It can hold the first
// one until released, fail the n-th, or both.
type produceWatch struct {
	mu      sync.Mutex
	sizes   []int
	entered chan struct{} // closed when the held request arrives
	release chan struct{}
	once    sync.Once
}

type watchOpts struct {
	hold   bool  // hold the first request until Release
	failAt int   // answer the failAt-th request (from 1) with failCode
	code   int16 // the error code of that answer
}

func watchProduce(t *testing.T, c *kfake.Cluster, topic string, o watchOpts) *produceWatch {
	t.Helper()
	w := &produceWatch{entered: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(w.Release) // a held request must not outlive the test
	// Produce v13 names a topic by its id: the topic exists by now.
	info := c.TopicInfo(topic)
	if info == nil {
		t.Fatalf("topic %s does not exist", topic)
	}
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		preq := req.(*kmsg.ProduceRequest)
		n := 0
		for _, rt := range preq.Topics {
			if rt.Topic != topic && rt.TopicID != info.TopicID {
				continue
			}
			for _, rp := range rt.Partitions {
				var rb kmsg.RecordBatch
				if err := rb.ReadFrom(rp.Records); err == nil {
					n += int(rb.NumRecords)
				}
			}
		}
		if n == 0 {
			return nil, nil, false
		}
		w.mu.Lock()
		w.sizes = append(w.sizes, n)
		nth := len(w.sizes)
		w.mu.Unlock()
		if nth == 1 && o.hold {
			close(w.entered)
			c.SleepControl(func() { <-w.release })
		}
		if nth == o.failAt {
			return refuse(preq, o.code), nil, true
		}
		return nil, nil, false
	})
	return w
}

// Release lets the held request go on.
func (w *produceWatch) Release() { w.once.Do(func() { close(w.release) }) }

// Sizes returns the records of each request so far.
func (w *produceWatch) Sizes() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.sizes)
}

// refuse answers every partition of preq with code.
func refuse(preq *kmsg.ProduceRequest, code int16) *kmsg.ProduceResponse {
	resp := preq.ResponseKind().(*kmsg.ProduceResponse)
	resp.Version = preq.Version
	for _, rt := range preq.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.ErrorCode = code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// onePartition is a kfake broker whose topics have a single partition, so
// that every record of a test shares one queue, and a sink on it whose
// hooks report, on the returned channel, each Write that handed its
// records to the producer.
func onePartition(t *testing.T, cfg Config) (*kafkaBroker, *Sink, <-chan int) {
	t.Helper()
	b := startKafka(t, kfake.NumBrokers(1), kfake.DefaultNumPartitions(1))
	cfg.Brokers = b.addrs
	cfg.TopicTemplate = "one.{topic}"
	cfg.AutoCreateTopics = true
	s := newSink(t, cfg)
	// Create the topic, so that the producer has its metadata and a
	// producer id before the watch starts.
	if err := s.Write(testCtx(t), events(1, "warm")); err != nil {
		t.Fatal(err)
	}
	produced := make(chan int, 64)
	s.hooks.produced = func(n int) { produced <- n }
	return b, s, produced
}

const oneTopic = "one.device-events"

// A Write with nothing else in flight is sent at once: with the default
// BatchTimeout the producer waits for no timer. With BatchTimeout set, it
// does wait, and the Write's records go in one request.
func TestLoneWriteWaitsForNoTimer(t *testing.T) {
	for _, tc := range []struct {
		name         string
		batchTimeout time.Duration
	}{
		{"default", 0},
		{"linger", 200 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, s, _ := onePartition(t, Config{BatchTimeout: tc.batchTimeout})
			if tc.batchTimeout == 0 && s.cfg.BatchTimeout != 0 {
				t.Fatalf("default BatchTimeout = %v, want 0", s.cfg.BatchTimeout)
			}
			w := watchProduce(t, b.c, oneTopic, watchOpts{})
			start := time.Now()
			if err := s.Write(testCtx(t), events(3, "lone")); err != nil {
				t.Fatal(err)
			}
			elapsed := time.Since(start)
			sizes := w.Sizes()
			total := 0
			for _, n := range sizes {
				total += n
			}
			if total != 3 {
				t.Errorf("records per produce request = %v, want 3 records in all", sizes)
			}
			if tc.batchTimeout == 0 {
				// Far above any scheduling delay, far below the 5ms
				// batch timeout every Write used to wait for, times 100.
				if elapsed > 500*time.Millisecond {
					t.Errorf("a lone Write took %v", elapsed)
				}
			} else {
				if elapsed < tc.batchTimeout {
					t.Errorf("a lone Write took %v, less than BatchTimeout %v: the producer did not linger", elapsed, tc.batchTimeout)
				}
				if !slices.Equal(sizes, []int{3}) {
					t.Errorf("records per produce request = %v, want [3]", sizes)
				}
			}
		})
	}
}

// Writes that arrive while a request is in flight share requests, in the
// order they were produced, up to BatchBytes per partition batch; each
// Write returns when its own records are acknowledged.
func TestConcurrentWritesShareRequests(t *testing.T) {
	for _, tc := range []struct {
		batchBytes int
		maxSize    int // the most records one request may carry
	}{
		{0, 10},   // the default, 1 MiB: everything queued behind the held request
		{1024, 2}, // two records of about 450 bytes
	} {
		t.Run(fmt.Sprintf("batchbytes=%d", tc.batchBytes), func(t *testing.T) {
			b, s, produced := onePartition(t, Config{BatchBytes: tc.batchBytes})
			w := watchProduce(t, b.c, oneTopic, watchOpts{hold: true})
			errs := make(chan error, 6)
			go func() { errs <- s.Write(testCtx(t), events(1, "first")) }()
			<-produced
			select {
			case <-w.entered:
			case <-testCtx(t).Done():
				t.Fatal("the first request did not reach the broker")
			}
			var all []*codec.Event
			for i := range 5 {
				evs := events(2, fmt.Sprintf("wave%d", i))
				all = append(all, evs...)
				go func() { errs <- s.Write(testCtx(t), evs) }()
				<-produced // in the order of the Writes
			}
			w.Release()
			for range 6 {
				if err := <-errs; err != nil {
					t.Errorf("Write: %v", err)
				}
			}
			sizes := w.Sizes()
			if len(sizes) == 0 || sizes[0] != 1 {
				t.Fatalf("records per produce request = %v, want the first Write's record alone first", sizes)
			}
			total, shared := 0, false
			for _, n := range sizes[1:] {
				total += n
				shared = shared || n > 1
				if n > tc.maxSize {
					t.Errorf("records per produce request = %v, want at most %d per request", sizes, tc.maxSize)
				}
			}
			if total != len(all) || !shared {
				t.Errorf("records per produce request = %v, want the %d later records to share requests", sizes, len(all))
			}
			recs := consume(t, b.addrs, oneTopic, 2+len(all))
			for i, ev := range all {
				if got := string(recs[2+i].Value); got != string(ev.Data) {
					t.Errorf("record %d is %.60s, want %.60s", 2+i, got, ev.Data)
				}
			}
		})
	}
}

// When a request fails with a transient error, the producer sends its
// records again, and the partition keeps the order of the Write: a record
// of a key never lands before an earlier one.
func TestFailedRequestKeepsKeyOrder(t *testing.T) {
	b, s, _ := onePartition(t, Config{})
	w := watchProduce(t, b.c, oneTopic, watchOpts{failAt: 1, code: kerr.NotEnoughReplicas.Code})
	evs := events(5, "order")
	if err := s.Write(testCtx(t), evs); err != nil {
		t.Fatalf("Write = %v, want nil: the producer retries NotEnoughReplicas", err)
	}
	if sizes := w.Sizes(); len(sizes) < 2 {
		t.Errorf("records per produce request = %v, want the refused request and its retry", sizes)
	}
	recs := consume(t, b.addrs, oneTopic, 1+len(evs))
	for i, ev := range evs {
		if got := string(recs[1+i].Value); got != string(ev.Data) {
			t.Errorf("record %d is %.60s, want %.60s", 1+i, got, ev.Data)
		}
	}
}

// A Write that gives up (ctx ends) while its records wait behind a request
// in flight returns at once, with a transient error. Its record may still
// be written (franz-go cannot take back a record in a request), but never
// out of order: the partition keeps the order of the Writes.
func TestAbandonedWriteReturnsAtOnce(t *testing.T) {
	b, s, produced := onePartition(t, Config{})
	w := watchProduce(t, b.c, oneTopic, watchOpts{hold: true})
	first := events(1, "held")
	errs := make(chan error, 1)
	go func() { errs <- s.Write(testCtx(t), first) }()
	<-produced
	<-w.entered

	ctx, cancel := context.WithCancel(testCtx(t))
	gaveUp := make(chan error, 1)
	abandoned := events(1, "abandoned")
	go func() { gaveUp <- s.Write(ctx, abandoned) }()
	<-produced
	cancel()
	err := <-gaveUp
	if !errors.Is(err, context.Canceled) || sinks.IsPermanent(err) {
		t.Fatalf("abandoned Write = %v, want a transient context.Canceled", err)
	}
	w.Release()
	if err := <-errs; err != nil {
		t.Fatalf("held Write: %v", err)
	}
	last := events(1, "last")
	if err := s.Write(testCtx(t), last); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range consumeAll(t, b.addrs, oneTopic, len(last)+len(first)+1) {
		got = append(got, string(r.Value))
	}
	want := []string{string(first[0].Data), string(abandoned[0].Data), string(last[0].Data)}
	if len(got) == 3 { // the warm-up and two: the abandoned record was dropped
		want = slices.Delete(want, 1, 2)
	}
	if !slices.Equal(got[1:], want) {
		t.Errorf("records after the warm-up:\n%q\nwant\n%q", got[1:], want)
	}
}

// consumeAll reads the records of topic until it has at least n and no
// more come within a short wait.
func consumeAll(t *testing.T, addrs []string, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	ctx := testCtx(t)
	for len(recs) < n && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
	}
	if len(recs) < n {
		t.Fatalf("consumed %d records of %s, want at least %d", len(recs), topic, n)
	}
	settle, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	for settle.Err() == nil {
		cl.PollFetches(settle).EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
	}
	return recs
}

// Close waits for the Writes in flight; when its ctx ends first it makes
// them return, and closes the producer anyway.
func TestCloseWaitsThenGivesUp(t *testing.T) {
	for _, giveUp := range []bool{false, true} {
		t.Run(fmt.Sprintf("giveup=%v", giveUp), func(t *testing.T) {
			b, s, produced := onePartition(t, Config{})
			w := watchProduce(t, b.c, oneTopic, watchOpts{hold: true})
			errs := make(chan error, 1)
			go func() { errs <- s.Write(testCtx(t), events(2, "inflight")) }()
			<-produced
			<-w.entered
			closing := make(chan struct{})
			s.hooks.closing = func() { close(closing) }
			ctx, cancel := context.WithCancel(testCtx(t))
			defer cancel()
			closed := make(chan error, 1)
			go func() { closed <- s.Close(ctx) }()
			<-closing
			if err := s.Write(testCtx(t), events(1, "late")); !errors.Is(err, sinks.ErrClosed) {
				t.Errorf("Write while closing = %v, want ErrClosed", err)
			}
			if giveUp {
				cancel()
				if err := <-closed; !errors.Is(err, context.Canceled) {
					t.Errorf("Close = %v, want context.Canceled", err)
				}
				if err := <-errs; err == nil || sinks.IsPermanent(err) {
					t.Errorf("Write cut short by Close = %v, want a transient error", err)
				}
			} else {
				w.Release()
				if err := <-errs; err != nil {
					t.Errorf("Write in flight during Close: %v", err)
				}
				if err := <-closed; err != nil {
					t.Errorf("Close: %v", err)
				}
			}
			if s.cl.Context().Err() == nil || s.alone.Context().Err() == nil {
				t.Error("a producer client outlived Close")
			}
			if err := s.Ready(testCtx(t)); !errors.Is(err, sinks.ErrClosed) {
				t.Errorf("Ready after Close = %v, want ErrClosed", err)
			}
		})
	}
}

// The partitioner is the Java client's: murmur2 of the key, high bit
// cleared, modulo the partition count. The hashes are those of Kafka's own
// test of Utils.murmur2 (clients/src/test/java/org/apache/kafka/common/
// utils/UtilsTest.java), so the code is not its own oracle. The empty key
// (and a nil one) is hashed too, as kafka-go's Murmur2Balancer{Consistent:
// true} did: 81 of 100, 3 of 6.
func TestPartitionerIsJavaMurmur2(t *testing.T) {
	java := map[string]int32{
		"21":                         -973932308,
		"foobar":                     -790332482,
		"a-little-bit-long-string":   -985981536,
		"a-little-bit-longer-string": -1486304829,
		"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
		"abc": 479470107,
	}
	p := javaPartitioner.ForTopic("mist.device-events")
	if !p.RequiresConsistency(&kgo.Record{}) {
		t.Error("the partitioner does not require consistency: records of an unavailable partition would move")
	}
	for key, h := range java {
		for _, n := range []int{1, 3, 6, 7, 100} {
			want := int(h&0x7fffffff) % n
			if got := p.Partition(&kgo.Record{Key: []byte(key)}, n); got != want {
				t.Errorf("key %q, %d partitions: partition %d, want %d", key, n, got, want)
			}
		}
	}
	for _, key := range [][]byte{{}, nil} {
		for n, want := range map[int]int{100: 81, 6: 3, 3: 0} {
			for range 3 { // never sticky, never random
				if got := p.Partition(&kgo.Record{Key: key}, n); got != want {
					t.Errorf("key %#v, %d partitions: partition %d, want %d", key, n, got, want)
				}
			}
		}
	}
}

// The promise of a record finds it in its call without a search; a record
// of another call is a bug, caught at once.
func TestCallIndex(t *testing.T) {
	c := newCall(5)
	for i := range c.recs {
		if got := c.index(&c.recs[i]); got != i {
			t.Errorf("index(&recs[%d]) = %d", i, got)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("index of a record of another call did not panic")
		}
	}()
	c.index(&newCall(1).recs[0])
}
