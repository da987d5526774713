package loadgen

import (
	"context"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// preciseWaiter waits for a scheduled time on a timerfd read through Go's
// network poller: the goroutine parks and wakes when the kernel timer fires,
// typically tens of microseconds late, where a Go timer can be a millisecond
// late. Waits longer than [coarse] first sleep on a Go timer (which a
// cancelled context interrupts).
type preciseWaiter struct {
	coarse timerWaiter
	f      *os.File
	fd     int
	buf    [8]byte
}

func newPreciseWaiter() waiter {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return &timerWaiter{}
	}
	// A non-blocking descriptor: os.NewFile registers it with the poller.
	return &preciseWaiter{f: os.NewFile(uintptr(fd), "timerfd"), fd: fd}
}

func (w *preciseWaiter) until(ctx context.Context, t time.Time) {
	if time.Until(t) > coarse {
		w.coarse.until(ctx, t.Add(-coarse))
	}
	d := time.Until(t)
	if d <= 0 || ctx.Err() != nil {
		return
	}
	its := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	if err := unix.TimerfdSettime(w.fd, 0, &its, nil); err == nil {
		if _, err := w.f.Read(w.buf[:]); err == nil {
			return
		}
	}
	w.coarse.until(ctx, t) // the timerfd failed: a late wake-up beats none
}

func (w *preciseWaiter) close() {
	w.coarse.close()
	_ = w.f.Close()
}
