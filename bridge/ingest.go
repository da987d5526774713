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
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/sync/semaphore"

	"github.com/mistbridge/mistbridge/bridge/auth"
	"github.com/mistbridge/mistbridge/codec"
	"github.com/mistbridge/mistbridge/sinks"
)

// errMediaType is answered with 415.
var errMediaType = errors.New("bridge: unsupported content type")

// handleWebhook is POST /webhooks/{receiver}.
func (s *Server) handleWebhook(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var ex exchange
	ex.begin(w, r, start)
	r, span := s.startRequest(r, &ex, "POST /webhooks/{receiver}")
	rc := s.receiver(r.PathValue("receiver"))
	if rc == nil {
		writeJSON(w, http.StatusNotFound, errorBody{Error: fmt.Sprintf("no receiver named %q", r.PathValue("receiver")), Reason: "unknown_receiver"})
		ex.reason = "unknown_receiver"
		endRequest(span, &ex, http.StatusNotFound)
		return
	}
	ex.rc = rc
	n, err := s.ingest(w, r, &ex)
	code := s.answer(w, &ex, n, err)
	endRequest(span, &ex, code)
	if code == http.StatusOK {
		auth.Commit(rc.Verifier, r) // only now is the delivery remembered as done
	}
	s.metrics.requests.WithLabelValues(rc.Name, statusLabel(code)).Inc()
	s.metrics.duration.WithLabelValues(rc.Name).Observe(time.Since(start).Seconds())
	if s.status != nil {
		s.status.Request(rc.Name, ex.topic, n, code, ex.reason, start)
	}
	s.logDone(r.Context(), &ex, code, "webhook")
}

// ingest runs one request through the pipeline and returns how many events
// are safe at the brokers.
func (s *Server) ingest(w http.ResponseWriter, r *http.Request, ex *exchange) (int, error) {
	rc := ex.rc
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
	_, sp := startSpan(r.Context(), "auth.precheck")
	err := s.precheck(rc, r)
	endSpan(sp, err)
	if err != nil {
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
		_, sp := startSpan(r.Context(), "auth.verify")
		err := s.verify(rc, r, body.Bytes())
		endSpan(sp, err)
		if err != nil {
			return 0, err
		}
		if err := hold.verified(r.Context()); err != nil {
			return 0, err
		}
	}
	topic := queryTopic(r)
	if topic == "" {
		topic = rc.DefaultTopic
	}
	ex.topic = topic
	_, sp = startSpan(r.Context(), "split")
	batch, err := codec.Split(body.Bytes(), topic)
	endSpan(sp, err)
	if err != nil {
		return 0, err
	}
	ex.topic, ex.events = batch.Topic, len(batch.Events)
	if s.archive != nil {
		s.archiveBody(r, ex, topic, body.Bytes())
	}
	return s.publish(r.Context(), rc, ex.start, batch)
}

// queryTopic is the request's ?topic=, "" when it has none. A request
// without a query string, the common case, parses none.
func queryTopic(r *http.Request) string {
	if r.URL.RawQuery == "" {
		return ""
	}
	return r.URL.Query().Get("topic")
}

// statusLabels are the code label values of the common answers, so that
// counting a request formats no number. Read-only once built.
var statusLabels = func() map[int]string {
	m := map[int]string{}
	for _, code := range []int{200, 400, 401, 403, 404, 405, 408, 413, 415, 422, 429, 500, 502, 503, 504} {
		m[code] = strconv.Itoa(code)
	}
	return m
}()

// statusLabel is strconv.Itoa(code), without allocating for common codes.
func statusLabel(code int) string {
	if l, ok := statusLabels[code]; ok {
		return l
	}
	return strconv.Itoa(code)
}

func (s *Server) verify(rc *Receiver, r *http.Request, body []byte) error {
	err := rc.Verifier.Verify(r, body)
	if err != nil {
		s.metrics.authFailures.WithLabelValues(rc.Name, auth.Reason(err)).Inc()
	}
	return err
}

