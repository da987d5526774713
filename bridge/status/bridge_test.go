package status_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mistbridge/mistbridge/bridge"
	"github.com/mistbridge/mistbridge/bridge/auth"
	"github.com/mistbridge/mistbridge/bridge/spool"
	"github.com/mistbridge/mistbridge/bridge/status"
	"github.com/mistbridge/mistbridge/codec"
	"github.com/mistbridge/mistbridge/sinks"
	"github.com/mistbridge/mistbridge/sinks/kafkasink"
	"github.com/mistbridge/mistbridge/sinks/natssink"
)

const secret = "status-test-secret"

// defaults parses a component's config from vars only, with its defaults.
func defaults[T any](t testing.TB, vars map[string]string) T {
	t.Helper()
	var c T
	if err := env.ParseWithOptions(&c, env.Options{Environment: vars}); err != nil {
		t.Fatal(err)
	}
	return c
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// realBridge is the bridge as cmd/mistbridge builds it, on one registry: a
// NATS sink on an embedded nats-server, a Kafka sink whose broker is down,
// both behind the spool in hybrid mode, so Kafka's share is spooled. Its
// handler also tells rec of each request and accepted event, the way the
// server does once it is given a Recorder.
func realBridge(t *testing.T, rec func(reg prometheus.Gatherer) *status.Recorder) (*status.Recorder, http.Handler) {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	metrics := sinks.NewMetrics(reg)
	policy := sinks.RetryPolicy{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond}

	emb, err := natssink.StartEmbedded(t.TempDir(), "127.0.0.1:0", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	ns, err := natssink.New(ctx, defaults[natssink.Config](t, map[string]string{"URL": emb.ClientURL()}), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Close(context.Background()) })
	ks, err := kafkasink.New(defaults[kafkasink.Config](t, map[string]string{"BROKERS": closedAddr(t), "WRITE_TIMEOUT": "1s"}), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ks.Close(context.Background()) })
	router, err := bridge.NewRouter("", sinks.NewRetrying(ns, policy, metrics, log), sinks.NewRetrying(ks, policy, metrics, log))
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.New(spool.Config{Dir: t.TempDir(), AckWait: 300 * time.Millisecond}, router, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = sp.Close(cctx)
	})
	verifier, err := auth.NewMist([]string{secret})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := bridge.New(defaults[bridge.Config](t, nil), bridge.Options{
		Delivery:  sp,
		Receivers: []*bridge.Receiver{{Name: "mist", Verifier: verifier, Topics: []string{"device-events", "alarms", "client-join"}}},
		Registry:  reg,
		Log:       log,
	})
	if err != nil {
		t.Fatal(err)
	}
	r := rec(reg)
	return r, hooked(srv.Handler(), r)
}

// hooked calls the Recorder's hooks for each webhook, as the server does
// once wired: Request after every answer, Events for accepted events.
func hooked(h http.Handler, r *status.Recorder) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		start := time.Now()
		body, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
		rw := httptest.NewRecorder()
		h.ServeHTTP(rw, req)
		var ans struct {
			Accepted int    `json:"accepted"`
			Reason   string `json:"reason"`
		}
		_ = json.Unmarshal(rw.Body.Bytes(), &ans)
		topic := ""
		if b, err := codec.Split(body, ""); err == nil {
			topic = b.Topic
			if rw.Code == http.StatusOK {
				evs := make([]*codec.Event, len(b.Events))
				for i := range b.Events {
					e := b.Event(i)
					evs[i] = &e
				}
				r.Events(evs)
			}
		}
		r.Request(strings.TrimPrefix(req.URL.Path, "/webhooks/"), topic, ans.Accepted, rw.Code, ans.Reason, start)
		for k, v := range rw.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rw.Code)
		_, _ = w.Write(rw.Body.Bytes())
	})
}

func batch(topic string, n int, from int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"topic":%q,"events":[`, topic)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"org_id":"org-1","site_id":"site-%d","timestamp":1800000000,"type":"AP_RESTARTED","seq":%d}`, (from+i)%3, from+i)
	}
	b.WriteString("]}")
	return b.Bytes()
}

