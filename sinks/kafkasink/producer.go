package kafkasink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/mistbridge/mistbridge/sinks"
)

// How records reach the brokers.
//
// Each topic partition has a queue. A Write puts its records for a
// partition in that queue as one segment, in the order of its events, and
// when no producer goroutine is running for the partition it starts one.
// The producer takes everything queued (up to Config.BatchSize records and
// maxRequestBytes bytes), sends it in one produce request (acks=all),
// records each record's outcome, and repeats; when the queue is empty it
// exits. So a Write with nothing else in flight is sent at once, with no
// timer, and under load the records of concurrent Writes that queued up
// while a request was in flight share the next request: batches grow with
// the load instead of with a timeout.
//
// One request at a time per partition keeps the partition's records in
// the order they were queued: two requests in flight on different
// connections could be appended in either order. For the same reason,
// when a request fails, the records of its segments that were not in it
// fail with it instead of being sent after it (a segment longer than one
// request is sent in several): a retry of the failed ones would otherwise
// land behind later records of the same key.

// topicPartition names a partition.
type topicPartition struct {
	topic     string
	partition int
}

// record is one encoded event, ready for a produce request. Its bytes are
// the sink's own copies, so a producer may read them after the Write that
// made them has returned.
type record struct {
	topic      string
	key, value []byte
	headers    []kafka.Header
	size       int // recordSizeBound
}

// call is one Write or DeadLetter waiting for its records.
type call struct {
	recs []record

	// errs[i] is the outcome of recs[i], written by the producer of its
	// partition under that partition's lock. The call reads it once done
	// is closed, or under the lock when it gives up.
	errs []error

	pending atomic.Int32  // segments whose records do not all have an outcome
	done    chan struct{} // closed when pending reaches zero
}

func newCall(recs []record, segments int) *call {
	c := &call{recs: recs, errs: make([]error, len(recs)), done: make(chan struct{})}
	c.pending.Store(int32(segments))
	return c
}

// settled counts one more segment with an outcome for every record.
func (c *call) settled() {
	if c.pending.Add(-1) == 0 {
		close(c.done)
	}
}

// segment is the part of a call bound for one partition. Its fields after
// idx change under the partition's lock.
type segment struct {
	c     *call
	p     *partition
	idx   []int // indexes into c.recs, in the order of the call's events
	next  int   // idx[:next] have been taken into a request
	acked int   // idx[:acked] have an outcome
	// alone sends each record in a request of its own: a dead letter
	// shares no request with events.
	alone bool
	// dropped is set when the call gives up: nothing more of it is sent.
	dropped bool
}

// chunk is a run of a segment's records in one request: seg.idx[from:to].
type chunk struct {
	seg      *segment
	from, to int
}

// partition is a partition's queue and the state of its producer.
type partition struct {
	tp topicPartition

	mu      sync.Mutex
	queue   []*segment // queue[head:] waits; queue[head] may be partly taken
	head    int
	queued  int  // records in the queue not yet taken
	running bool // a producer goroutine is running for the partition

	chunks []chunk // owned by the running producer: its request
}

// partition returns the queue of tp, creating it on first use.
func (s *Sink) partition(tp topicPartition) *partition {
	s.partsMu.RLock()
	p := s.parts[tp]
	s.partsMu.RUnlock()
	if p != nil {
		return p
	}
	s.partsMu.Lock()
	defer s.partsMu.Unlock()
	if p = s.parts[tp]; p == nil {
		p = &partition{tp: tp}
		s.parts[tp] = p
	}
	return p
}

// enqueue appends seg to its partition's queue and makes sure a producer
// runs for it. It returns false, queueing nothing, when the sink has
// stopped its producers for good (Close).
func (s *Sink) enqueue(seg *segment) bool {
	p := seg.p
	p.mu.Lock()
	if !p.running {
		// A producer is started only by a call in progress, so the
		// workers gate is shut only once no call can start one (or when
		// Close gave up waiting): see Close.
		if !s.workers.enter() {
			p.mu.Unlock()
			return false
		}
		p.running = true
		s.spawn(p)
	}
	if p.head > 0 && p.head >= len(p.queue)/2 {
		// Reclaim the popped front, so that a queue that never empties
		// does not grow for ever.
		n := copy(p.queue, p.queue[p.head:])
		clear(p.queue[n:])
		p.queue, p.head = p.queue[:n], 0
	}
	p.queue = append(p.queue, seg)
	p.queued += len(seg.idx)
	p.mu.Unlock()
	if s.hooks.queued != nil {
		s.hooks.queued(p.tp)
	}
	return true
}

