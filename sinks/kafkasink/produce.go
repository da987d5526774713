package kafkasink

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mistbridge/mistbridge/sinks"
)

// How records reach the brokers.
//
// A Write hands its records to franz-go's producer (Sink.cl) and waits for
// the promise of each. The producer buffers them per partition and sends,
// per broker, one produce request carrying a batch for every partition
// with records, with up to five requests in flight per broker; being
// idempotent, it keeps each partition's records in order across retries
// and requests in flight. With no linger (the default BatchTimeout) the
// first record buffered starts a request at once, and the records that
// arrive while requests are in flight go in the next: batches grow with
// the load instead of with a timer.
//
// When the brokers refuse a batch as a whole (too large, an invalid
// record), the producer fails every record of it and every record the
// partition had buffered behind it: most of them may be innocent. Write
// sends each such record again alone, through a second client (Sink.alone)
// that never has more than one record buffered, so that it is written, or
// refused for what it is. Those records may land after records of the
// same key that were produced meanwhile; the refusal is rare (a poison
// record), and consumers order by the events' time.

// call is one Write waiting for its records.
type call struct {
	recs []kgo.Record // what the call produces, in the order of its events

	mu sync.Mutex
	// errs[i] is the outcome of recs[i]: nil while it has none, errAcked
	// once the brokers acknowledged it, or its error. Records refused
	// before the producer have their error from the start.
	errs    []error
	pending int           // records produced without an outcome
	done    chan struct{} // closed when pending reaches zero
}

// errAcked marks an acknowledged record in call.errs.
var errAcked = errors.New("acknowledged")

func newCall(n int) *call {
	return &call{recs: make([]kgo.Record, n), errs: make([]error, n), done: make(chan struct{})}
}

// promise records the outcome of r, one of c.recs. franz-go calls it once
// per record, from its promise goroutine.
func (c *call) promise(r *kgo.Record, err error) {
	i := c.index(r)
	if err == nil {
		err = errAcked
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errs[i] = err
	c.pending--
	if c.pending == 0 {
		close(c.done)
	}
}

// index returns the position of r in c.recs. The promise gets back the
// pointer Produce was given, an element of c.recs: its offset from the
// first element says which, with no allocation per record (a closure per
// record would be one) and no search.
func (c *call) index(r *kgo.Record) int {
	off := uintptr(unsafe.Pointer(r)) - uintptr(unsafe.Pointer(unsafe.SliceData(c.recs)))
	i := int(off / unsafe.Sizeof(kgo.Record{}))
	if off%unsafe.Sizeof(kgo.Record{}) != 0 || i < 0 || i >= len(c.recs) || &c.recs[i] != r {
		panic("kafkasink: a promise for a record of another call")
	}
	return i
}

// produce hands the records of c that have no outcome yet to the producer,
// with c.pending set to their number. ctx is the call's: the producer
// drops a record that is not in a request yet when it ends.
func (s *Sink) produce(ctx context.Context, c *call) {
	promise := c.promise // one allocation, shared by the records
	n := c.pending
	for i := range c.recs {
		if c.errs[i] == nil { // no promise can have set it yet
			s.cl.Produce(ctx, &c.recs[i], promise)
		}
	}
	if s.hooks.produced != nil {
		s.hooks.produced(n)
	}
}

// outcomes returns the outcome of each record (nil for an acknowledged
// one) and whether any record has one from the producer. When the call
// gives up (abandoned), a record with none yet gets an error wrapping
// cause(), and the promises that come later change nothing the call
// reads: the errors are a copy.
func (c *call) outcomes(abandoned bool, cause func() error) ([]error, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	errs := c.errs
	if abandoned {
		errs = make([]error, len(c.errs))
	}
	answered := false
	for i, err := range c.errs {
		switch {
		case err == nil:
			errs[i] = fmt.Errorf("not acknowledged (the record may still be written): %w", cause())
		case err == errAcked:
			errs[i] = nil
			answered = true
		default:
			errs[i] = err
			answered = true
		}
	}
	return errs, answered
}

// isolate sends again, one by one and in order, the records of c that the
// producer failed with a batch refusal ([isBatchRefusal]), and replaces
// their errors in errs with the outcome of that attempt. refused tells the
// records refused before the producer, which are left as they are.
func (s *Sink) isolate(ctx context.Context, c *call, errs []error, refused func(i int) bool) {
	for i, err := range errs {
		if err == nil || refused(i) || !isBatchRefusal(err) {
			continue
		}
		errs[i] = s.produceAlone(ctx, &c.recs[i])
	}
}

// produceAlone sends r in a batch of its own, through the client that
// never has more than one record buffered, and waits for its outcome or
// until ctx ends or Close gives up.
func (s *Sink) produceAlone(ctx context.Context, r *kgo.Record) error {
	select {
	case s.aloneSem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("not sent: %w", ctx.Err())
	case <-s.abort:
		return fmt.Errorf("not sent: %w", sinks.ErrClosed)
	}
	done := make(chan error, 1)
	s.alone.Produce(ctx, r, func(_ *kgo.Record, err error) {
		<-s.aloneSem // the next record may go
		done <- err
	})
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("not acknowledged (the record may still be written): %w", ctx.Err())
	case <-s.abort:
		return fmt.Errorf("not acknowledged (the record may still be written): %w", sinks.ErrClosed)
	}
}
