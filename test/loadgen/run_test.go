package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a clock that moves only when a waiter waits or a fake poster
// serves: with one worker, a run on it is deterministic (with more, one
// worker's wait would move another's clock: the tests use one).
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advanceTo(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.now) {
		c.now = t
	}
}

func (c *fakeClock) newWaiter() waiter { return fakeWaiter{c} }

type fakeWaiter struct{ c *fakeClock }

func (w fakeWaiter) until(_ context.Context, t time.Time) { w.c.advanceTo(t) }
func (fakeWaiter) close()                                 {}

// fakePoster answers 200 after service(n) of fake time for the n-th request.
type fakePoster struct {
	c       *fakeClock
	n       int
	service func(n int) time.Duration
}

func (p *fakePoster) post(context.Context, []header, []byte, *[]byte) (int, error) {
	d := p.service(p.n)
	p.n++
	p.c.advanceTo(p.c.Now().Add(d))
	return 200, nil
}
func (*fakePoster) close() {}

func fakeRun(t *testing.T, cfg Config, service func(int) time.Duration) (*Result, *fakePoster) {
	t.Helper()
	traffic, err := NewTraffic([]Sample{{Name: "t", Body: Body("device-events", 0, 1)}}, TrafficOptions{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	cfg.URL, cfg.Traffic = "http://fake/", traffic
	cfg = cfg.defaults()
	clk := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	p := &fakePoster{c: clk, service: service}
	return run(context.Background(), cfg, clk, p), p
}

func msOf(us int64) time.Duration { return time.Duration(us) * time.Microsecond }

// near says whether a histogram value (3 significant digits) is want.
func near(got int64, want time.Duration) bool {
	d := msOf(got) - want
	return d >= -want/500-time.Microsecond && d <= want/500+time.Microsecond
}

// TestScheduleCountsTheWait drives the scheduler on a fake clock: 100
// requests/s with one request in flight, the first one served in 95ms and
// the rest in 1ms. Each request's latency must run from its scheduled time
// (n×10ms), so the ones queued behind the slow one count their wait:
// request k (k >= 1) starts at 95+(k-1)ms and ends at 95+k, so its latency
// is 95-9k ms and its lag 94-9k ms until it is on time again (k = 11). A
// sender that measured from its own send would report 1ms for them
// (coordinated omission).
func TestScheduleCountsTheWait(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name                   string
		duration               time.Duration
		sent, unsent           int
		latMax, latMin, latP50 time.Duration
		lagMax, lagP50         time.Duration
		elapsed                time.Duration
	}{
		// The window ends (at 100ms) while the run is still behind: request
		// 5 ends at 100ms, and requests 6-9, due before 100ms, are unsent,
		// not sent late.
		{"ends behind", 100 * ms, 6, 4, 95 * ms, 50 * ms, 68 * ms, 85 * ms, 58 * ms, 100 * ms},
		// It catches up: requests 11-19 are on time.
		{"catches up", 200 * ms, 20, 0, 95 * ms, 1 * ms, 5 * ms, 85 * ms, 0, 191 * ms},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, p := fakeRun(t, Config{Rate: 100, Batch: 1, Concurrency: 1, Duration: tt.duration},
				func(n int) time.Duration {
					if n == 0 {
						return 95 * ms
					}
					return ms
				})
			if p.n != tt.sent || res.Requests != tt.sent || res.Unsent != tt.unsent || res.Events != tt.sent {
				t.Fatalf("sent %d, answered %d, events %d, unsent %d: want %d, %[5]d, %[5]d, %d", p.n, res.Requests, res.Events, res.Unsent, tt.sent, tt.unsent)
			}
			checks := []struct {
				name string
				got  int64
				want time.Duration
			}{
				{"latency max", res.Latency.Max(), tt.latMax},
				{"latency min", res.Latency.Min(), tt.latMin},
				{"latency p50", res.Latency.ValueAtQuantile(50), tt.latP50},
				{"service max", res.Service.Max(), 95 * ms},
				{"service p50", res.Service.ValueAtQuantile(50), ms},
				{"lag max", res.Lag.Max(), tt.lagMax},
				{"lag p50", res.Lag.ValueAtQuantile(50), tt.lagP50},
			}
			for _, c := range checks {
				if !near(c.got, c.want) {
					t.Errorf("%s = %v, want %v", c.name, msOf(c.got), c.want)
				}
			}
			if got := res.Latency.TotalCount(); got != int64(tt.sent) {
				t.Errorf("latency count %d, want %d", got, tt.sent)
			}
			if res.Elapsed != tt.elapsed {
				t.Errorf("elapsed %v, want %v (to the last answer)", res.Elapsed, tt.elapsed)
			}
		})
	}
}

