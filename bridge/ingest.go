package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mistbridge/mistbridge/bridge/auth"
	"github.com/mistbridge/mistbridge/codec"
)

// errMediaType is answered with 415.
var errMediaType = errors.New("bridge: unsupported content type")

var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// handleWebhook is POST /webhooks/{receiver}.
func (s *Server) handleWebhook(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rc := s.receiver(r.PathValue("receiver"))
	if rc == nil {
		writeJSON(w, http.StatusNotFound, errorBody{Error: fmt.Sprintf("no receiver named %q", r.PathValue("receiver")), Reason: "unknown_receiver"})
		return
	}
	n, err := s.ingest(w, r, rc)
	code := s.answer(w, rc, n, err)
	if code == http.StatusOK {
		auth.Commit(rc.Verifier, r) // only now is the delivery remembered as done
	}
	s.metrics.requests.WithLabelValues(rc.Name, strconv.Itoa(code)).Inc()
	s.metrics.duration.WithLabelValues(rc.Name).Observe(time.Since(start).Seconds())
}

// ingest runs one request through the pipeline and returns how many events
// are safe at the brokers.
func (s *Server) ingest(w http.ResponseWriter, r *http.Request, rc *Receiver) (int, error) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return 0, errMethod
	}
	if err := checkMediaType(r.Header.Get("Content-Type")); err != nil {
		return 0, err
	}
	// Every check that needs no body (source address, required headers,
	// the signature header's presence, a whole token scheme) runs before
	// anything is held, so an unknown sender holds no admission room.
	if err := s.precheck(rc, r); err != nil {
		// The body is not read: close rather than wait for it to arrive.
		w.Header().Set("Connection", "close")
		return 0, err
	}
	verified := !auth.NeedsBody(rc.Verifier)
	body, hold, err := s.readBody(w, r, verified)
	if err != nil {
		w.Header().Set("Connection", "close")
		return 0, err
	}
	defer hold.release()
	if !verified {
		if err := s.verify(rc, r, body.Bytes()); err != nil {
			return 0, err
		}
		if err := hold.verified(r.Context()); err != nil {
			return 0, err
		}
	}
	topic := r.URL.Query().Get("topic")
	if topic == "" {
		topic = rc.DefaultTopic
	}
	batch, err := codec.Split(body.Bytes(), topic)
	if err != nil {
		return 0, err
	}
	return s.publish(r.Context(), rc, batch)
}

func (s *Server) verify(rc *Receiver, r *http.Request, body []byte) error {
	err := rc.Verifier.Verify(r, body)
	if err != nil {
		s.metrics.authFailures.WithLabelValues(rc.Name, auth.Reason(err)).Inc()
	}
	return err
}

func (s *Server) precheck(rc *Receiver, r *http.Request) error {
	err := auth.Precheck(rc.Verifier, r)
	if err != nil {
		s.metrics.authFailures.WithLabelValues(rc.Name, auth.Reason(err)).Inc()
	}
	return err
}

// reserveFor is the admission room a body of size bytes takes once
// verified: the body and the events split from it are both in memory
// until the answer.
func reserveFor(size int64) int64 { return 2*size + 512 }

// bodyChunk is the step in which room is taken while a body of unknown
// length, or of a sender not yet verified, arrives.
const bodyChunk = 64 << 10

// errBodyTimeout is answered with 408: the sender stalled mid-body.
var errBodyTimeout = errors.New("bridge: the body stalled")

// hold is the admission room and buffer a request holds.
type hold struct {
	s          *Server
	buf        *bytes.Buffer
	bytes      int64 // of the shared room
	unverified int64 // of the room for senders not yet verified, also in bytes
}

// grow takes n more bytes of room, waiting at most AdmitWait.
func (h *hold) grow(ctx context.Context, n int64, verified bool) error {
	actx, cancel := context.WithTimeout(ctx, h.s.cfg.AdmitWait)
	defer cancel()
	if !verified {
		if err := h.s.admit.acquireUnverified(actx, n); err != nil {
			return err
		}
		h.unverified += n
	}
	if err := h.s.admit.acquireBytes(actx, n); err != nil {
		return err
	}
	h.bytes += n
	h.s.metrics.inflightBytes.Add(float64(n))
	return nil
}

// verified moves the room to verified senders and tops it up to what the
// split events will need.
func (h *hold) verified(ctx context.Context) error {
	h.s.admit.releaseUnverified(h.unverified)
	h.unverified = 0
	if more := reserveFor(int64(h.buf.Len())) - h.bytes; more > 0 {
		return h.grow(ctx, more, true)
	}
	return nil
}

// release gives back the room and the buffer.
func (h *hold) release() {
	if h.buf != nil && h.buf.Cap() <= 1<<20 { // keep the pool from pinning huge buffers
		bodyPool.Put(h.buf)
	}
	h.buf = nil
	h.s.admit.releaseUnverified(h.unverified)
	h.s.admit.releaseBytes(h.bytes)
	h.s.metrics.inflightBytes.Sub(float64(h.bytes))
	h.bytes, h.unverified = 0, 0
}

