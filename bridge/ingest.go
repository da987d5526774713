package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
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
	rc, ok := s.receivers[r.PathValue("receiver")]
	if !ok {
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
	// A scheme that does not sign the body is checked before the body
	// takes admission room, so an unauthenticated sender cannot hold any.
	early := !auth.NeedsBody(rc.Verifier)
	if early {
		if err := s.verify(rc, r, nil); err != nil {
			return 0, err
		}
	}
	body, release, err := s.readBody(w, r)
	if err != nil {
		return 0, err
	}
	defer release()
	if !early {
		if err := s.verify(rc, r, body.Bytes()); err != nil {
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

// reserveFor is the admission room a body of size bytes takes: the body
// and the events split from it are both in memory until the answer.
func reserveFor(size int64) int64 { return 2*size + 512 }

// readBody reserves room for the body (waiting at most AdmitWait), then
// reads it under the size cap. release returns both the room and the buffer.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) (*bytes.Buffer, func(), error) {
	if r.ContentLength > s.cfg.MaxBodyBytes {
		return nil, nil, &http.MaxBytesError{Limit: s.cfg.MaxBodyBytes}
	}
	size := s.cfg.MaxBodyBytes // unknown length: reserve the most it can be
	if r.ContentLength >= 0 {
		size = r.ContentLength
	}
	reserve := reserveFor(size)
	actx, cancel := context.WithTimeout(r.Context(), s.cfg.AdmitWait)
	err := s.admit.acquireBytes(actx, reserve)
	cancel()
	if err != nil {
		return nil, nil, err
	}
	s.metrics.inflightBytes.Add(float64(reserve))
	buf := bodyPool.Get().(*bytes.Buffer)
	buf.Reset()
	release := func() {
		if buf.Cap() <= 1<<20 { // keep the pool from pinning huge buffers
			bodyPool.Put(buf)
		}
		s.admit.releaseBytes(reserve)
		s.metrics.inflightBytes.Sub(float64(reserve))
	}
	if r.ContentLength > 0 {
		// ReadFrom wants MinRead bytes free to see EOF; without them a
		// buffer of exactly the body's size would double.
		buf.Grow(int(r.ContentLength) + bytes.MinRead)
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)); err != nil {
		release()
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, nil, mbe
		}
		return nil, nil, fmt.Errorf("%w: %w", errReadBody, err)
	}
	return buf, release, nil
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
		if err := s.router.Check(b.Topic); err != nil {
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
		for _, raw := range b.Events {
			evs = append(evs, codec.Map(b.Topic, raw))
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
