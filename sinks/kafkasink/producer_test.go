package kafkasink

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
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
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		preq := req.(*kmsg.ProduceRequest)
		n := 0
		for _, rt := range preq.Topics {
			if rt.Topic != topic {
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
		st.Topic = rt.Topic
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
// hooks report each queued segment on the returned channel.
func onePartition(t *testing.T, cfg Config) (*kafkaBroker, *Sink, <-chan topicPartition) {
	t.Helper()
	b := startKafka(t, kfake.NumBrokers(1), kfake.DefaultNumPartitions(1))
	cfg.Brokers = b.addrs
	cfg.TopicTemplate = "one.{topic}"
	cfg.AutoCreateTopics = true
	s := newSink(t, cfg)
	// Create the topic, so that the transport has its metadata before the
	// watch starts.
	if err := s.Write(testCtx(t), events(1, "warm")); err != nil {
		t.Fatal(err)
	}
	queued := make(chan topicPartition, 64)
	s.hooks.queued = func(tp topicPartition) { queued <- tp }
	return b, s, queued
}

const oneTopic = "one.device-events"

// A Write with nothing else in flight is sent at once: with the default
// BatchTimeout no producer waits for a timer, and the Write's records go in
// one request. The hook that would see a wait does see one when
// BatchTimeout is set.
func TestLoneWriteWaitsForNoTimer(t *testing.T) {
	for _, tc := range []struct {
		name         string
		batchTimeout time.Duration
		wantLinger   bool
	}{
		{"default", 0, false},
		{"linger", 20 * time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, s, _ := onePartition(t, Config{BatchTimeout: tc.batchTimeout})
			if !tc.wantLinger && s.cfg.BatchTimeout != 0 {
				t.Fatalf("default BatchTimeout = %v, want 0", s.cfg.BatchTimeout)
			}
			var lingered atomic.Int32
			s.hooks.linger = func() { lingered.Add(1) }
			w := watchProduce(t, b.c, oneTopic, watchOpts{})
			start := time.Now()
			if err := s.Write(testCtx(t), events(3, "lone")); err != nil {
				t.Fatal(err)
			}
			elapsed := time.Since(start)
			if got := lingered.Load() > 0; got != tc.wantLinger {
				t.Errorf("a producer waited for a timer: %v, want %v", got, tc.wantLinger)
			}
			if got := w.Sizes(); !slices.Equal(got, []int{3}) {
				t.Errorf("records per produce request = %v, want [3]", got)
			}
			// Far above any scheduling delay, far below the 5ms batch
			// timeout every Write used to wait for, times 100.
			if !tc.wantLinger && elapsed > 500*time.Millisecond {
				t.Errorf("a lone Write took %v", elapsed)
			}
		})
	}
}

// Writes that arrive while a request is in flight share the next request,
// up to BatchSize records, in the order they were queued; each Write
// returns when its own records are acknowledged.
func TestConcurrentWritesShareRequests(t *testing.T) {
	for _, tc := range []struct {
		batchSize int
		want      []int
	}{
		{0, []int{1, 10}},         // the default, 1000
		{4, []int{1, 4, 4, 2}},    // segments of 2 records: two per request
		{3, []int{1, 3, 3, 3, 1}}, // a segment split over two requests
	} {
		t.Run(fmt.Sprintf("batchsize=%d", tc.batchSize), func(t *testing.T) {
			b, s, queued := onePartition(t, Config{BatchSize: tc.batchSize})
			w := watchProduce(t, b.c, oneTopic, watchOpts{hold: true})
			errs := make(chan error, 6)
			go func() { errs <- s.Write(testCtx(t), events(1, "first")) }()
			<-queued
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
				<-queued // in the order of the Writes
			}
			w.Release()
			for range 6 {
				if err := <-errs; err != nil {
					t.Errorf("Write: %v", err)
				}
			}
			if got := w.Sizes(); !slices.Equal(got, tc.want) {
				t.Errorf("records per produce request = %v, want %v", got, tc.want)
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

// When a request fails, the records of the same Write that were to follow
// it on the partition fail with it, unsent, so that the retry keeps them in
// order: a record of a key never lands before an earlier one.
func TestFailedRequestKeepsKeyOrder(t *testing.T) {
	b, s, _ := onePartition(t, Config{BatchSize: 2})
	watchProduce(t, b.c, oneTopic, watchOpts{failAt: 2, code: kerr.NotEnoughReplicas.Code})
	evs := events(5, "order")
	err := s.Write(testCtx(t), evs)
	var werrs sinks.WriteErrors
	if !errors.As(err, &werrs) || len(werrs) != len(evs) {
		t.Fatalf("Write = %v, want a WriteErrors of %d", err, len(evs))
	}
	for i, e := range werrs {
		switch {
		case i < 2 && e != nil:
			t.Errorf("event %d (first request): %v, want nil", i, e)
		case i >= 2 && (e == nil || sinks.IsPermanent(e) || !errors.Is(e, kafka.NotEnoughReplicas)):
			t.Errorf("event %d: %v, want the transient NotEnoughReplicas of the second request", i, e)
		}
	}
	if err := s.Write(testCtx(t), evs[2:]); err != nil {
		t.Fatalf("retry: %v", err)
	}
	recs := consume(t, b.addrs, oneTopic, 1+len(evs))
	for i, ev := range evs {
		if got := string(recs[1+i].Value); got != string(ev.Data) {
			t.Errorf("record %d is %.60s, want %.60s", 1+i, got, ev.Data)
		}
	}
}

// A Write that gives up (ctx ends) while its records wait behind a request
// in flight takes them out of the queue: they are never sent afterwards.
func TestAbandonedWriteIsNotSentLater(t *testing.T) {
	b, s, queued := onePartition(t, Config{})
	w := watchProduce(t, b.c, oneTopic, watchOpts{hold: true})
	first := events(1, "held")
	errs := make(chan error, 1)
	go func() { errs <- s.Write(testCtx(t), first) }()
	<-queued
	<-w.entered

	ctx, cancel := context.WithCancel(testCtx(t))
	gaveUp := make(chan error, 1)
	go func() { gaveUp <- s.Write(ctx, events(1, "abandoned")) }()
	<-queued
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
	// The partition keeps the order of the queue: anything of the
	// abandoned Write would have landed before the last record.
	recs := consume(t, b.addrs, oneTopic, 3)
	if string(recs[1].Value) != string(first[0].Data) || string(recs[2].Value) != string(last[0].Data) {
		t.Errorf("records after the warm-up: %.40s, %.40s; want the held one, then the last", recs[1].Value, recs[2].Value)
	}
}

// Close waits for the Writes in flight; when its ctx ends first it fails
// them, stops every producer goroutine and waits for them.
func TestCloseWaitsThenGivesUp(t *testing.T) {
	for _, giveUp := range []bool{false, true} {
		t.Run(fmt.Sprintf("giveup=%v", giveUp), func(t *testing.T) {
			b, s, queued := onePartition(t, Config{})
			w := watchProduce(t, b.c, oneTopic, watchOpts{hold: true})
			errs := make(chan error, 1)
			go func() { errs <- s.Write(testCtx(t), events(2, "inflight")) }()
			<-queued
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
			select {
			case <-s.workers.done():
			default:
				t.Error("a producer goroutine outlived Close")
			}
		})
	}
}

// take fills a request from the head of the queue: whole segments while
// they fit, a segment split at the limit, a dead letter's record alone,
// nothing of a segment whose call gave up.
func TestTake(t *testing.T) {
	type seg struct {
		sizes   []int
		alone   bool
		dropped bool
	}
	type got struct{ seg, from, to int }
	for _, tc := range []struct {
		name       string
		segs       []seg
		maxRecords int
		want       [][]got // chunks of each request until the queue is empty
	}{
		{"all in one", []seg{{sizes: []int{10, 10}}, {sizes: []int{10, 10, 10}}}, 10,
			[][]got{{{0, 0, 2}, {1, 0, 3}}}},
		{"split at BatchSize", []seg{{sizes: []int{10, 10}}, {sizes: []int{10, 10, 10}}}, 4,
			[][]got{{{0, 0, 2}, {1, 0, 2}}, {{1, 2, 3}}}},
		{"alone", []seg{{sizes: []int{10, 10}}, {sizes: []int{10, 10}, alone: true}, {sizes: []int{10}}}, 10,
			[][]got{{{0, 0, 2}}, {{1, 0, 1}}, {{1, 1, 2}}, {{2, 0, 1}}}},
		{"dropped", []seg{{sizes: []int{10, 10}, dropped: true}, {sizes: []int{10}}}, 10,
			[][]got{{{1, 0, 1}}}},
		{"split at maxRequestBytes", []seg{{sizes: []int{600 << 10, 300 << 10, 200 << 10}}, {sizes: []int{10}}}, 10,
			[][]got{{{0, 0, 2}}, {{0, 2, 3}, {1, 0, 1}}}},
		{"a record over the limit goes alone", []seg{{sizes: []int{10}}, {sizes: []int{2 << 20}}}, 10,
			[][]got{{{0, 0, 1}}, {{1, 0, 1}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &partition{}
			var segs []*segment
			for _, sg := range tc.segs {
				recs := make([]record, len(sg.sizes))
				idx := make([]int, len(sg.sizes))
				for i, n := range sg.sizes {
					recs[i].size = n
					idx[i] = i
				}
				s := &segment{c: newCall(recs, 1), p: p, idx: idx, alone: sg.alone, dropped: sg.dropped}
				segs = append(segs, s)
				p.queue = append(p.queue, s)
				p.queued += len(idx)
			}
			var requests [][]got
			for range 10 {
				p.take(tc.maxRecords)
				if len(p.chunks) == 0 {
					break
				}
				var req []got
				for _, ch := range p.chunks {
					req = append(req, got{slices.Index(segs, ch.seg), ch.from, ch.to})
				}
				requests = append(requests, req)
			}
			if fmt.Sprint(requests) != fmt.Sprint(tc.want) {
				t.Errorf("requests = %v, want %v", requests, tc.want)
			}
			if p.queued != 0 || p.head != 0 || len(p.queue) != 0 {
				t.Errorf("after the last request: queued %d, head %d, queue %d", p.queued, p.head, len(p.queue))
			}
		})
	}
}

// A queue that never empties (a producer that always finds more queued)
// keeps a bounded backing array.
func TestQueueDoesNotGrowForEver(t *testing.T) {
	s := &Sink{workers: newGate(), parts: make(map[topicPartition]*partition)}
	p := s.partition(topicPartition{"t", 0})
	p.running = true // no producer goroutine: the test takes
	newSeg := func() *segment {
		return &segment{c: newCall(make([]record, 1), 1), p: p, idx: []int{0}}
	}
	for range 3 {
		s.enqueue(newSeg())
	}
	for range 10000 {
		s.enqueue(newSeg())
		p.take(1)
		if len(p.chunks) != 1 {
			t.Fatalf("took %d chunks, want 1", len(p.chunks))
		}
	}
	if p.queued != 3 || len(p.queue)-p.head != 3 {
		t.Fatalf("%d records in %d segments queued, want 3 in 3", p.queued, len(p.queue)-p.head)
	}
	if cap(p.queue) > 64 {
		t.Errorf("the queue's backing array holds %d segments for 3 queued", cap(p.queue))
	}
}