// produce is the producer goroutine of p: it sends what p has queued until
// the queue is empty. ctx ends when Close gives up waiting, which fails
// what is in flight and what is queued.
func (s *Sink) produce(ctx context.Context, p *partition) {
	defer s.workers.leave()
	for {
		p.mu.Lock()
		if s.cfg.BatchTimeout > 0 && p.queued > 0 && p.queued < s.cfg.BatchSize {
			// Linger, as configured: wait for more records before taking
			// any, so that nothing taken waits (a call that gives up
			// meanwhile just leaves the queue).
			p.mu.Unlock()
			if s.hooks.linger != nil {
				s.hooks.linger()
			}
			t := time.NewTimer(s.cfg.BatchTimeout)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
			p.mu.Lock()
		}
		p.take(s.cfg.BatchSize)
		if len(p.chunks) == 0 {
			p.running = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		s.flush(ctx, p)
	}
}

// take moves the oldest queued records into p.chunks: up to maxRecords
// records and maxRequestBytes bytes, at least one record, and a record of
// an alone segment by itself. Segments whose call gave up are dropped.
// p.mu is held.
func (p *partition) take(maxRecords int) {
	p.chunks = p.chunks[:0]
	n, size := 0, 0
	for p.head < len(p.queue) {
		seg := p.queue[p.head]
		if seg.dropped {
			p.queued -= len(seg.idx) - seg.next
			seg.next = len(seg.idx)
			p.pop()
			continue
		}
		if seg.alone && n > 0 {
			return
		}
		from := seg.next
		for seg.next < len(seg.idx) {
			r := &seg.c.recs[seg.idx[seg.next]]
			if n > 0 && (n >= maxRecords || size+r.size > maxRequestBytes) {
				break
			}
			n++
			size += r.size
			seg.next++
			if seg.alone {
				break
			}
		}
		if seg.next > from {
			p.chunks = append(p.chunks, chunk{seg: seg, from: from, to: seg.next})
			p.queued -= seg.next - from
		}
		if seg.next == len(seg.idx) {
			p.pop()
		}
		if seg.alone || seg.next < len(seg.idx) {
			return // a record of a dead letter goes alone; or the request is full
		}
	}
}

// pop removes the segment at the head of the queue. p.mu is held.
func (p *partition) pop() {
	p.queue[p.head] = nil
	p.head++
	if p.head == len(p.queue) {
		p.queue, p.head = p.queue[:0], 0
	}
}

// flush sends the records in p.chunks in one produce request and records
// their outcomes. When the brokers refuse the request for its size and it
// holds more than one record, each record is sent again in a request of
// its own: only a record refused alone is too large.
func (s *Sink) flush(ctx context.Context, p *partition) {
	n := 0
	for _, ch := range p.chunks {
		n += ch.to - ch.from
	}
	cause, recordErrs := s.request(ctx, p)
	if n > 1 && isSizeError(cause) {
		s.isolate(ctx, p)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	b := 0 // index of the record in the request's batch
	for _, ch := range p.chunks {
		for k := ch.from; k < ch.to; k++ {
			ch.seg.c.errs[ch.seg.idx[k]] = recordError(cause, recordErrs, b)
			b++
		}
		p.settle(ch.seg, ch.to, cause)
	}
}

// isolate sends the records of p.chunks one by one, in order.
func (s *Sink) isolate(ctx context.Context, p *partition) {
	all := append([]chunk(nil), p.chunks...)
	for _, ch := range all {
		for k := ch.from; k < ch.to; k++ {
			p.mu.Lock()
			skip := ch.seg.dropped || ch.seg.acked > k // the call gave up, or an earlier record failed
			p.mu.Unlock()
			if skip {
				continue
			}
			p.chunks = append(p.chunks[:0], chunk{seg: ch.seg, from: k, to: k + 1})
			cause, recordErrs := s.request(ctx, p)
			p.mu.Lock()
			ch.seg.c.errs[ch.seg.idx[k]] = recordError(cause, recordErrs, 0)
			p.settle(ch.seg, k+1, cause)
			p.mu.Unlock()
		}
	}
}

// settle records that seg.idx[:upto] have an outcome, the last of them
// cause. After a failure other than a size refusal the rest of the segment
// fails with it, unsent (see the comment at the top of this file). When
// every record of seg has an outcome, its call learns it. p.mu is held.
func (p *partition) settle(seg *segment, upto int, cause error) {
	seg.acked = upto
	if cause != nil && !isSizeError(cause) && !seg.alone && seg.acked < len(seg.idx) {
		rest := fmt.Errorf("%w (not sent: an earlier record of the same write to this partition failed)", cause)
		for k := seg.acked; k < len(seg.idx); k++ {
			seg.c.errs[seg.idx[k]] = rest
		}
		if seg.next < len(seg.idx) && p.head < len(p.queue) && p.queue[p.head] == seg {
			// Only the head of the queue can be partly taken.
			p.queued -= len(seg.idx) - seg.next
			seg.next = len(seg.idx)
			p.pop()
		}
		seg.acked = len(seg.idx)
	}
	if seg.acked == len(seg.idx) {
		seg.c.settled()
	}
}

// recordError is the outcome of the b-th record of a request that ended
// with cause: the broker's error for that record when it named one, and a
// transient error when it named others only (the batch was refused for
// their sake).
func recordError(cause error, recordErrs map[int]error, b int) error {
	if cause == nil || len(recordErrs) == 0 {
		return cause
	}
	if e, ok := recordErrs[b]; ok {
		return fmt.Errorf("%w: %v", cause, e)
	}
	return fmt.Errorf("%w: the brokers refused the batch for another record (%v)", errBatchRefused, cause)
}

// errBatchRefused is the transient error of a record that was refused only
// because it shared a batch with an invalid one.
var errBatchRefused = errors.New("kafkasink: not written")

// request sends p.chunks in one produce request and returns the error of
// the request (nil when every record is acknowledged) with the broker's
// errors per record, by index in the batch, when it gave any.
func (s *Sink) request(ctx context.Context, p *partition) (error, map[int]error) {
	// A reader of its own per request: when ctx ends first, Produce
	// returns while the connection may still be encoding the request.
	rd := &recordReader{}
	rd.reset(p.chunks)
	res, err := s.client.Produce(ctx, &kafka.ProduceRequest{
		Topic:        p.tp.topic,
		Partition:    p.tp.partition,
		RequiredAcks: kafka.RequireAll,
		Compression:  s.compression,
		Records:      rd,
	})
	switch {
	case err != nil && ctx.Err() != nil:
		return fmt.Errorf("closed before the brokers answered: %w", sinks.ErrClosed), nil
	case err != nil:
		return err, nil
	case res.Error != nil:
		return res.Error, res.RecordErrors
	}
	return nil, nil
}

// recordReader is the kafka.RecordReader of a request: the records of its
// chunks, in order. It reuses one Record and one reader for keys and
// values, as kafka-go's Writer does, so a request allocates nothing per
// record. It holds its own copy of the chunks.
type recordReader struct {
	chunks []chunk
	c, k   int // the next record is chunks[c].seg.idx[k]
	rec    kafka.Record
	key    bytesReadCloser
	value  bytesReadCloser
}

func (r *recordReader) reset(chunks []chunk) {
	r.chunks, r.c, r.k = append(r.chunks[:0], chunks...), 0, 0
	if len(chunks) > 0 {
		r.k = chunks[0].from
	}
	r.rec = kafka.Record{}
}

// ReadRecord returns the next record, valid until the next call.
func (r *recordReader) ReadRecord() (*kafka.Record, error) {
	for r.c < len(r.chunks) {
		ch := r.chunks[r.c]
		if r.k < ch.to {
			rec := &ch.seg.c.recs[ch.seg.idx[r.k]]
			r.k++
			r.key.Reset(rec.key)
			r.value.Reset(rec.value)
			r.rec = kafka.Record{Headers: rec.headers, Key: &r.key, Value: &r.value}
			return &r.rec, nil
		}
		r.c++
		if r.c < len(r.chunks) {
			r.k = r.chunks[r.c].from
		}
	}
	return nil, io.EOF
}

type bytesReadCloser struct{ bytes.Reader }

func (*bytesReadCloser) Close() error { return nil }
