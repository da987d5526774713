package bridge

import (
	"context"
	"net/http"
	"time"
)

// handleHealthz answers 200 while the process serves HTTP.
func (s *Server) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

type readyBody struct {
	Status string `json:"status"`
	Readiness
}

// handleReadyz answers 200 when the bridge can take webhooks now, else 503,
// with each sink's state (and the spool's). It answers 503 while draining.
// A state is "ok", "not delivering" or "not answering", never the broker's
// error, which may name its host (the sinks log their connection errors).
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	rd := s.delivery.Ready(ctx)
	body := readyBody{Status: "ready", Readiness: rd}
	code := http.StatusOK
	if !rd.Ready {
		body.Status, code = "not ready", http.StatusServiceUnavailable
	}
	if s.draining.Load() {
		body.Status, code = "shutting down", http.StatusServiceUnavailable
	}
	writeJSON(w, code, body)
}
