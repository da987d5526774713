package natssink

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A publisher is one publishing shard of a connection (see publishShards):
// it publishes JetStream messages as core NATS messages whose reply subject
// lies under an inbox of its own, receives the PubAcks on one wildcard
// subscription to that inbox, and hands each to the Write that waits for
// it.
//
// It replaces jetstream.PublishMsgAsync, which per message allocates a
// future with two channels and a timer, draws a random reply token, and
// decodes the PubAck with encoding/json. A publisher registers one
// [waiter] per Write instead, under a sequence number that is never reused
// (reply subject <inbox>.<seq>_<index>, both base 36), so a PubAck that
// arrives after its Write gave up finds no waiter and is dropped; and it
// reads PubAcks with [parsePubAck].
//
// A publisher is safe for concurrent use.
type publisher struct {
	nc     *nats.Conn // set by dial before any Write can see the publisher
	window int        // the most messages waiting for a PubAck (see publishWindow)

	mu       sync.Mutex
	prefix   string             // "<inbox>.", set with sub
	sub      *nats.Subscription // nil until the first Write
	next     uint64             // the sequence of the last waiter registered
	waiting  map[uint64]*waiter // by sequence
	inflight int                // messages of waiting that have no outcome yet
	room     chan struct{}      // closed when inflight drops below window; nil when no Write waits for room
}

// A waiter is one Write's wait for its PubAcks. Its fields are guarded by
// the mu of the publisher it is registered with; once done is closed, or
// abandon has returned, the publisher no longer touches it.
type waiter struct {
	seq     uint64
	left    int           // slots still pending
	pending []bool        // slot i (event i) waits for its PubAck
	errs    []error       // the outcome of each slot that no longer waits; nil is stored
	done    chan struct{} // closed when left reaches 0
}

// errUnacked is the outcome abandon gives the slots still pending; the
// Write replaces it with an error that says why it stopped waiting.
var errUnacked = errors.New("natssink: no PubAck")

// register makes w, whose n pending slots are set, wait for their PubAcks
// and returns the reply subject prefix of its messages. While the window
// is full (and not empty) it waits for room, at most stall and while ctx
// lasts: a Write gets room for all its messages at once, and one larger
// than the window gets it when nothing else is in flight. On the first
// call it subscribes to the publisher's inbox.
func (p *publisher) register(ctx context.Context, w *waiter, n int, stall time.Duration) (string, error) {
	p.mu.Lock()
	if p.sub == nil {
		// The SUB goes out before any PUB that names the inbox, on the
		// same connection, so no PubAck can come before it.
		prefix := p.nc.NewInbox() + "."
		// The handler gets the prefix from its closure rather than from
		// p, which is set below.
		sub, err := p.nc.Subscribe(prefix+"*", func(m *nats.Msg) { p.handle(m, prefix) })
		if err != nil {
			p.mu.Unlock()
			return "", fmt.Errorf("subscribe to PubAcks: %w", err)
		}
		p.prefix, p.sub, p.waiting = prefix, sub, make(map[uint64]*waiter)
	}
	var timer *time.Timer
	for p.inflight > 0 && p.inflight+n > p.window {
		if p.room == nil {
			p.room = make(chan struct{})
		}
		room := p.room
		p.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(stall)
			defer timer.Stop()
		}
		select {
		case <-room:
		case <-timer.C:
			return "", jetstream.ErrTooManyStalledMsgs
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for room among the messages in flight: %w", ctx.Err())
		}
		p.mu.Lock()
	}
	p.next++
	w.seq, w.left, w.done = p.next, n, make(chan struct{})
	p.waiting[w.seq] = w
	p.inflight += n
	prefix := p.prefix
	p.mu.Unlock()
	return prefix, nil
}

// appendReply appends the reply subject of slot i of the waiter seq.
func appendReply(b []byte, prefix string, seq uint64, i int) []byte {
	b = append(b, prefix...)
	b = strconv.AppendUint(b, seq, 36)
	b = append(b, '_')
	return strconv.AppendUint(b, uint64(i), 36)
}

// parseReply is the inverse of appendReply.
func parseReply(subject, prefix string) (seq uint64, i int, ok bool) {
	tok, ok := strings.CutPrefix(subject, prefix)
	if !ok {
		return 0, 0, false
	}
	s, idx, ok := strings.Cut(tok, "_")
	if !ok {
		return 0, 0, false
	}
	seq, err := strconv.ParseUint(s, 36, 64)
	if err != nil {
		return 0, 0, false
	}
	n, err := strconv.ParseUint(idx, 36, 31)
	if err != nil {
		return 0, 0, false
	}
	return seq, int(n), true
}

// handle receives one reply on the inbox (nats.go calls it from the
// subscription's goroutine, one reply at a time).
func (p *publisher) handle(m *nats.Msg, prefix string) {
	seq, i, ok := parseReply(m.Subject, prefix)
	if !ok {
		return
	}
	err := ackError(m)
	p.mu.Lock()
	if w := p.waiting[seq]; w != nil && i < len(w.pending) && w.pending[i] {
		p.resolveLocked(w, i, err)
	}
	p.mu.Unlock()
}

// resolve gives slot i of w the outcome err, unless it has one already.
func (p *publisher) resolve(w *waiter, i int, err error) {
	p.mu.Lock()
	if w.pending[i] {
		p.resolveLocked(w, i, err)
	}
	p.mu.Unlock()
}

// resolveLocked gives pending slot i of w the outcome err. p.mu is held.
func (p *publisher) resolveLocked(w *waiter, i int, err error) {
	w.pending[i] = false
	w.errs[i] = err
	w.left--
	p.inflight--
	if w.left == 0 {
		delete(p.waiting, w.seq)
		close(w.done)
	}
	p.unstallLocked()
}

func (p *publisher) unstallLocked() {
	if p.room != nil && p.inflight < p.window {
		close(p.room)
		p.room = nil
	}
}

// abandon stops w's wait: its pending slots get errUnacked, and a PubAck
// that comes later is dropped.
func (p *publisher) abandon(w *waiter) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.left == 0 {
		return
	}
	for i, pend := range w.pending {
		if pend {
			w.pending[i] = false
			w.errs[i] = errUnacked
		}
	}
	p.inflight -= w.left
	w.left = 0
	delete(p.waiting, w.seq)
	p.unstallLocked()
}

// failAll gives every pending slot the outcome err: the connection
// dropped or closed, and the PubAcks of what it carried will not come
// (nats.go's own async publishing does the same on a disconnection).
func (p *publisher) failAll(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range p.waiting {
		for i, pend := range w.pending {
			if pend {
				p.resolveLocked(w, i, err)
			}
		}
	}
}

// pending is the number of messages that wait for a PubAck.
func (p *publisher) pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inflight
}