// archiveBody hands a verified body to the archive; a failure is logged
// and counted, not answered.
func (s *Server) archiveBody(r *http.Request, ex *exchange, topic string, body []byte) {
	err := s.archive.Archive(r.Context(), ArchiveRecord{
		Receiver: ex.rc.Name, Received: ex.start, Topic: topic,
		ContentType: r.Header.Get("Content-Type"), UserAgent: r.Header.Get("User-Agent"),
		Body: body,
	})
	if err != nil {
		s.metrics.archiveFailures.Inc()
		s.log.Warn("archiving a request failed", "request_id", ex.id, "receiver", ex.rc.Name, "err", err)
	}
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

// hold is the admission room and the memory a request holds: its body
// buffer and the reader that fills it. Holds are pooled: one is taken by
// readBody and given back by release, after which it must not be used.
type hold struct {
	s          *Server
	buf        bytes.Buffer
	bytes      int64 // of the shared room
	unverified int64 // of the room for senders not yet verified, also in bytes
	body       stallReader
	step       io.LimitedReader
}

var holdPool = sync.Pool{New: func() any { return new(hold) }}

// maxPooledBody bounds the body buffer a pooled hold keeps, so the pool
// does not pin huge buffers.
const maxPooledBody = 1 << 20

// grow takes n more bytes of room, waiting at most AdmitWait.
func (h *hold) grow(ctx context.Context, n int64, verified bool) error {
	var wait admitWait // one deadline for both waits, made only if one waits
	defer wait.stop()
	if !verified {
		if !admitNow(ctx, h.s.cfg.AdmitWait, h.s.admit.unverified, n) {
			if err := h.s.admit.acquireUnverified(wait.ctx(ctx, h.s.cfg.AdmitWait), n); err != nil {
				return err
			}
		}
		h.unverified += n
	}
	if !admitNow(ctx, h.s.cfg.AdmitWait, h.s.admit.bytes, n) {
		if err := h.s.admit.acquireBytes(wait.ctx(ctx, h.s.cfg.AdmitWait), n); err != nil {
			return err
		}
	}
	h.bytes += n
	h.s.metrics.inflightBytes.Add(float64(n))
	return nil
}

// admitNow takes n of sem when that needs no wait, and reports whether it
// did: room free and nobody waiting. It spares the timer and context of a
// wait that does not happen, and it is what MISTBRIDGE_ADMIT_WAIT=0 means:
// take free room, never wait (sem.Acquire with an expired deadline would
// refuse even free room).
func admitNow(ctx context.Context, _ time.Duration, sem *semaphore.Weighted, n int64) bool {
	return ctx.Err() == nil && sem.TryAcquire(n)
}

// admitWait is a deadline for admission, made on first use.
type admitWait struct {
	c      context.Context
	cancel context.CancelFunc
}

func (w *admitWait) ctx(parent context.Context, d time.Duration) context.Context {
	if w.c == nil {
		w.c, w.cancel = context.WithTimeout(parent, d)
	}
	return w.c
}

func (w *admitWait) stop() {
	if w.cancel != nil {
		w.cancel()
	}
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

// release gives back the room, and the hold with its buffer to the pool.
func (h *hold) release() {
	s := h.s
	s.admit.releaseUnverified(h.unverified)
	s.admit.releaseBytes(h.bytes)
	s.metrics.inflightBytes.Sub(float64(h.bytes))
	h.s, h.bytes, h.unverified = nil, 0, 0
	h.body, h.step = stallReader{}, io.LimitedReader{} // drop the request
	if h.buf.Cap() > maxPooledBody {
		h.buf = bytes.Buffer{}
	}
	h.buf.Reset()
	holdPool.Put(h)
}

// readBody reads the body under the size cap into a pooled buffer and
// returns it with the room it holds; release the hold when done, and use
// the buffer only until then.
//
// A verified sender of a body of known length takes all its room at once.
// Otherwise room is taken as the bytes arrive, so a connection that
// promises a large body and sends little holds little; a sender not yet
// verified also draws on a smaller pool (half the room), so unverified
// bodies can never take all of it. Each part of the body must arrive
// within BodyIdleTimeout, or the request fails with 408.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, verified bool) (_ *bytes.Buffer, _ *hold, err error) {
	if r.ContentLength > s.cfg.MaxBodyBytes {
		return nil, nil, &http.MaxBytesError{Limit: s.cfg.MaxBodyBytes}
	}
	h := holdPool.Get().(*hold)
	h.s = s
	h.body = stallReader{
		r:        http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes),
		rc:       *http.NewResponseController(w),
		idle:     s.cfg.BodyIdleTimeout,
		deadline: time.Now().Add(s.cfg.ReadTimeout),
	}
	defer func() {
		h.body.clear()
		if err != nil {
			h.release()
		}
	}()
	if verified && r.ContentLength >= 0 {
		if err := h.grow(r.Context(), reserveFor(r.ContentLength), true); err != nil {
			return nil, nil, err
		}
	}
	if r.ContentLength > 0 {
		// ReadFrom wants MinRead bytes free to see EOF; without them a
		// buffer of exactly the body's size would double.
		h.buf.Grow(int(min(r.ContentLength, bodyChunk)) + bytes.MinRead)
	}
	for {
		// One byte past the end is asked for, to see EOF (or the size cap).
		end := s.cfg.MaxBodyBytes + 1
		if r.ContentLength >= 0 {
			end = r.ContentLength + 1
		}
		step := min(int64(bodyChunk), end-int64(h.buf.Len()))
		if need := int64(h.buf.Len()) + step - h.bytes; need > 0 {
			if err := h.grow(r.Context(), need, verified); err != nil {
				return nil, nil, err
			}
		}
		h.step = io.LimitedReader{R: &h.body, N: step}
		n, err := h.buf.ReadFrom(&h.step)
		if err != nil {
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
			return &h.buf, h, nil
		}
	}
}

