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
	// One wait budget for all of admission.
	actx, cancel := context.WithTimeout(r.Context(), s.cfg.AdmitWait)
	defer cancel()
	body, release, err := s.readBody(actx, w, r)
	if err != nil {
		return 0, err
	}
	defer release()
	if err := rc.Verifier.Verify(r, body.Bytes()); err != nil {
		s.metrics.authFailures.WithLabelValues(rc.Name, auth.Reason(err)).Inc()
		return 0, err
	}
	topic := r.URL.Query().Get("topic")
	if topic == "" {
		topic = rc.DefaultTopic
	}
	batch, err := codec.Split(body.Bytes(), topic)
	if err != nil {
		return 0, err
	}
	return s.publish(actx, r.Context(), rc, batch)
}

// readBody reserves room for the body, then reads it under the size cap.
// release returns both the room and the buffer.
func (s *Server) readBody(actx context.Context, w http.ResponseWriter, r *http.Request) (*bytes.Buffer, func(), error) {
	if r.ContentLength > s.cfg.MaxBodyBytes {
		return nil, nil, &http.MaxBytesError{Limit: s.cfg.MaxBodyBytes}
	}
	size := s.cfg.MaxBodyBytes // unknown length: reserve the most it can be
	if r.ContentLength >= 0 {
		size = r.ContentLength
	}
	// The body, and the events split from it, are both in memory until the answer.
	reserve := 2*size + 512
	if err := s.admit.acquireBytes(actx, reserve); err != nil {
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

// publish maps the batch, admits its events and waits until they are
// delivered. actx bounds the wait for admission, ctx the whole request.
func (s *Server) publish(actx, ctx context.Context, rc *Receiver, batch codec.Batch) (int, error) {
	n := len(batch.Events)
	if n == 0 {
		return 0, nil
	}
	if err := s.admit.acquireEvents(actx, n); err != nil {
		return 0, err
	}
	s.metrics.inflightEvents.Add(float64(n))
	defer func() {
		s.admit.releaseEvents(n)
		s.metrics.inflightEvents.Sub(float64(n))
	}()
	evs := make([]codec.Event, n)
	ptrs := make([]*codec.Event, n)
	for i, raw := range batch.Events {
		evs[i] = codec.Map(batch.Topic, raw)
		ptrs[i] = &evs[i]
	}
	dctx, cancel := context.WithTimeout(ctx, s.cfg.DeliveryTimeout)
	defer cancel()
	if err := s.delivery.Deliver(dctx, ptrs); err != nil {
		return 0, err
	}
	s.metrics.events.WithLabelValues(rc.Name, batch.Topic).Add(float64(n))
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