// TestScheduleKeepsTheRate: a server faster than the interval gets exactly
// the scheduled requests, each with no wait.
func TestScheduleKeepsTheRate(t *testing.T) {
	res, p := fakeRun(t, Config{Rate: 1000, Batch: 10, Concurrency: 1, Duration: time.Second},
		func(int) time.Duration { return 2 * time.Millisecond })
	if p.n != 100 || res.Unsent != 0 || res.Events != 1000 {
		t.Fatalf("sent %d, unsent %d, events %d: want 100, 0, 1000", p.n, res.Unsent, res.Events)
	}
	if !near(res.Latency.Max(), 2*time.Millisecond) || res.Lag.Max() > 1 {
		t.Errorf("latency max %v, lag max %v: want 2ms and none", msOf(res.Latency.Max()), msOf(res.Lag.Max()))
	}
}

// TestWarmupIsNotCounted: requests scheduled in the warm-up are sent but
// not counted.
func TestWarmupIsNotCounted(t *testing.T) {
	res, p := fakeRun(t, Config{Rate: 100, Batch: 1, Concurrency: 1, Warmup: 50 * time.Millisecond, Duration: 100 * time.Millisecond},
		func(int) time.Duration { return time.Millisecond })
	if p.n != 15 || res.Requests != 10 {
		t.Fatalf("sent %d, counted %d: want 15 and 10", p.n, res.Requests)
	}
}

// TestClosedLoopLatencyIsService: in a closed loop each request starts when
// the one before it is answered, and its latency is its own service time.
func TestClosedLoopLatencyIsService(t *testing.T) {
	res, p := fakeRun(t, Config{Concurrency: 1, Duration: 100 * time.Millisecond},
		func(n int) time.Duration { return time.Duration(n%2*8+2) * time.Millisecond }) // 2, 10, 2, 10, ...
	if p.n != 18 || res.Requests != 18 {
		t.Fatalf("sent %d, counted %d: want 18 (100ms of 2+10ms pairs, the last begun at 98ms)", p.n, res.Requests)
	}
	if !near(res.Latency.Max(), 10*time.Millisecond) || !near(res.Latency.Min(), 2*time.Millisecond) {
		t.Errorf("latency %v..%v, want 2ms..10ms", msOf(res.Latency.Min()), msOf(res.Latency.Max()))
	}
}

// TestStalledServerWaitIsCounted is the same as TestScheduleCountsTheWait
// on the real clock, over HTTP: the server holds its first answer for 300ms
// while the run schedules a request every 10ms on one connection. The
// requests due during the stall must show their wait in the latency (and in
// the send lag), not only in the stalled request.
func TestStalledServerWaitIsCounted(t *testing.T) {
	var first atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if first.CompareAndSwap(false, true) {
			time.Sleep(300 * time.Millisecond) // the stall under test
		}
		_, _ = w.Write([]byte(`{"accepted":1}`))
	}))
	defer srv.Close()
	res, err := Run(context.Background(), Config{URL: srv.URL, Secret: "s", Rate: 100, Batch: 1, Concurrency: 1, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Codes[200] < 50 {
		t.Fatalf("only %d answers 200 (%s): the machine is too slow for this test", res.Codes[200], res.CodeList())
	}
	// ~100 requests; the ~29 due in the first 290ms wait for the stalled
	// one, so over 10% wait at least 200ms (request k: ~300-10k ms).
	lat90, svc90, lag90 := msOf(res.Latency.ValueAtQuantile(90)), msOf(res.Service.ValueAtQuantile(90)), msOf(res.Lag.ValueAtQuantile(90))
	if lat90 < 150*time.Millisecond || lag90 < 150*time.Millisecond {
		t.Errorf("p90 latency %v, lag %v: want >= 150ms (the wait behind the stall)", lat90, lag90)
	}
	if svc90 >= 150*time.Millisecond {
		t.Errorf("p90 service time %v: want the stall in one request only", svc90)
	}
	if max := msOf(res.Latency.Max()); max < 290*time.Millisecond {
		t.Errorf("max latency %v, want >= 290ms", max)
	}
}

// TestRunEveryEventUnique posts a closed loop at a server that checks each
// body and the signature, and collects every event: none may repeat.
func TestRunEveryEventUnique(t *testing.T) {
	samples := mustSamples(t)
	traffic, err := NewTraffic(samples, TrafficOptions{Mix: RealisticMix})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		seen   = map[string]bool{}
		dups   int
		served int
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("X-Mist-Signature-v2") != Sign("s3", body) {
			http.Error(w, `{"reason":"signature_mismatch"}`, http.StatusUnauthorized)
			return
		}
		var env struct {
			Topic  string
			Events []json.RawMessage
		}
		if err := json.Unmarshal(body, &env); err != nil || len(env.Events) != 5 {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		mu.Lock()
		served++
		for _, e := range env.Events {
			var c bytes.Buffer
			_ = json.Compact(&c, e)
			k := env.Topic + " " + c.String()
			if seen[k] {
				dups++
			}
			seen[k] = true
		}
		mu.Unlock()
	}))
	defer srv.Close()
	res, err := Run(context.Background(), Config{URL: srv.URL + "/webhooks/mist", Secret: "s3", Batch: 5, Concurrency: 4,
		Duration: 300 * time.Millisecond, Traffic: traffic})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if res.Codes[200] == 0 || res.Codes[200] != res.Requests || res.Events != 5*res.Requests || res.Errors != 0 {
		t.Fatalf("codes %s errors %d events %d: want only 200s, 5 events each (%v)", res.CodeList(), res.Errors, res.Events, res.Answers)
	}
	if res.Requests > served {
		t.Errorf("counted %d answers, the server served %d", res.Requests, served)
	}
	if dups > 0 {
		t.Errorf("%d of %d events repeated", dups, len(seen))
	}
}