// stallReader sets a read deadline before each read: BodyIdleTimeout from
// now, never past the request's whole ReadTimeout.
type stallReader struct {
	r        io.Reader
	rc       http.ResponseController
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

// eventBufs are the events of one request and the pointers Deliver takes,
// pooled. Delivery implementations neither keep nor modify what they are
// given once Deliver returns (see [Delivery]), so they are reused.
type eventBufs struct {
	evs  []codec.Event
	ptrs []*codec.Event
}

var eventPool = sync.Pool{New: func() any { return new(eventBufs) }}

// maxPooledEvents bounds the events a pooled eventBufs keeps room for.
const maxPooledEvents = 4096

func (e *eventBufs) release() {
	if cap(e.evs) > maxPooledEvents {
		return
	}
	clear(e.evs) // drop what the events point to: bodies, strings
	clear(e.ptrs)
	e.evs, e.ptrs = e.evs[:0], e.ptrs[:0]
	eventPool.Put(e)
}

// publish maps the batches, admits their events (waiting at most
// AdmitWait) and waits until every one is delivered. Every topic is
// checked first (allowed for the receiver, routed somewhere): a refused
// request publishes nothing.
func (s *Server) publish(ctx context.Context, rc *Receiver, start time.Time, batches ...codec.Batch) (int, error) {
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
	if !admitNow(ctx, s.cfg.AdmitWait, s.admit.events, int64(n)) {
		actx, cancel := context.WithTimeout(ctx, s.cfg.AdmitWait)
		err := s.admit.acquireEvents(actx, n)
		cancel()
		if err != nil {
			return 0, err
		}
	}
	s.metrics.inflightEvents.Add(float64(n))
	defer func() {
		s.admit.releaseEvents(n)
		s.metrics.inflightEvents.Sub(float64(n))
	}()
	bufs := eventPool.Get().(*eventBufs)
	defer bufs.release()
	evs := slices.Grow(bufs.evs[:0], n)
	for i := range batches {
		evs = batches[i].AppendEvents(evs)
	}
	ptrs := slices.Grow(bufs.ptrs[:0], n)
	for i := range evs {
		ptrs = append(ptrs, &evs[i])
	}
	bufs.evs, bufs.ptrs = evs, ptrs
	stampTrace(ctx, evs)
	dctx, cancel := context.WithTimeout(sinks.WithReceived(ctx, start), s.cfg.DeliveryTimeout)
	defer cancel()
	dctx, sp := startSpan(dctx, "deliver")
	if sp != nil {
		sp.SetAttributes(attribute.Int("mistbridge.events", n))
	}
	err := s.delivery.Deliver(dctx, ptrs)
	endSpan(sp, err)
	if err != nil {
		return 0, err
	}
	if s.status != nil {
		s.status.Events(ptrs)
	}
	for _, b := range batches {
		s.metrics.events.WithLabelValues(rc.Name, s.metrics.topics.label(b.Topic)).Add(float64(len(b.Events)))
	}
	return n, nil
}

// checkMediaType accepts a missing type, application/json,
// application/*+json and text/plain (some senders label JSON so).
func checkMediaType(ct string) error {
	if ct == "" || ct == "application/json" { // the common cases, parsed for nothing
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && (mt == "application/json" || mt == "text/plain" ||
		strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")) {
		return nil
	}
	return fmt.Errorf("%w %q: send application/json", errMediaType, ct)
}
