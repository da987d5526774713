package bridge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// exchange is what one webhook request carries through the handler: its
// id, for every log line of the request and the X-Request-Id answer
// header, and what its one summary line reports.
type exchange struct {
	id     string
	start  time.Time
	rc     *Receiver
	topic  string // the topic of the first batch, once split
	events int    // events split from the body
	reason string // why it was refused, when it was
}

// RequestIDHeader carries the request id, in the answer and, when the
// sender's is sane, from the request.
const RequestIDHeader = "X-Request-Id"

// idPrefix makes request ids unique across restarts; idSeq within one.
var (
	idPrefix = func() string {
		var b [6]byte
		_, _ = rand.Read(b[:])
		return hex.EncodeToString(b[:])
	}()
	idSeq atomic.Uint64
)

// requestID is the sender's X-Request-Id when it is sane (1 to 128 of
// letters, digits and "-_.:"), else a new one: a per-process random
// prefix and a sequence number, cheap and unique.
func requestID(r *http.Request) string {
	if id := r.Header.Get(RequestIDHeader); saneID(id) {
		return id
	}
	var b [40]byte
	id := append(append(b[:0], idPrefix...), '-')
	return string(strconv.AppendUint(id, idSeq.Add(1), 36)) // one allocation
}

func saneID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

// begin starts the exchange of r and sets its X-Request-Id answer header.
// It fills ex in place so that ex can live on the caller's stack.
func (ex *exchange) begin(w http.ResponseWriter, r *http.Request, start time.Time) {
	ex.id, ex.start = requestID(r), start
	w.Header()[RequestIDHeader] = []string{ex.id}
}

// logDone writes the request's one summary line: receiver, topic,
// events, status, duration. Never a credential or a body.
func (s *Server) logDone(ctx context.Context, ex *exchange, code int, what string) {
	if !s.cfg.LogRequests {
		return
	}
	level := slog.LevelInfo
	if code >= 500 {
		level = slog.LevelWarn
	}
	if !s.log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("request_id", ex.id),
		slog.String("receiver", ex.rc.Name),
		slog.String("topic", ex.topic),
		slog.Int("events", ex.events),
		slog.Int("status", code),
		slog.Duration("duration", time.Since(ex.start)),
	}
	if ex.reason != "" {
		attrs = append(attrs, slog.String("reason", ex.reason))
	}
	s.log.LogAttrs(ctx, level, what, attrs...)
}
