package loadgen

import (
	"context"
	"time"
)

// clock is the time a run reads and waits on; tests give a fake one.
type clock interface {
	Now() time.Time
	// newWaiter returns a waiter for one goroutine.
	newWaiter() waiter
}

// waiter waits for scheduled send times. Not safe for concurrent use.
type waiter interface {
	// until returns at t (at once if t has passed) or when ctx is done.
	until(ctx context.Context, t time.Time)
	close()
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) newWaiter() waiter { return newPreciseWaiter() }

// coarse is how close to a scheduled time a waiter gets with Go's timers
// before it hands over to the precise wait (see preciseWaiter): they may be
// about a millisecond late, which a fixed-rate run would count as latency.
const coarse = 2 * time.Millisecond

// timerWaiter waits with Go's timers alone.
type timerWaiter struct{ t *time.Timer }

func (w *timerWaiter) until(ctx context.Context, t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	if w.t == nil {
		w.t = time.NewTimer(d)
	} else {
		w.t.Reset(d)
	}
	select {
	case <-w.t.C:
	case <-ctx.Done():
		w.t.Stop()
	}
}

func (w *timerWaiter) close() {
	if w.t != nil {
		w.t.Stop()
	}
}
