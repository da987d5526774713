package spool

// Tests of the Spool against a real broker: an embedded nats-server with
// JetStream, through natssink and sinks.Retrying as the bridge builds them.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/mistbridge/mistbridge/bridge"
	"github.com/mistbridge/mistbridge/codec"
	"github.com/mistbridge/mistbridge/sinks"
	"github.com/mistbridge/mistbridge/sinks/natssink"
)

// broker is an embedded nats-server that can be stopped and started again
// on the same port and store.
type broker struct {
	t    testing.TB
	dir  string
	addr string
	emb  *natssink.Embedded
	url  string
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func newBroker(t testing.TB) *broker {
	b := &broker{t: t, dir: t.TempDir(), addr: freeAddr(t)}
	b.url = "nats://" + b.addr
	b.start()
	t.Cleanup(b.stop)
	return b
}

func (b *broker) start() {
	b.t.Helper()
	emb, err := natssink.StartEmbedded(b.dir, b.addr, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	b.emb = emb
}

func (b *broker) stop() {
	if b.emb != nil {
		b.emb.Shutdown()
		b.emb = nil
	}
}

// router builds the bridge's Router over a natssink connected to url.
func newRouter(t testing.TB, url string) *bridge.Router {
	t.Helper()
	var cfg natssink.Config
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: map[string]string{"URL": url, "PUBLISH_TIMEOUT": "1s"}}); err != nil {
		t.Fatal(err)
	}
	ns, err := natssink.New(context.Background(), cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Close(context.Background()) })
	out := sinks.NewRetrying(ns, sinks.RetryPolicy{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}, nil, testLog(t))
	r, err := bridge.NewRouter("", out)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func openSpool(t testing.TB, cfg Config, r *bridge.Router, reg prometheus.Registerer) *Spool {
	t.Helper()
	s, err := New(cfg, r, testLog(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// events makes n events over sites keys, each event's body naming its site
// and its number within the site.
func events(topic string, from, n, sites int) []*codec.Event {
	out := make([]*codec.Event, n)
	for i := range n {
		k := from + i
		raw := fmt.Sprintf(`{"org_id":"org-1","site_id":"site-%d","n":%d,"timestamp":%d}`, k%sites, k, 1700000000+k)
		ev := codec.Map(topic, []byte(raw))
		out[i] = &ev
	}
	return out
}

// streamMsg is one stored message.
type streamMsg struct {
	id, subject string
	data        []byte
}

// stored reads every message of the MIST stream in stream order, polling
// until it holds at least want messages or the deadline passes.
func stored(t testing.TB, url string, want int, within time.Duration) []streamMsg {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var st jetstream.Stream
	for {
		st, err = js.Stream(ctx, natssink.DefaultStream)
		if err == nil {
			info, ierr := st.Info(ctx)
			if ierr == nil && info.State.Msgs >= uint64(want) {
				break
			}
			err = ierr
		}
		select {
		case <-ctx.Done():
			n := uint64(0)
			if st != nil {
				if info, err := st.Info(context.Background()); err == nil {
					n = info.State.Msgs
				}
			}
			t.Fatalf("stream holds %d messages after %v, want %d (%v)", n, within, want, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []streamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		out = append(out, streamMsg{id: m.Header.Get("ce-id"), subject: m.Subject, data: m.Data})
	}
	return out
}

// waitFor polls cond until it holds or within passes.
func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline, in the test goroutine
	}
}

// checkArrived checks that msgs hold exactly the events sent (duplicates
// only with the same id) and, per site, in the order sent.
func checkArrived(t testing.TB, msgs []streamMsg, sent []*codec.Event) {
	t.Helper()
	byID := map[string]*codec.Event{}
	for _, ev := range sent {
		byID[ev.ID] = ev
	}
	seen := map[string]bool{}
	lastN := map[string]int{}
	for _, m := range msgs {
		ev, ok := byID[m.id]
		if !ok {
			t.Fatalf("message %q on %s is none of the events sent", m.id, m.subject)
		}
		if string(m.data) != string(ev.Data) {
			t.Fatalf("message %s carries %q, the event %q", m.id, m.data, ev.Data)
		}
		if seen[m.id] {
			continue // a duplicate, same id
		}
		seen[m.id] = true
		n := eventN(t, ev)
		if prev, ok := lastN[ev.Site]; ok && n < prev {
			t.Fatalf("site %s: event %d arrived after event %d", ev.Site, n, prev)
		}
		lastN[ev.Site] = n
	}
	if len(seen) != len(sent) {
		t.Fatalf("%d distinct events arrived, %d sent", len(seen), len(sent))
	}
}

func eventN(t testing.TB, ev *codec.Event) int {
	s := string(ev.Data)
	i := strings.Index(s, `"n":`)
	j := strings.Index(s[i:], ",")
	n, err := strconv.Atoi(s[i+4 : i+j])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// counter reads a counter's value.
func counter(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestHybridBrokerDown(t *testing.T) {
	b := newBroker(t)
	r := newRouter(t, b.url)
	reg := prometheus.NewRegistry()
	s := openSpool(t, Config{Mode: ModeHybrid, AckWait: 300 * time.Millisecond, Dir: t.TempDir(), DeliverTimeout: time.Second}, r, reg)

	// Broker up: acknowledged directly, nothing spooled.
	up := events("device-events", 0, 10, 3)
	if err := s.Deliver(context.Background(), up); err != nil {
		t.Fatal(err)
	}
	if got := counter(t, s.metrics.appended.WithLabelValues("nats")); got != 0 {
		t.Fatalf("broker up: %v events spooled", got)
	}

	b.stop()
	// Wait until the client has seen the broker go: a publish made before
	// that sits in nats.go's reconnect buffer and may land after the
	// reconnect, ahead of the spooled copies (see docs/spool.md).
	waitFor(t, 10*time.Second, "the sink sees the broker down", func() bool {
		return r.Output("nats").Ready(context.Background()) != nil
	})
	down := events("device-events", 10, 30, 3)
	start := time.Now()
	for i := 0; i < len(down); i += 10 {
		if err := s.Deliver(context.Background(), down[i:i+10]); err != nil {
			t.Fatalf("broker down: Deliver = %v, want nil (spooled)", err)
		}
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("three Delivers took %v with an ack wait of 300ms", took)
	}
	rd := s.Ready(context.Background())
	if !rd.Ready || rd.Spool == nil || rd.Spool.Events != 30 || rd.Sinks["nats"] == "ok" || s.Failing() {
		t.Fatalf("readiness while the spool absorbs = %+v (spool %+v), failing %v", rd, rd.Spool, s.Failing())
	}
	if got := counter(t, s.metrics.appended.WithLabelValues("nats")); got != 30 {
		t.Fatalf("appended = %v, want 30", got)
	}

	b.start()
	msgs := stored(t, b.url, 40, 30*time.Second)
	checkArrived(t, msgs, append(up, down...))
	waitFor(t, 5*time.Second, "spool drained", func() bool { return s.Ready(context.Background()).Spool.Events == 0 })
	if got := counter(t, s.metrics.delivered.WithLabelValues("nats")); got != 30 {
		t.Fatalf("delivered = %v, want 30", got)
	}
}

// TestReplayAfterRestart: events spooled while the broker is down are
// delivered after the bridge restarts, in order per partition key.
func TestReplayAfterRestart(t *testing.T) {
	b := newBroker(t)
	dir := t.TempDir()
	r := newRouter(t, b.url)
	b.stop()
	s, err := New(Config{Mode: ModeSpool, Dir: dir, DeliverTimeout: 500 * time.Millisecond}, r, testLog(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	sent := events("location", 0, 300, 7)
	for i := 0; i < len(sent); i += 25 {
		if err := s.Deliver(context.Background(), sent[i:i+25]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	st, err := Inspect(dir)
	if err != nil || st.Events != 300 || len(st.Sinks) != 1 || st.Sinks[0].Oldest.IsZero() {
		t.Fatalf("Inspect after close = %+v, %v; want 300 events for nats", st, err)
	}

	b.start()
	r2 := newRouter(t, b.url)
	reg := prometheus.NewRegistry()
	s2 := openSpool(t, Config{Mode: ModeSpool, Dir: dir, BatchEvents: 40}, r2, reg)
	if rec := s2.Recovery(); len(rec) != 1 || rec[0].Events != 300 || len(rec[0].Skipped) != 0 {
		t.Fatalf("recovery = %+v", rec)
	}
	if got := counter(t, s2.metrics.recovered.WithLabelValues("nats")); got != 300 {
		t.Fatalf("recovered metric = %v", got)
	}
	checkArrived(t, stored(t, b.url, 300, 30*time.Second), sent)
}

// TestRestartMidBatch closes the spool while its deliverer is sending and
// reopens it: everything arrives, duplicates only with the same id.
func TestRestartMidBatch(t *testing.T) {
	b := newBroker(t)
	dir := t.TempDir()
	r := newRouter(t, b.url)
	b.stop() // spool everything first, then let the deliverer start on it
	s, err := New(Config{Mode: ModeSpool, Dir: dir, BatchEvents: 20, DeliverTimeout: 2 * time.Second}, r, testLog(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	sent := events("client-join", 0, 2000, 11)
	for i := 0; i < len(sent); i += 100 {
		if err := s.Deliver(context.Background(), sent[i:i+100]); err != nil {
			t.Fatal(err)
		}
	}
	b.start()
	waitFor(t, 30*time.Second, "delivery under way", func() bool {
		return counter(t, s.metrics.delivered.WithLabelValues("nats")) > 0
	})
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	left, err := Inspect(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("closed with %d events left", left.Events)
	s2 := openSpool(t, Config{Mode: ModeSpool, Dir: dir, BatchEvents: 500}, r, nil)
	checkArrived(t, stored(t, b.url, 2000, 30*time.Second), sent)
	waitFor(t, 10*time.Second, "spool drained", func() bool { return s2.Ready(context.Background()).Spool.Events == 0 })
}

func TestSpoolFullAnswers(t *testing.T) {
	b := newBroker(t)
	r := newRouter(t, b.url)
	b.stop()
	dir := t.TempDir()
	s := openSpool(t, Config{Mode: ModeSpool, Dir: dir, MaxBytes: MinMaxBytes}, r, nil)
	accepted := 0
	for i := 0; ; i++ {
		err := s.Deliver(context.Background(), events("audits", i, 1, 1))
		if errors.Is(err, bridge.ErrSpoolFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		accepted++
	}
	if !s.Failing() || s.Ready(context.Background()).Ready {
		t.Fatal("a full spool must be failing and not ready")
	}
	st, err := Inspect(dir)
	if err != nil || st.Events != int64(accepted) {
		t.Fatalf("Inspect = %d events, %d accepted (%v)", st.Events, accepted, err)
	}
}

func TestMetricsPresentAtStart(t *testing.T) {
	b := newBroker(t)
	reg := prometheus.NewRegistry()
	openSpool(t, Config{Dir: t.TempDir()}, newRouter(t, b.url), reg)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mf := range mfs {
		if len(mf.GetMetric()) != 1 {
			continue
		}
		m := mf.GetMetric()[0]
		switch {
		case len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == "nats":
			got = append(got, mf.GetName())
		case mf.GetName() == "mistbridge_spool_max_bytes" && m.GetGauge().GetValue() != float64(DefaultMaxBytes):
			t.Errorf("mistbridge_spool_max_bytes = %v, want the default bound %d", m.GetGauge().GetValue(), DefaultMaxBytes)
		}
	}
	want := []string{
		"mistbridge_spool_appended_events_total", "mistbridge_spool_bytes", "mistbridge_spool_delivered_events_total",
		"mistbridge_spool_events", "mistbridge_spool_oldest_age_seconds", "mistbridge_spool_recovered_events_total",
		"mistbridge_spool_skipped_bytes_total",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("families at start = %v, want %v", got, want)
	}
}

func TestConfig(t *testing.T) {
	var fromEnv Config
	if err := env.ParseWithOptions(&fromEnv, env.Options{Environment: map[string]string{"SPOOL_DIR": "/x"}}); err != nil {
		t.Fatal(err)
	}
	if want := (Config{Dir: "/x"}).withDefaults(); fromEnv != want {
		t.Fatalf("envDefault tags give %+v, the code's defaults %+v", fromEnv, want)
	}
	bad := Config{Mode: "fast", AckWait: -1, MaxBytes: 10, BatchEvents: -1, BatchBytes: -1, DeliverTimeout: -1}
	err := bad.Validate()
	for _, v := range []string{"MISTBRIDGE_ACK_MODE=\"fast\"", "MISTBRIDGE_ACK_WAIT", "MISTBRIDGE_SPOOL_DIR", "MISTBRIDGE_SPOOL_MAX_BYTES=10", "MISTBRIDGE_SPOOL_BATCH_EVENTS", "MISTBRIDGE_SPOOL_BATCH_BYTES", "MISTBRIDGE_SPOOL_DELIVER_TIMEOUT"} {
		if err == nil || !strings.Contains(err.Error(), v) {
			t.Errorf("Validate() = %v, want it to name %s", err, v)
		}
	}
	if err := (&Config{Dir: "/x"}).Validate(); err != nil {
		t.Fatal(err)
	}
}
