package bridge

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// handleHealthz answers 200 while the process serves HTTP.
func (s *Server) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

type readyBody struct {
	Status string            `json:"status"`
	Sinks  map[string]string `json:"sinks"`
}

// handleReadyz answers 200 when every sink accepts writes now, else 503
// with each sink's state. It answers 503 while shutting down.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	outs := s.router.Outputs()
	states := make([]string, len(outs))
	var wg sync.WaitGroup
	for i, o := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := o.Ready(ctx); err != nil {
				states[i] = err.Error()
			} else {
				states[i] = "ok"
			}
		}()
	}
	wg.Wait()
	body := readyBody{Status: "ready", Sinks: make(map[string]string, len(outs))}
	code := http.StatusOK
	for i, o := range outs {
		body.Sinks[o.Name()] = states[i]
		if states[i] != "ok" {
			body.Status, code = "not ready", http.StatusServiceUnavailable
		}
	}
	if s.draining.Load() {
		body.Status, code = "shutting down", http.StatusServiceUnavailable
	}
	writeJSON(w, code, body)
}