// TestRunReportsRefusals: non-2xx answers are counted with a sample of
// their body; they add no latency; a closed port counts as connect errors.
func TestRunReportsRefusals(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"unauthorized","reason":"signature_missing"}`))
	}))
	defer srv.Close()
	for _, client := range []string{"raw", "http"} {
		t.Run(client, func(t *testing.T) {
			res, err := Run(context.Background(), Config{URL: srv.URL, Client: client, Concurrency: 2, Duration: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if res.Codes[401] == 0 || res.Codes[401] != res.Requests || res.Events != 0 || res.Latency.TotalCount() != 0 {
				t.Fatalf("codes %s events %d latencies %d: want only 401s, no events, no latency", res.CodeList(), res.Events, res.Latency.TotalCount())
			}
			if got := res.Answers[401]; got != `{"error":"unauthorized","reason":"signature_missing"}` {
				t.Errorf("401 says %q", got)
			}
		})
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	res, err := Run(context.Background(), Config{URL: "http://" + addr + "/", Concurrency: 1, Duration: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors == 0 || res.ErrorKinds[ErrConnect] != res.Errors || res.Requests != 0 {
		t.Errorf("errors %v requests %d: want connect errors only", res.ErrorKinds, res.Requests)
	}
}

// TestRunStopsWhenCancelled: a cancelled run returns without waiting out
// a request the server never answers.
func TestRunStopsWhenCancelled(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan *Result, 1)
	go func() {
		res, _ := Run(ctx, Config{URL: srv.URL, Concurrency: 2, Duration: time.Minute, Timeout: time.Minute,
			Progress: func(p Progress) {
				if !p.Done {
					cancel()
				}
			}, ProgressEvery: 20 * time.Millisecond})
		got <- res
	}()
	select {
	case res := <-got:
		if res.Requests != 0 || res.Errors != 0 {
			t.Errorf("cut-off requests counted: %d answers, %d errors", res.Requests, res.Errors)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"ok", Config{URL: "http://h/webhooks/mist", Secret: "s"}, nil},
		{"bad url and rate", Config{URL: "ftp://h", Rate: -1}, []string{`URL "ftp://h"`, "rate -1"}},
		{"bearer without token", Config{URL: "http://h/", Auth: Auth{Scheme: "bearer"}}, []string{"auth bearer needs a token"}},
		{"unknown scheme", Config{URL: "http://h/", Auth: Auth{Scheme: "digest"}}, []string{`auth "digest" is unknown`}},
		{"hmac gaps", Config{URL: "http://h/", Auth: Auth{Scheme: "hmac", Secret: "s", Template: "{timestamp}.{body}"}},
			[]string{"signature header", "timestamp header"}},
		{"header injection", Config{URL: "http://h/", Auth: Auth{Scheme: "bearer", Token: "t\r\nX-Evil: 1"}}, []string{"control character"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !bytes.Contains([]byte(err.Error()), []byte(w)) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func mustSamples(t *testing.T) []Sample {
	t.Helper()
	dir, err := SamplesDir()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Samples(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
