package spool

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/mistbridge/mistbridge/bridge"
	"github.com/mistbridge/mistbridge/codec"
)

// BenchmarkAppend appends one 1 KiB record per call from parallel
// appenders: group commit shows as fsyncs/append well below 1.
func BenchmarkAppend(b *testing.B) {
	l, _, _ := startLog(b, b.TempDir(), &budget{max: 1 << 40}, 64<<20, nil)
	p := bytes.Repeat([]byte("x"), 1024)
	b.SetParallelism(16) // 16 appenders per core, like concurrent webhook requests
	b.SetBytes(int64(len(p)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.Append(context.Background(), [][]byte{p}, time.Now()); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(l.fsyncs.Load())/float64(l.commits.Load()), "fsyncs/append")
}

// BenchmarkDeliver compares one Deliver of 10 events through the bare
// Router, the Spool in hybrid mode (broker up: acknowledged directly) and
// the Spool in spool mode (fsync'd, delivered in the background), all to
// an embedded JetStream.
func BenchmarkDeliver(b *testing.B) {
	evs := events("device-events", 0, 10, 5)
	for _, tc := range []struct {
		name string
		mode Mode
	}{{"router", ""}, {"hybrid", ModeHybrid}, {"spool", ModeSpool}} {
		b.Run(tc.name, func(b *testing.B) {
			br := newBroker(b)
			r := newRouter(b, br.url)
			var d bridge.Delivery = r
			var s *Spool
			if tc.mode != "" {
				s = openSpool(b, Config{Mode: tc.mode, Dir: b.TempDir()}, r, nil)
				d = s
			}
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				batch := make([]*codec.Event, len(evs))
				copy(batch, evs)
				for pb.Next() {
					if err := d.Deliver(context.Background(), batch); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N*len(evs))/b.Elapsed().Seconds(), "events/s")
			if s != nil {
				l := s.logs["nats"]
				if n := l.commits.Load(); n > 0 {
					b.ReportMetric(float64(l.fsyncs.Load())/float64(n), "fsyncs/event")
				}
			}
		})
	}
}