// readBody reads the body under the size cap into a pooled buffer and
// returns it with the room it holds; release the hold when done.
//
// A verified sender of a body of known length takes all its room at once.
// Otherwise room is taken as the bytes arrive, so a connection that
// promises a large body and sends little holds little; a sender not yet
// verified also draws on a smaller pool (half the room), so unverified
// bodies can never take all of it. Each part of the body must arrive
// within BodyIdleTimeout, or the request fails with 408.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, verified bool) (*bytes.Buffer, *hold, error) {
	if r.ContentLength > s.cfg.MaxBodyBytes {
		return nil, nil, &http.MaxBytesError{Limit: s.cfg.MaxBodyBytes}
	}
	h := &hold{s: s, buf: bodyPool.Get().(*bytes.Buffer)}
	h.buf.Reset()
	if verified && r.ContentLength >= 0 {
		if err := h.grow(r.Context(), reserveFor(r.ContentLength), true); err != nil {
			h.release()
			return nil, nil, err
		}
	}
	if r.ContentLength > 0 {
		// ReadFrom wants MinRead bytes free to see EOF; without them a
		// buffer of exactly the body's size would double.
		h.buf.Grow(int(min(r.ContentLength, bodyChunk)) + bytes.MinRead)
	}
	body := &stallReader{
		r:        http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes),
		rc:       http.NewResponseController(w),
		idle:     s.cfg.BodyIdleTimeout,
		deadline: time.Now().Add(s.cfg.ReadTimeout),
	}
	defer body.clear()
	for {
		// One byte past the end is asked for, to see EOF (or the size cap).
		end := s.cfg.MaxBodyBytes + 1
		if r.ContentLength >= 0 {
			end = r.ContentLength + 1
		}
		step := min(int64(bodyChunk), end-int64(h.buf.Len()))
		if need := int64(h.buf.Len()) + step - h.bytes; need > 0 {
			if err := h.grow(r.Context(), need, verified); err != nil {
				h.release()
				return nil, nil, err
			}
		}
		n, err := h.buf.ReadFrom(io.LimitReader(body, step))
		if err != nil {
			h.release()
			var mbe *http.MaxBytesError
			switch {
			case errors.As(err, &mbe):
				return nil, nil, mbe
			case errors.Is(err, os.ErrDeadlineExceeded):
				return nil, nil, fmt.Errorf("%w: nothing arrived for %v (MISTBRIDGE_BODY_IDLE_TIMEOUT)", errBodyTimeout, s.cfg.BodyIdleTimeout)
			}
			return nil, nil, fmt.Errorf("%w: %w", errReadBody, err)
		}
		if n < step {
			return h.buf, h, nil
		}
	}
}

// stallReader sets a read deadline before each read: BodyIdleTimeout from
// now, never past the request's whole ReadTimeout.
type stallReader struct {
	r        io.Reader
	rc       *http.ResponseController
	idle     time.Duration
	deadline time.Time
	set      bool
}

func (s *stallReader) Read(p []byte) (int, error) {
	d := time.Now().Add(s.idle)
	if d.After(s.deadline) {
		d = s.deadline
	}
	if s.rc.SetReadDeadline(d) == nil {
		s.set = true
	}
	return s.r.Read(p)
}

// clear puts back the request's whole deadline, which still bounds what
// the server may read of the connection after the handler.
func (s *stallReader) clear() {
	if s.set {
		_ = s.rc.SetReadDeadline(s.deadline)
	}
}

// publish maps the batches, admits their events (waiting at most
// AdmitWait) and waits until every one is delivered. Every topic is
// checked first (allowed for the receiver, routed somewhere): a refused
// request publishes nothing.
func (s *Server) publish(ctx context.Context, rc *Receiver, batches ...codec.Batch) (int, error) {
	n := 0
	for _, b := range batches {
		if len(b.Events) == 0 {
			continue
		}
		if !rc.allows(b.Topic) {
			return 0, fmt.Errorf("%w: %q is not in the receiver's topics (%s)", ErrTopicNotAllowed, b.Topic, strings.Join(rc.Topics, ","))
		}
		if err := s.delivery.Check(b.Topic); err != nil {
			return 0, err
		}
		n += len(b.Events)
	}
	if n == 0 {
		return 0, nil
	}
	actx, cancel := context.WithTimeout(ctx, s.cfg.AdmitWait)
	err := s.admit.acquireEvents(actx, n)
	cancel()
	if err != nil {
		return 0, err
	}
	s.metrics.inflightEvents.Add(float64(n))
	defer func() {
		s.admit.releaseEvents(n)
		s.metrics.inflightEvents.Sub(float64(n))
	}()
	evs := make([]codec.Event, 0, n)
	for _, b := range batches {
		for i := range b.Events {
			evs = append(evs, b.Event(i))
		}
	}
	ptrs := make([]*codec.Event, n)
	for i := range evs {
		ptrs[i] = &evs[i]
	}
	dctx, cancel := context.WithTimeout(ctx, s.cfg.DeliveryTimeout)
	defer cancel()
	if err := s.delivery.Deliver(dctx, ptrs); err != nil {
		return 0, err
	}
	for _, b := range batches {
		s.metrics.events.WithLabelValues(rc.Name, b.Topic).Add(float64(len(b.Events)))
	}
	return n, nil
}

// checkMediaType accepts a missing type, application/json,
// application/*+json and text/plain (some senders label JSON so).
func checkMediaType(ct string) error {
	if ct == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && (mt == "application/json" || mt == "text/plain" ||
		strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")) {
		return nil
	}
	return fmt.Errorf("%w %q: send application/json", errMediaType, ct)
}