func sign(body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// TestRealBridge: after a known load through the real bridge, sinks and
// spool, the figures read from their registry are exact.
func TestRealBridge(t *testing.T) {
	rec, h := realBridge(t, func(reg prometheus.Gatherer) *status.Recorder {
		return status.New(status.Options{Gatherer: reg, SubjectPrefix: "mist"})
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	rec.Sample(time.Now()) // every series at zero

	post := func(body []byte, sig string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/webhooks/mist", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Mist-Signature-v2", sig)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	load := []struct {
		topic   string
		events  int
		badSig  bool
		want    int
		comment string
	}{
		{"device-events", 5, false, 200, ""},
		{"alarms", 4, false, 200, ""},
		{"device-events", 5, false, 200, ""},
		{"device-events", 5, true, 401, "a wrong signature"},
		{"rogue", 1, false, 422, "a topic the receiver does not take"},
		{"alarms", 4, false, 200, ""},
		{"device-events", 5, false, 200, ""},
		{"client-join", 2, false, 200, "the last request"},
	}
	seq := 0
	for _, l := range load {
		body := batch(l.topic, l.events, seq)
		seq += l.events
		sig := sign(body)
		if l.badSig {
			sig = strings.Repeat("0", 64)
		}
		if code := post(body, sig); code != l.want {
			t.Fatalf("%s ×%d: %d, want %d", l.topic, l.events, code, l.want)
		}
	}
	rec.Sample(time.Now().Add(time.Second))
	s := rec.Snapshot("device-events")

	totals := map[string]int64{}
	for _, f := range s.Topics {
		totals[f.Name] = f.Total
	}
	if want := map[string]int64{"device-events": 15, "alarms": 8, "client-join": 2}; !mapsEq(totals, want) || s.Accepted.Total != 25 {
		t.Errorf("topics %v (accepted %d), want %v (25)", totals, s.Accepted.Total, want)
	}
	sk := map[string]status.Sink{}
	for _, x := range s.Sinks {
		sk[x.Name] = x
	}
	if n, k := sk["nats"], sk["kafka"]; n.Total != 25 || n.Spool.Events != 0 || k.Total != 0 || k.Spool.Events != 25 || k.Spool.Bytes == 0 {
		t.Errorf("sinks: nats %d acked, %d spooled; kafka %d acked, %d spooled (%d bytes); want 25, 0; 0, 25 (some)",
			n.Total, n.Spool.Events, k.Total, k.Spool.Events, k.Spool.Bytes)
	}
	answers := map[string]int64{}
	for _, e := range s.Errors {
		switch e.Source {
		case status.SourceAnswer:
			answers[fmt.Sprint(e.Code, " ", e.Reason)] = e.Total
		case status.SourceSink:
			if e.Sink != "kafka" || e.Total == 0 {
				t.Errorf("sink error %+v: only Kafka's retries and failures are expected", e)
			}
		default:
			t.Errorf("unexpected error count %+v", e)
		}
	}
	if want := map[string]int64{"401 signature_mismatch": 1, "422 topic_not_allowed": 1}; !mapsEq(answers, want) {
		t.Errorf("answers %v, want %v", answers, want)
	}
	if len(s.Receivers) != 1 {
		t.Fatalf("receivers %+v", s.Receivers)
	}
	rc := s.Receivers[0]
	if rc.Name != "mist" || rc.Requests != 8 || rc.Events != 25 || rc.Errors != 2 || rc.Last == nil ||
		rc.Last.Topic != "client-join" || rc.Last.Events != 2 || rc.Last.Code != 200 {
		t.Errorf("receiver %+v, last %+v", rc, rc.Last)
	}
	if !slices.Equal(s.Latest.Topics, []string{"alarms", "client-join", "device-events"}) || s.Latest.Topic != "device-events" ||
		len(s.Latest.Events) != status.DefaultLatest {
		t.Fatalf("latest %v of %q: %d events", s.Latest.Topics, s.Latest.Topic, len(s.Latest.Events))
	}
	// The newest device event is the last of the batch of seq 24 to 28: site
	// 28%3.
	e := s.Latest.Events[0]
	if e.Key != "site-1" || e.Subject != "mist.device-events.org-1.site-1" || !strings.Contains(e.Data, `"seq":28`) ||
		e.Source != "/mist/orgs/org-1/sites/site-1" || e.Type != "com.juniper.mist.device-events" {
		t.Errorf("newest device event %+v", e)
	}
}

func mapsEq[K comparable, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
