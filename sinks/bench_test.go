package sinks_test

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/mistbridge/mistbridge/codec"
	"github.com/mistbridge/mistbridge/sinks"
	"github.com/mistbridge/mistbridge/sinks/kafkasink"
	"github.com/mistbridge/mistbridge/sinks/natssink"
)

// The write benchmarks measure what a webhook request waits for: one Write
// of benchEvents events, from benchWriters goroutines at once (the bridge
// under load: concurrent requests share the sink) and from one goroutine
// (a request alone: its latency floor). Each reports events/s and the p50
// and p99 latency of one Write.
const (
	benchWriters   = 32
	benchEvents    = 10
	benchEventSize = 500 // bytes of JSON per event, about a Mist device event
)

// BenchmarkKafkaWrite writes to an in-process kfake cluster of three
// brokers, six partitions per topic.
func BenchmarkKafkaWrite(b *testing.B) {
	benchWrite(b, func(b *testing.B) sinks.Sink {
		c, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(6))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(c.Close)
		s, err := kafkasink.New(kafkasink.Config{
			Brokers:          c.ListenAddrs(),
			TopicTemplate:    "bench.{topic}",
			AutoCreateTopics: true,
		}, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.Close(context.Background()) })
		return s
	})
}

// BenchmarkJetStreamWrite writes to an embedded nats-server with JetStream
// (file storage, the bridge's default broker).
func BenchmarkJetStreamWrite(b *testing.B) {
	benchWrite(b, func(b *testing.B) sinks.Sink {
		e, err := natssink.StartEmbedded(b.TempDir(), "127.0.0.1:0", nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(e.Shutdown)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := natssink.New(ctx, natssink.Config{URL: e.ClientURL(), JetStream: true, CreateStream: true}, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.Close(context.Background()) })
		return s
	})
}

// benchWrite runs the write benchmarks on sinks that open returns, a new
// broker and sink for every run so that what earlier runs stored does not
// slow the next.
func benchWrite(b *testing.B, open func(b *testing.B) sinks.Sink) {
	for _, writers := range []int{1, benchWriters} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			s := open(b)
			gen := &eventGen{}
			// Creates the topics or the stream, and opens the connections.
			if err := s.Write(context.Background(), gen.batch().next()); err != nil {
				b.Fatal(err)
			}
			runWrites(b, s, gen, writers)
		})
	}
}

// runWrites runs b.N Writes from writers goroutines.
func runWrites(b *testing.B, s sinks.Sink, gen *eventGen, writers int) {
	ctx := context.Background()
	var mu sync.Mutex
	var lat []time.Duration
	b.ReportAllocs()
	write := func(w *writer) {
		evs := w.next()
		start := time.Now()
		err := s.Write(ctx, evs)
		w.lat = append(w.lat, time.Since(start))
		if err != nil {
			b.Error(err)
		}
	}
	if writers == 1 {
		w := gen.batch()
		for b.Loop() {
			write(w)
		}
		lat = w.lat
	} else {
		// RunParallel starts parallelism × GOMAXPROCS goroutines.
		procs := runtime.GOMAXPROCS(0)
		b.SetParallelism((writers + procs - 1) / procs)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			w := gen.batch()
			for pb.Next() {
				write(w)
			}
			mu.Lock()
			lat = append(lat, w.lat...)
			mu.Unlock()
		})
	}
	b.StopTimer()
	report(b, lat)
}

func report(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	q := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds())
	}
	b.ReportMetric(float64(len(lat)*benchEvents)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(q(0.50), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
}

// eventGen hands each writer a batch of events over many sites (so they
// spread over partitions), mapped once; every Write sends them with fresh
// ids, so JetStream stores each rather than dropping duplicates, and the
// benchmark measures the sink rather than codec.Map.
type eventGen struct {
	seq atomic.Int64
}

var benchPad = strings.Repeat("x", benchEventSize-180)

// writer is one writing goroutine's events and latencies.
type writer struct {
	gen   *eventGen
	tmpl  []codec.Event
	evs   []codec.Event
	ptrs  []*codec.Event
	ids   []byte
	lat   []time.Duration
	first int64
}

func (g *eventGen) batch() *writer {
	n := g.seq.Add(1)
	w := &writer{gen: g, tmpl: make([]codec.Event, benchEvents), evs: make([]codec.Event, benchEvents), ptrs: make([]*codec.Event, benchEvents)}
	for i := range w.tmpl {
		raw := `{"org_id":"org-bench","site_id":"site-` + strconv.FormatInt((n*benchEvents+int64(i))%97, 10) +
			`","timestamp":1700000000,"type":"AP_RESTARTED","seq":` + strconv.FormatInt(n, 10) +
			`,"i":` + strconv.Itoa(i) + `,"pad":"` + benchPad + `"}`
		w.tmpl[i] = codec.Map("device-events", []byte(raw))
		w.ptrs[i] = &w.evs[i]
	}
	return w
}

// next returns the writer's events with fresh ids. A sink does not keep
// events after Write returns, so they are reused.
func (w *writer) next() []*codec.Event {
	for i := range w.evs {
		w.evs[i] = w.tmpl[i]
		w.ids = strconv.AppendInt(append(w.ids[:0], "bench-"...), w.gen.seq.Add(1), 10)
		w.evs[i].ID = string(w.ids)
	}
	return w.ptrs
}
