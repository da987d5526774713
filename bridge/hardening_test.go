package bridge_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mistbridge/mistbridge/bridge"
	"github.com/mistbridge/mistbridge/bridge/auth"
	"github.com/mistbridge/mistbridge/sinks"
	"github.com/mistbridge/mistbridge/sinks/natssink"
	"github.com/mistbridge/mistbridge/test/loadgen"
)

// served is a bridge answering on a real listener through Serve, as the
// command runs it (httptest would skip Serve's connection limits).
type served struct {
	addr   string
	url    string
	stop   context.CancelFunc
	result chan error
}

// serve starts a bridge in front of an embedded nats-server with the given
// bridge variables, served by Serve on a loopback listener.
func serve(t *testing.T, vars map[string]string) *served {
	t.Helper()
	if _, ok := vars["DRAIN_DELAY"]; !ok {
		vars = maps.Clone(vars)
		if vars == nil {
			vars = map[string]string{}
		}
		vars["DRAIN_DELAY"] = "0s" // no test here waits out a drain but TestDrain
	}
	srv := natsBridge(t, vars, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &served{addr: ln.Addr().String(), stop: cancel, result: make(chan error, 1)}
	s.url = "http://" + s.addr + "/webhooks/mist"
	go func() { s.result <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-s.result; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

// natsBridge builds a bridge for the receiver "mist" (Mist's signature with
// secret) in front of an embedded nats-server, registering its metrics and
// the sink's on reg (nil: a registry of its own).
func natsBridge(t *testing.T, vars map[string]string, reg *prometheus.Registry) *bridge.Server {
	t.Helper()
	log := testLogger(t)
	emb, err := natssink.StartEmbedded(t.TempDir(), "127.0.0.1:0", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	ns, err := natssink.New(context.Background(), defaults[natssink.Config](t, map[string]string{"URL": emb.ClientURL()}), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Close(context.Background()) })
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	router, err := bridge.NewRouter("", sinks.NewRetrying(ns, sinks.RetryPolicy{}, sinks.NewMetrics(reg), log))
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := auth.NewMist([]string{secret})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := bridge.New(defaults[bridge.Config](t, vars), bridge.Options{Router: router, Receivers: []*bridge.Receiver{{Name: "mist", Verifier: verifier}}, Log: log, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// dialFrom opens a connection to addr from the loopback address src
// (127.0.0.0/8 is all local on Linux), so a test can play several clients.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// postWithin posts a signed body and fails the test when no answer comes
// within d (a sender's timeout).
func postWithin(t *testing.T, url string, body []byte, d time.Duration) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Mist-Signature-v2", loadgen.Sign(secret, body))
	client := &http.Client{Timeout: d, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	t0 := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("signed request got no answer within %v: %v", d, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	t.Logf("signed request answered %d in %v", resp.StatusCode, time.Since(t0).Round(time.Millisecond))
	return answer{code: resp.StatusCode, header: resp.Header, body: map[string]any{"raw": string(raw)}}
}

// TestSlowHeadersCannotTakeEverySlot: one client address opens many
// connections and sends half a request line; a signed request from another
// address is answered at once, not after the slow ones time out.
func TestSlowHeadersCannotTakeEverySlot(t *testing.T) {
	s := serve(t, map[string]string{"MAX_CONNECTIONS": "64", "MAX_CONNECTIONS_PER_IP": "16", "READ_HEADER_TIMEOUT": "30s"})
	for range 100 {
		c := dialFrom(t, "127.0.0.2", s.addr)
		fmt.Fprint(c, "POST /webhooks/mist HTTP/1.1\r\nHost: x\r\n")
	}
	body := loadgen.Body("device-events", 0, 2)
	if a := postWithin(t, s.url, body, 3*time.Second); a.code != 200 {
		t.Fatalf("signed request while 100 slow connections wait: %d %v, want 200", a.code, a.body)
	}
}

// TestUnverifiedBodiesCannotStarveSigned: with Mist's signature (the body
// must be read before it can be checked), connections that promise 1 MiB
// and send one byte hold only what they sent, so a correctly signed
// request still gets 200.
func TestUnverifiedBodiesCannotStarveSigned(t *testing.T) {
	s := serve(t, map[string]string{
		"MAX_BODY_BYTES": "1048576", "MAX_INFLIGHT_BYTES": strconv.Itoa(4 * (2*1048576 + 512)), "ADMIT_WAIT": "200ms",
		"MAX_CONNECTIONS_PER_IP": "64", "BODY_IDLE_TIMEOUT": "30s",
	})
	for range 20 {
		c := dialFrom(t, "127.0.0.3", s.addr)
		// A well-formed (wrong) signature passes the checks that need no
		// body; the body then stalls after one byte.
		fmt.Fprintf(c, "POST /webhooks/mist HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Mist-Signature-v2: %s\r\nContent-Length: 1048576\r\n\r\n{", strings.Repeat("0", 64))
	}
	// Wait until the server has begun reading every stalled body: its
	// in-flight bytes gauge says so.
	waitForMetric(t, "http://"+s.addr+"/metrics", "mistbridge_inflight_bytes", func(v float64) bool { return v >= 20 })
	body := loadgen.Body("device-events", 0, 2)
	if a := postWithin(t, s.url, body, 3*time.Second); a.code != 200 {
		t.Fatalf("signed request while unverified bodies stall: %d %v, want 200", a.code, a.body)
	}
}

// TestNoSignatureHoldsNothing: a request without Mist's signature header
// is refused before its body is read.
func TestNoSignatureHoldsNothing(t *testing.T) {
	s := serve(t, nil)
	c := dialFrom(t, "127.0.0.1", s.addr)
	fmt.Fprint(c, "POST /webhooks/mist HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n{")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer before the body arrived: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unsigned request: %d, want 401", resp.StatusCode)
	}
}

// TestStalledBodyGets408: a body that stops arriving is answered 408 after
// BODY_IDLE_TIMEOUT and frees its room.
func TestStalledBodyGets408(t *testing.T) {
	s := serve(t, map[string]string{"BODY_IDLE_TIMEOUT": "300ms"})
	c := dialFrom(t, "127.0.0.1", s.addr)
	fmt.Fprintf(c, "POST /webhooks/mist HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Mist-Signature-v2: %s\r\nContent-Length: 100\r\n\r\n{", strings.Repeat("0", 64))
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("stalled body: %d, want 408", resp.StatusCode)
	}
	waitForMetric(t, "http://"+s.addr+"/metrics", "mistbridge_inflight_bytes", func(v float64) bool { return v == 0 })
}

// TestDrain: once Serve's context ends, /readyz answers 503 at once, a
// keep-alive client is still answered during DRAIN_DELAY with
// "Connection: close", and Serve returns after the delay.
func TestDrain(t *testing.T) {
	s := serve(t, map[string]string{"DRAIN_DELAY": "1s"})
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	body := loadgen.Body("device-events", 0, 1)
	doPost := func() *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, s.url, strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Mist-Signature-v2", loadgen.Sign(secret, body))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if resp := doPost(); resp.StatusCode != 200 || resp.Close {
		t.Fatalf("before the drain: %d, close=%v; want 200 on a kept-alive connection", resp.StatusCode, resp.Close)
	}
	t0 := time.Now()
	s.stop()
	resp, err := client.Get("http://" + s.addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/readyz while draining: %d, want 503", resp.StatusCode)
	}
	if resp := doPost(); resp.StatusCode != 200 || !resp.Close {
		t.Fatalf("while draining: %d, close=%v; want 200 with Connection: close", resp.StatusCode, resp.Close)
	}
	if err := <-s.result; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	s.result <- nil // for the cleanup
	if d := time.Since(t0); d < time.Second {
		t.Fatalf("Serve returned %v after the drain began, want at least DRAIN_DELAY (1s)", d)
	}
}

// waitForMetric polls a gauge on /metrics until ok holds, at most 10s.
func waitForMetric(t *testing.T, url, name string, ok func(float64) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last string
	for {
		resp, err := http.Get(url)
		if err == nil {
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, line := range strings.Split(string(raw), "\n") {
				if v, found := strings.CutPrefix(line, name+" "); found {
					last = v
					if f, err := strconv.ParseFloat(v, 64); err == nil && ok(f) {
						return
					}
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never reached the expected value (last %q)", name, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMetricsExistAtZero: before any traffic, /metrics already has the
// series dashboards and alerts query, at zero.
func TestMetricsExistAtZero(t *testing.T) {
	srv := natsBridge(t, nil, nil)
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	resp, err := http.Get(hs.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`mistbridge_http_requests_total{code="503",receiver="mist"} 0`,
		`mistbridge_http_requests_total{code="200",receiver="mist"} 0`,
		`mistbridge_auth_failures_total{reason="signature_mismatch",receiver="mist"} 0`,
		`mistbridge_sink_dead_letters_total{sink="nats"} 0`,
		`mistbridge_sink_failed_events_total{sink="nats"} 0`,
		`mistbridge_sink_retries_total{sink="nats"} 0`,
		`mistbridge_sink_published_events_total{sink="nats"} 0`,
		`mistbridge_connections_refused_total 0`,
	} {
		if !strings.Contains(string(raw), want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestAdmitWaitZero: MISTBRIDGE_ADMIT_WAIT=0 means "never wait for room",
// not "refuse all": an idle bridge takes the request.
func TestAdmitWaitZero(t *testing.T) {
	s := serve(t, map[string]string{"ADMIT_WAIT": "0s"})
	body := loadgen.Body("device-events", 0, 2)
	if a := postWithin(t, s.url, body, 5*time.Second); a.code != 200 {
		t.Fatalf("idle bridge with ADMIT_WAIT=0: %d %v, want 200", a.code, a.body)
	}
}

// TestRequestID: every answer carries X-Request-Id; a sane incoming one is
// kept, anything else replaced by one of the bridge's own.
func TestRequestID(t *testing.T) {
	r := newRig(t, rigOptions{noKafka: true})
	body := loadgen.Body("device-events", 0, 1)
	for _, tt := range []struct{ name, in, want string }{
		{"none", "", ""},
		{"sane kept", "mist-7f3a.9:1_b", "mist-7f3a.9:1_b"},
		{"newline replaced", "a\tb", ""},
		{"too long replaced", strings.Repeat("a", 129), ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := signed(body)
			if tt.in != "" {
				h["X-Request-Id"] = tt.in
			}
			a := post(t, r.url+"/webhooks/mist", body, h)
			got := a.header.Get("X-Request-Id")
			switch {
			case a.code != 200:
				t.Fatalf("%d %v", a.code, a.body)
			case tt.want != "" && got != tt.want:
				t.Errorf("X-Request-Id %q, want the sender's %q", got, tt.want)
			case tt.want == "" && (got == "" || got == tt.in):
				t.Errorf("X-Request-Id %q, want a new id", got)
			}
		})
	}
}
