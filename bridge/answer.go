package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"

	"github.com/mistbridge/mistbridge/bridge/auth"
	"github.com/mistbridge/mistbridge/codec"
	"github.com/mistbridge/mistbridge/sinks"
)

var (
	errMethod   = errors.New("bridge: method not allowed: use POST")
	errReadBody = errors.New("bridge: reading the body")
)

type errorBody struct {
	Error  string `json:"error"`
	Reason string `json:"reason"`
}

type okBody struct {
	Accepted int `json:"accepted"`
}

// answer writes the response for the outcome of a request and returns its
// status code. This is the one place errors become HTTP statuses.
func (s *Server) answer(w http.ResponseWriter, ex *exchange, n int, err error) int {
	if err == nil {
		writeJSON(w, http.StatusOK, okBody{Accepted: n})
		return http.StatusOK
	}
	code, reason, msg := classify(err)
	switch code {
	case http.StatusUnauthorized:
		if c := auth.Challenge(err); c != "" {
			w.Header().Set("WWW-Authenticate", c)
		}
	case http.StatusTooManyRequests:
		if s.delivery.Failing() {
			code, reason = http.StatusServiceUnavailable, "brokers_failing"
		}
		fallthrough
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(s.cfg.RetryAfter.Seconds()))))
	}
	ex.reason = reason
	// The error (which may name a broker) goes to the log, at debug for a
	// refusal; the summary line (logDone) carries the reason.
	if code >= 500 {
		s.log.Warn("webhook failed", "request_id", ex.id, "receiver", ex.rc.Name, "code", code, "reason", reason, "err", err)
	} else {
		s.log.Debug("webhook refused", "request_id", ex.id, "receiver", ex.rc.Name, "code", code, "reason", reason, "err", err)
	}
	writeJSON(w, code, errorBody{Error: msg, Reason: reason})
	return code
}

// classify maps err to a status, a fixed reason and a message safe to show.
func classify(err error) (code int, reason, msg string) {
	var (
		mbe     *http.MaxBytesError
		itemErr *codec.ItemError
	)
	switch {
	case errors.Is(err, auth.ErrForbidden):
		return http.StatusForbidden, auth.Reason(err), "forbidden: " + auth.Reason(err)
	case errors.Is(err, auth.ErrUnauthorized):
		return http.StatusUnauthorized, auth.Reason(err), "unauthorized: " + auth.Reason(err)
	case errors.Is(err, errMethod):
		return http.StatusMethodNotAllowed, "method_not_allowed", err.Error()
	case errors.Is(err, errMediaType):
		return http.StatusUnsupportedMediaType, "unsupported_media_type", err.Error()
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the body exceeds %d bytes (MISTBRIDGE_MAX_BODY_BYTES)", mbe.Limit)
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge, "batch_too_large", err.Error()
	case errors.As(err, &itemErr):
		return http.StatusBadRequest, "bad_event", err.Error()
	case errors.Is(err, codec.ErrNotJSON):
		return http.StatusBadRequest, "invalid_json", err.Error()
	case errors.Is(err, codec.ErrNoTopic), errors.Is(err, codec.ErrBadTopic), errors.Is(err, codec.ErrBadEnvelope):
		return http.StatusBadRequest, "bad_envelope", err.Error()
	case errors.Is(err, errBodyTimeout):
		return http.StatusRequestTimeout, "body_timeout", err.Error()
	case errors.Is(err, errReadBody):
		return http.StatusBadRequest, "read_failed", err.Error()
	case errors.Is(err, ErrSpoolFull):
		return http.StatusServiceUnavailable, "spool_full", "events cannot be stored now: retry later"
	case errors.Is(err, ErrBusy):
		return http.StatusTooManyRequests, "busy", "too much work in flight: retry later"
	case errors.Is(err, ErrUnrouted):
		return http.StatusUnprocessableEntity, "unrouted", err.Error()
	case errors.Is(err, ErrTopicNotAllowed):
		return http.StatusUnprocessableEntity, "topic_not_allowed", err.Error()
	case sinks.IsPermanent(err):
		// A broker's error names its address: logged, not shown.
		return http.StatusBadGateway, "broker_refused", "a broker refused the events: see the bridge's log"
	case errors.Is(err, context.Canceled):
		return 499, "client_gone", "the client went away"
	default:
		return http.StatusServiceUnavailable, "delivery_failed", "the brokers did not acknowledge the events in time: retry later"
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
