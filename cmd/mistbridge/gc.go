package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// defaultGCPercent is the GOGC the bridge runs with unless the environment
// sets GOGC, and the least it lowers GOGC to when it raises the heap goal
// to heapFloor. The bridge's live heap is small and bounded by admission
// (MISTBRIDGE_MAX_INFLIGHT_BYTES), so trading some memory for fewer
// collections pays: in one peerbench run on 2 cores, GOGC=200 against the
// default 100 gave 1.26x the events/s to kfake (11.4 against 13.3 CPU-s
// per million events) and 1.20x to JetStream (18.6 against 24.2), at a
// peak RSS of 44-47 MiB against 40 MiB. Set GOMEMLIMIT where memory is
// capped (the Kubernetes manifest does), and the runtime collects harder
// as the heap nears it.
const defaultGCPercent = 200

// heapFloor is the least heap goal the bridge runs with unless the
// environment sets GOGC. Under load the live heap is a few MiB (the
// requests in flight), so with GOGC alone the runtime's own 4 MiB floor
// sets the pace: at 200, a collection for every ~8 MiB allocated, a few
// dozen a second. Raising the goal to heapFloor while the live heap is
// small spends the same memory a busy bridge holds anyway and collects a
// fraction as often; once the live heap is over heapFloor/3 (a backlog of over 10 MiB),
// GOGC is defaultGCPercent again. See docs/performance.md for what it
// saves and costs.
const heapFloor = 32 << 20

// maxGCPercent bounds the GOGC the floor asks for when the live heap is
// tiny (at start-up).
const maxGCPercent = 5000

// setGCPercent applies defaultGCPercent, and a gcFloor keeping the heap
// goal at heapFloor or above, when GOGC is not set, and reports the GOGC
// in force (-1: off) and the floor, nil when GOGC is set: then the
// runtime's reading of it stands.
func setGCPercent(getenv func(string) string) (int, *gcFloor) {
	if getenv("GOGC") != "" {
		return gcPercent(), nil
	}
	debug.SetGCPercent(defaultGCPercent)
	f := newGCFloor(heapFloor, defaultGCPercent)
	f.start()
	return defaultGCPercent, f
}

// gcPercent is the GOGC in force.
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// gcFloor keeps the heap goal at floor or above: after every collection it
// sets GOGC to what makes the next goal floor for the live heap just
// marked, never below min. The Go runtime has no such setting; the usual
// stand-in, a ballast allocation, also raises the goal when the heap is
// large. GOMEMLIMIT, when set, still caps the goal: the runtime takes the
// lower of the two.
type gcFloor struct {
	floor  uint64
	min    int
	sample []metrics.Sample
	tuned  func(int) // called after each tune with the GOGC in force: for tests

	mu      sync.Mutex
	percent int  // the GOGC last set
	stopped bool // no more tunes: for tests
}

func newGCFloor(floor uint64, min int) *gcFloor {
	return &gcFloor{
		floor:   floor,
		min:     min,
		sample:  []metrics.Sample{{Name: "/gc/heap/live:bytes"}},
		percent: min,
	}
}

// percentFor is the GOGC that makes live's heap goal floor, never below
// min nor above maxGCPercent.
func (f *gcFloor) percentFor(live uint64) int {
	if live == 0 {
		return maxGCPercent
	}
	p := int(min(f.floor*100/live, uint64(maxGCPercent+100))) - 100
	return max(p, f.min)
}

// start arms the first tune: it runs after the next collection.
func (f *gcFloor) start() { f.arm() }

// stop ends the tunes: none sets GOGC once it returns.
func (f *gcFloor) stop() {
	f.mu.Lock()
	f.stopped = true
	f.mu.Unlock()
}

// arm has tune run once the next collection has found a new, unreachable
// object: a cleanup runs after the cycle that freed it, on the runtime's
// cleanup goroutine, which also runs them one at a time.
func (f *gcFloor) arm() {
	// 32 bytes: the tiny allocator (under 16) batches objects, and its
	// cleanups may never run.
	runtime.AddCleanup(new([32]byte), func(f *gcFloor) {
		if f.tune() {
			f.arm()
		}
	}, f)
}

// tune sets GOGC for the live heap the last collection marked. A change
// under a tenth is skipped: the goal moves little and SetGCPercent takes
// the heap lock. It reports false once stopped.
func (f *gcFloor) tune() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return false
	}
	metrics.Read(f.sample)
	if f.sample[0].Value.Kind() != metrics.KindUint64 {
		return true
	}
	p := f.percentFor(f.sample[0].Value.Uint64())
	if d := p - f.percent; d*10 > f.percent || -d*10 > f.percent || (p == f.min && f.percent != f.min) {
		debug.SetGCPercent(p)
		f.percent = p
	}
	if f.tuned != nil {
		f.tuned(f.percent)
	}
	return true
}
