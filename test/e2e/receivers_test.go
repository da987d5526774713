//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"
)

// TestReceiverOverAPI: a receiver created over the receivers API takes
// webhooks at once, without a restart, and its events reach the real
// Kafka and nats-server; disabled, its path answers 404.
func TestReceiverOverAPI(t *testing.T) {
	const admin = "e2e-admin-token"
	b := newBridge(t, "receivers-api")
	b.env = append(b.env, "MISTBRIDGE_ADMIN_TOKEN="+admin)
	b.start(t)
	api := func(method, path string, body any) (int, map[string]any) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			raw, _ := json.Marshal(body)
			rd = bytes.NewReader(raw)
		}
		req, _ := http.NewRequest(method, "http://"+b.addr+path, rd)
		req.Header.Set("Authorization", "Bearer "+admin)
		req.Header.Set("Content-Type", "application/json")
		resp, err := b.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	code, rc := api(http.MethodPost, "/api/v1/receivers", map[string]any{"name": "e2e-lab", "authType": "bearer", "token": "lab-token"})
	if code != http.StatusCreated {
		t.Fatalf("create: %d %v", code, rc)
	}
	if rc["token"] != "********" {
		t.Errorf("the answer shows the token: %v", rc["token"])
	}
	sy := newSynth("receivers-api")
	post := func(body []byte) postResult {
		req, _ := http.NewRequest(http.MethodPost, "http://"+b.addr+"/webhooks/e2e-lab", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer lab-token")
		resp, err := b.client.Do(req)
		if err != nil {
			return postResult{err: err}
		}
		defer resp.Body.Close()
		rb, _ := io.ReadAll(resp.Body)
		return postResult{status: resp.StatusCode, body: string(bytes.TrimSpace(rb))}
	}
	var outs []outcome
	for range 5 {
		body, evs := sy.batch(4)
		r := post(body)
		if r.status != http.StatusOK {
			t.Fatalf("post to the new receiver: %s, want 200", r)
		}
		outs = append(outs, outcome{at: time.Now(), events: evs, res: r})
	}
	checkPromises(t, sy, outs)
	id, _ := rc["id"].(string)
	if code, out := api(http.MethodPatch, "/api/v1/receivers/"+id, map[string]any{"enabled": false}); code != http.StatusOK {
		t.Fatalf("disable: %d %v", code, out)
	}
	body, _ := sy.batch(1)
	if r := post(body); r.status != http.StatusNotFound {
		t.Fatalf("post to a disabled receiver: %s, want 404", r)
	}
}
