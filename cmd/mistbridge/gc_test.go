package main

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// TestGCPercent: without GOGC the bridge runs at defaultGCPercent with a
// heap floor; with GOGC, the runtime's reading of it stands and nothing
// tunes it.
func TestGCPercent(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	got, f := setGCPercent(getenv)
	if got != defaultGCPercent || f == nil {
		t.Errorf("without GOGC: %d with floor %v, want %d with a floor", got, f, defaultGCPercent)
	}
	if f != nil {
		f.stop()
	}
	if cur := gcPercent(); cur < defaultGCPercent {
		t.Errorf("the runtime runs at %d, want %d or more", cur, defaultGCPercent)
	}
	debug.SetGCPercent(150) // as the runtime would have read GOGC=150
	env["GOGC"] = "150"
	if got, f := setGCPercent(getenv); got != 150 || f != nil {
		t.Errorf("with GOGC=150: %d with floor %v, want 150 kept and no floor", got, f)
	}
	if cur := gcPercent(); cur != 150 {
		t.Errorf("the runtime runs at %d after GOGC=150, want 150", cur)
	}
}

// TestGCFloorPercent: the GOGC asked for makes the heap goal the floor
// while the live heap is small, and is the minimum once it is not.
func TestGCFloorPercent(t *testing.T) {
	const mib = 1 << 20
	f := newGCFloor(32*mib, 200)
	for _, tt := range []struct {
		live uint64
		want int
	}{
		{0, maxGCPercent},
		{1, maxGCPercent},         // 32 MiB / 1 byte: capped
		{512 << 10, maxGCPercent}, // 0.5 MiB: 6300 capped
		{2 * mib, 1500},           // 2 MiB * 16 = 32 MiB
		{4 * mib, 700},            // 4 MiB * 8 = 32 MiB
		{10 * mib, 220},           // 10 MiB * 3.2 = 32 MiB
		{11 * mib, 200},           // 11 MiB * 2.91 < 3: the minimum
		{100 * mib, 200},          // a backlog: the minimum
	} {
		if got := f.percentFor(tt.live); got != tt.want {
			t.Errorf("live %d bytes: GOGC %d, want %d", tt.live, got, tt.want)
		}
	}
}

// TestGCFloorTunes: started, the floor raises GOGC after a collection of
// this test binary's small heap, and sets the minimum again when the live
// heap is over a third of the floor.
func TestGCFloorTunes(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	debug.SetGCPercent(200)
	f := newGCFloor(64<<20, 200)
	tuned := make(chan int, 100)
	f.tuned = func(p int) {
		select {
		case tuned <- p:
		default:
		}
	}
	f.start()
	defer f.stop()
	// waitTune collects until a tune reports, so a cleanup queued behind
	// other work is still seen; it fails after a minute.
	waitTune := func() int {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			runtime.GC()
			select {
			case p := <-tuned:
				return p
			case <-time.After(10 * time.Millisecond):
			}
		}
		t.Fatal("no tune within a minute of collections")
		return 0
	}
	if p := waitTune(); p <= 200 {
		t.Fatalf("with a small live heap GOGC is %d, want over 200", p)
	}
	if cur := gcPercent(); cur <= 200 {
		t.Fatalf("the runtime runs at %d, want over 200", cur)
	}
	big := make([]byte, 40<<20) // live: over a third of 64 MiB
	for len(tuned) > 0 {
		<-tuned
	}
	p := waitTune()
	runtime.KeepAlive(big)
	if p != 200 {
		t.Fatalf("with a 40 MiB live heap GOGC is %d, want 200", p)
	}
	if cur := gcPercent(); cur != 200 {
		t.Fatalf("the runtime runs at %d, want 200", cur)
	}
}
