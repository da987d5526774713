package auth

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Defaults of [ReplayOptions].
const (
	DefaultReplayWindow = 10 * time.Minute
	DefaultReplaySize   = 100_000
)

// ReplayOptions configure a [Replay] wrapper. The zero value of each field
// means its documented default.
type ReplayOptions struct {
	// Window is how long an accepted delivery is remembered. With a signed
	// timestamp it should be at least twice the tolerance: a timestamp is
	// good from tolerance before it to tolerance after. The default is
	// [DefaultReplayWindow] (10m).
	Window time.Duration
	// Size bounds how many deliveries are remembered; when full, the oldest
	// is forgotten first. Each costs about 100 bytes. The default is
	// [DefaultReplaySize] (100,000).
	Size int
	// Now returns the current time. The default is time.Now.
	Now func() time.Time
}

// Replay refuses ([ReasonReplayed]) a delivery the bridge already answered
// 2xx within the window. It asks the next verifier first and remembers only
// deliveries that it accepted and that were then delivered ([Commit]), so a
// forger cannot fill its memory or block a delivery id in advance, and a
// sender's retry after an error is not refused. Two copies of a delivery in
// flight at once both pass; their events have the same ids, so the brokers
// and consumers drop the second. A delivery is what key returns for the request (see
// [HMAC.DeliveryKey]); a request without one passes. Keys are kept as
// SHA-256 digests: memory per delivery is fixed whatever the sender sends.
// It is safe for concurrent use. Build it with [NewReplay].
type Replay struct {
	next   Verifier
	key    func(*http.Request) (string, bool)
	window time.Duration
	now    func() time.Time

	mu    sync.Mutex
	cache replayCache
}

// NewReplay returns next with replay protection keyed by key.
func NewReplay(next Verifier, key func(*http.Request) (string, bool), o ReplayOptions) (*Replay, error) {
	if next == nil || key == nil {
		return nil, errors.New("auth: replay: a verifier and a key function are required")
	}
	if o.Window < 0 || o.Size < 0 {
		return nil, errors.New("auth: replay: the window and size must not be negative")
	}
	if o.Window == 0 {
		o.Window = DefaultReplayWindow
	}
	if o.Size == 0 {
		o.Size = DefaultReplaySize
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Replay{
		next: next, key: key, window: o.Window, now: o.Now,
		cache: replayCache{size: o.Size, seen: map[digest]time.Time{}},
	}, nil
}

// Verify implements [Verifier]. It only looks: a delivery is remembered
// by [Commit] once the bridge has answered it 2xx, so a delivery that failed
// downstream (a broker down, the bridge full) can be sent again with the
// same id and is not refused as a replay.
func (p *Replay) Verify(r *http.Request, body []byte) error {
	if err := p.next.Verify(r, body); err != nil {
		return err
	}
	k, ok := p.key(r)
	if !ok {
		return nil
	}
	d := digest(sha256.Sum256([]byte(k)))
	p.mu.Lock()
	seen := p.cache.contains(d, p.now())
	p.mu.Unlock()
	if seen {
		return Unauthorized(ReasonReplayed, "")
	}
	return nil
}

// Commit remembers r's delivery for the window (see [Commit]), then
// passes r on to the verifier it wraps.
func (p *Replay) Commit(r *http.Request) {
	Commit(p.next, r)
	k, ok := p.key(r)
	if !ok {
		return
	}
	d := digest(sha256.Sum256([]byte(k)))
	now := p.now()
	p.mu.Lock()
	p.cache.add(d, now, now.Add(p.window))
	p.mu.Unlock()
}

// Len returns how many deliveries are remembered now.
func (p *Replay) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cache.n
}

// Precheck implements [Prechecker]: the wrapped verifier's. Whether a
// delivery was seen is only told to a request that passed Verify, so a
// stranger cannot probe which delivery ids were accepted.
func (p *Replay) Precheck(r *http.Request) error { return Precheck(p.next, r) }

// Capabilities implements [Capable]: the wrapped verifier's.
func (p *Replay) Capabilities() Capabilities { return CapabilitiesOf(p.next) }

func (p *Replay) unwrap() Verifier { return p.next }

// Close closes the wrapped verifier.
func (p *Replay) Close() error { return closeNext(p.next) }

// String describes p and the verifier it wraps.
func (p *Replay) String() string {
	return fmt.Sprintf("replay(window=%s size=%d) -> %s", p.window, p.cache.size, describe(p.next))
}

// GoString is String.
func (p *Replay) GoString() string { return p.String() }

// replayCache remembers digests until they expire, oldest first, at most
// size of them. Entries join in time order and all live as long, so a ring
// of them is also ordered by expiry: expiring is popping the head.
type replayCache struct {
	size    int
	seen    map[digest]time.Time // digest -> expiry
	ring    []replayEntry
	head, n int
}

type replayEntry struct {
	key digest
	exp time.Time
}

// contains reports whether key is remembered and not expired at now.
func (c *replayCache) contains(key digest, now time.Time) bool {
	e, ok := c.seen[key]
	return ok && now.Before(e)
}

// add records key until exp and reports whether it was not already there.
func (c *replayCache) add(key digest, now, exp time.Time) bool {
	for c.n > 0 && !now.Before(c.ring[c.head].exp) {
		c.pop()
	}
	if e, ok := c.seen[key]; ok && now.Before(e) {
		return false
	}
	if c.n == c.size {
		c.pop()
	}
	if c.n == len(c.ring) {
		c.grow()
	}
	c.ring[(c.head+c.n)%len(c.ring)] = replayEntry{key: key, exp: exp}
	c.n++
	c.seen[key] = exp
	return true
}

func (c *replayCache) pop() {
	e := c.ring[c.head]
	if exp, ok := c.seen[e.key]; ok && exp.Equal(e.exp) {
		delete(c.seen, e.key)
	}
	c.ring[c.head] = replayEntry{}
	c.head = (c.head + 1) % len(c.ring)
	c.n--
}

// grow doubles the ring (up to size), so memory follows the traffic.
func (c *replayCache) grow() {
	n := min(max(2*len(c.ring), 64), c.size)
	ring := make([]replayEntry, n)
	for i := 0; i < c.n; i++ {
		ring[i] = c.ring[(c.head+i)%len(c.ring)]
	}
	c.ring, c.head = ring, 0
}
