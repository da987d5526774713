package bridge

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sync/semaphore"
)

// Admission errors; the handler maps them to 413 and 429/503.
var (
	ErrTooLarge = errors.New("bridge: request exceeds the in-flight limit")
	ErrBusy     = errors.New("bridge: too much work in flight")
)

// admission bounds the work in flight: request bytes (taken before the body
// is read, so memory stays bounded however many requests arrive) and events
// (taken once the body is split). Waiting is FIFO, so a large request is not
// starved by a stream of small ones.
type admission struct {
	events *semaphore.Weighted
	bytes  *semaphore.Weighted
	// unverified bounds the bytes held by senders not yet verified (a body
	// being read before its signature is checked): half of bytes, so they
	// can never hold all the room verified senders need.
	unverified *semaphore.Weighted
	maxEvents  int64
	maxBytes   int64
}

func newAdmission(maxEvents int, maxBytes int64) *admission {
	return &admission{
		events:     semaphore.NewWeighted(int64(maxEvents)),
		bytes:      semaphore.NewWeighted(maxBytes),
		unverified: semaphore.NewWeighted(max(maxBytes/2, 1)),
		maxEvents:  int64(maxEvents),
		maxBytes:   maxBytes,
	}
}

// acquireBytes waits until n bytes fit, or ctx is done (ErrBusy).
func (a *admission) acquireBytes(ctx context.Context, n int64) error {
	if n > a.maxBytes {
		return fmt.Errorf("%w: %d bytes, the limit is %d (MISTBRIDGE_MAX_INFLIGHT_BYTES)", ErrTooLarge, n, a.maxBytes)
	}
	if err := a.bytes.Acquire(ctx, n); err != nil {
		return fmt.Errorf("%w: waited for %d bytes: %w", ErrBusy, n, err)
	}
	return nil
}

func (a *admission) releaseBytes(n int64) {
	if n > 0 {
		a.bytes.Release(n)
	}
}

// acquireUnverified waits until n bytes fit in the room of senders not
// yet verified, or ctx is done (ErrBusy).
func (a *admission) acquireUnverified(ctx context.Context, n int64) error {
	if err := a.unverified.Acquire(ctx, n); err != nil {
		return fmt.Errorf("%w: waited for %d bytes for a body not yet verified: %w", ErrBusy, n, err)
	}
	return nil
}

func (a *admission) releaseUnverified(n int64) {
	if n > 0 {
		a.unverified.Release(n)
	}
}

// acquireEvents waits until n events fit, or ctx is done (ErrBusy).
func (a *admission) acquireEvents(ctx context.Context, n int) error {
	if int64(n) > a.maxEvents {
		return fmt.Errorf("%w: %d events in one request, the limit is %d (MISTBRIDGE_MAX_INFLIGHT_EVENTS)", ErrTooLarge, n, a.maxEvents)
	}
	if err := a.events.Acquire(ctx, int64(n)); err != nil {
		return fmt.Errorf("%w: waited for room for %d events: %w", ErrBusy, n, err)
	}
	return nil
}

func (a *admission) releaseEvents(n int) { a.events.Release(int64(n)) }
