package natssink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cejs "github.com/cloudevents/sdk-go/protocol/nats_jetstream/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mistbridge/mistbridge/codec"
	"github.com/mistbridge/mistbridge/sinks"
	"github.com/mistbridge/mistbridge/sinks/sinktest"
)

// defaultMaxPayload is nats-server's default max_payload, which the
// embedded server keeps.
const defaultMaxPayload = 1 << 20

func TestConformanceJetStream(t *testing.T) {
	sinktest.Run(t, sinktest.Setup{
		Features: sinktest.Features{
			HeaderPrefix:    codec.NATSPrefix,
			PercentEncoded:  true,
			Dedup:           true,
			Persistent:      true,
			MaxMessageBytes: defaultMaxPayload,
		},
		StartBroker: func(t *testing.T) sinktest.Broker { return startNATS(t, true) },
	})
}

func TestConformanceCore(t *testing.T) {
	sinktest.Run(t, sinktest.Setup{
		Features: sinktest.Features{
			HeaderPrefix:    codec.NATSPrefix,
			PercentEncoded:  true,
			MaxMessageBytes: defaultMaxPayload,
		},
		StartBroker: func(t *testing.T) sinktest.Broker { return startNATS(t, false) },
	})
}

// natsBroker is an embedded server started with StartEmbedded.
type natsBroker struct {
	e         *Embedded
	jetStream bool
	stop      sync.Once
}

func startNATS(t testing.TB, jetStream bool) *natsBroker {
	t.Helper()
	e, err := StartEmbedded(t.TempDir(), "127.0.0.1:0", nil)
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	b := &natsBroker{e: e, jetStream: jetStream}
	t.Cleanup(b.Stop)
	return b
}

func (b *natsBroker) Stop() { b.stop.Do(b.e.Shutdown) }

func (b *natsBroker) config(o sinktest.Options) Config {
	return Config{
		URL:               b.e.ClientURL(),
		JetStream:         b.jetStream,
		Stream:            strings.ToUpper(o.Namespace),
		SubjectPrefix:     o.Namespace,
		DeadLetterSubject: "dl." + o.Namespace,
		ContentMode:       o.Mode.String(),
		CreateStream:      true,
	}
}

func (b *natsBroker) Open(t *testing.T, o sinktest.Options) sinks.Sink {
	t.Helper()
	s, err := New(testCtx(t), b.config(o), nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func (b *natsBroker) Reader(t *testing.T, o sinktest.Options) sinktest.Reader {
	t.Helper()
	nc, err := nats.Connect(b.e.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	r := &natsReader{cfg: b.config(o)}
	if b.jetStream {
		if r.js, err = jetstream.New(nc); err != nil {
			t.Fatal(err)
		}
		return r
	}
	// Core NATS keeps nothing: subscribe before the sink publishes.
	r.ch = make(chan *nats.Msg, 4096)
	for _, subj := range []string{r.cfg.SubjectPrefix + ".>", r.cfg.DeadLetterSubject} {
		if _, err := nc.ChanSubscribe(subj, r.ch); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return r
}

// natsReader reads a namespace's stream with an ordered JetStream consumer,
// or, with core NATS, what its subscriptions received.
type natsReader struct {
	cfg  Config
	js   jetstream.JetStream
	cons jetstream.Consumer
	ch   chan *nats.Msg
	got  []sinktest.Message
}

func (r *natsReader) Destination(ev *codec.Event) string {
	return codec.Subject(r.cfg.SubjectPrefix, ev)
}

func (r *natsReader) DeadLetterDestination() string { return r.cfg.DeadLetterSubject }

func (r *natsReader) Read(ctx context.Context, n int) ([]sinktest.Message, error) {
	if r.js == nil {
		for len(r.got) < n {
			select {
			case m := <-r.ch:
				r.got = append(r.got, toMessage(m.Subject, m.Header, m.Data))
			case <-ctx.Done():
				return r.got, nil
			}
		}
		return r.got, nil
	}
	for len(r.got) < n && ctx.Err() == nil {
		if r.cons == nil {
			cons, err := r.js.OrderedConsumer(ctx, r.cfg.Stream, jetstream.OrderedConsumerConfig{})
			if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, context.DeadlineExceeded) {
				return r.got, nil // nothing written yet
			}
			if err != nil {
				return r.got, err
			}
			r.cons = cons
		}
		batch, err := r.cons.Fetch(n-len(r.got), jetstream.FetchMaxWait(100*time.Millisecond))
		if err != nil {
			return r.got, err
		}
		for m := range batch.Messages() {
			r.got = append(r.got, toMessage(m.Subject(), m.Headers(), m.Data()))
		}
	}
	return r.got, nil
}

func toMessage(subject string, h nats.Header, data []byte) sinktest.Message {
	m := sinktest.Message{Destination: subject, Data: data}
	for k, vs := range h {
		for _, v := range vs {
			m.Headers = append(m.Headers, sinktest.Header{Key: k, Value: v})
		}
	}
	m.Binding = cejs.NewMessage(&nats.Msg{Subject: subject, Header: h, Data: data})
	return m
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newSink(t testing.TB, cfg Config, log *slog.Logger) *Sink {
	t.Helper()
	s, err := New(testCtx(t), cfg, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func events(n, size int, tag string) []*codec.Event {
	out := make([]*codec.Event, n)
	for i := range out {
		raw := fmt.Sprintf(`{"org_id":"org-1","site_id":"site-%d","timestamp":1700000000,"tag":"%s-%d","pad":"%s"}`,
			i, tag, i, strings.Repeat("x", size))
		ev := codec.Map("device-events", []byte(raw))
		out[i] = &ev
	}
	return out
}

func connect(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

func TestStreamCreatedAsConfigured(t *testing.T) {
	b := startNATS(t, true)
	newSink(t, Config{URL: b.e.ClientURL(), JetStream: true, CreateStream: true, StreamReplicas: 1,
		DuplicateWindow: 90 * time.Second}, nil)
	_, js := connect(t, b.e.ClientURL())
	st, err := js.Stream(testCtx(t), DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	c := st.CachedInfo().Config
	if strings.Join(c.Subjects, " ") != "mist.> mistbridge.deadletter" || c.Storage != jetstream.FileStorage ||
		c.Duplicates != 90*time.Second || c.Replicas != 1 {
		t.Errorf("stream config: subjects %v, storage %v, duplicates %v, replicas %d", c.Subjects, c.Storage, c.Duplicates, c.Replicas)
	}
}

// Each JetStream message carries Nats-Msg-Id = the CloudEvent id.
func TestMsgIDHeader(t *testing.T) {
	b := startNATS(t, true)
	s := newSink(t, Config{URL: b.e.ClientURL(), JetStream: true, CreateStream: true}, nil)
	evs := events(3, 10, "id")
	if err := s.Write(testCtx(t), evs); err != nil {
		t.Fatal(err)
	}
	_, js := connect(t, b.e.ClientURL())
	st, err := js.Stream(testCtx(t), DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	for i, ev := range evs {
		m, err := st.GetMsg(testCtx(t), uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Header.Get(jetstream.MsgIDHeader); got != ev.ID {
			t.Errorf("message %d: %s = %q, want %q", i+1, jetstream.MsgIDHeader, got, ev.ID)
		}
		if m.Subject != "mist.device-events.org-1.site-"+fmt.Sprint(i) {
			t.Errorf("message %d: subject %q", i+1, m.Subject)
		}
	}
}

// A stream limit the operator set is reported as permanent, for the
// offending message only.
func TestStreamMaxMsgSizeIsPermanent(t *testing.T) {
	b := startNATS(t, true)
	_, js := connect(t, b.e.ClientURL())
	if _, err := js.CreateStream(testCtx(t), jetstream.StreamConfig{
		Name: "SMALL", Subjects: []string{"small.>", "small-dl"}, MaxMsgSize: 2048,
	}); err != nil {
		t.Fatal(err)
	}
	s := newSink(t, Config{URL: b.e.ClientURL(), JetStream: true, Stream: "SMALL", SubjectPrefix: "small",
		DeadLetterSubject: "small-dl"}, nil)
	evs := append(events(1, 10, "ok"), events(1, 4096, "big")...)
	err := s.Write(testCtx(t), evs)
	var werrs sinks.WriteErrors
	if !errors.As(err, &werrs) || werrs[0] != nil || werrs[1] == nil {
		t.Fatalf("Write = %v, want only the second event to fail", err)
	}
	if !sinks.IsPermanent(werrs[1]) || !errors.Is(werrs[1], jetstream.ErrStreamMessageExceedsMaximum) {
		t.Errorf("too large for the stream: %v, want permanent and ErrStreamMessageExceedsMaximum", werrs[1])
	}
}

// An existing stream is used as it is, with a warning when it does not
// capture the sink's subjects; publishing there is then a transient error
// (an operator can fix the stream).
func TestExistingStreamIsNotChanged(t *testing.T) {
	b := startNATS(t, true)
	_, js := connect(t, b.e.ClientURL())
	if _, err := js.CreateStream(testCtx(t), jetstream.StreamConfig{
		Name: "OPS", Subjects: []string{"other.>"}, MaxAge: time.Hour,
	}); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
	s := newSink(t, Config{URL: b.e.ClientURL(), JetStream: true, CreateStream: true, Stream: "OPS",
		PublishTimeout: time.Second}, log)
	st, err := js.Stream(testCtx(t), "OPS")
	if err != nil {
		t.Fatal(err)
	}
	if c := st.CachedInfo().Config; strings.Join(c.Subjects, ",") != "other.>" || c.MaxAge != time.Hour {
		t.Errorf("the sink changed the stream: %v %v", c.Subjects, c.MaxAge)
	}
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	if !strings.Contains(out, "does not capture") || !strings.Contains(out, "mist.>") {
		t.Errorf("want a warning naming mist.>, got:\n%s", out)
	}
	err = s.Write(testCtx(t), events(1, 10, "nostream"))
	if err == nil || sinks.IsPermanent(err) || !errors.Is(err, jetstream.ErrNoStreamResponse) {
		t.Errorf("Write to an uncaptured subject = %v, want a transient ErrNoStreamResponse", err)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestMissingStreamWithoutCreateFailsNew(t *testing.T) {
	b := startNATS(t, true)
	_, err := New(testCtx(t), Config{URL: b.e.ClientURL(), JetStream: true, CreateStream: false}, nil)
	if err == nil || !strings.Contains(err.Error(), "MISTBRIDGE_NATS_CREATE_STREAM is false") {
		t.Fatalf("New = %v, want an error naming MISTBRIDGE_NATS_CREATE_STREAM", err)
	}
}

// The bridge may start before NATS: New succeeds, writes fail transiently
// and at once, and when the server comes up the stream is created and
// writes succeed.
func TestStartBeforeNATS(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := newSink(t, Config{URL: "nats://" + addr, JetStream: true, CreateStream: true}, nil)
	start := time.Now()
	err = s.Write(testCtx(t), events(1, 10, "early"))
	if err == nil || sinks.IsPermanent(err) || !errors.Is(err, nats.ErrDisconnected) {
		t.Fatalf("Write before NATS = %v, want a transient ErrDisconnected", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Write before NATS took %v, want an immediate failure", d)
	}
	if err := s.Ready(testCtx(t)); err == nil {
		t.Fatal("Ready before NATS = nil")
	}

	e, err := StartEmbedded(t.TempDir(), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	deadline := time.Now().Add(8 * time.Second)
	for s.Ready(testCtx(t)) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("not ready 8s after NATS started: %v", s.Ready(testCtx(t)))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := s.Write(testCtx(t), events(2, 10, "late")); err != nil {
		t.Fatalf("Write once NATS is up: %v", err)
	}
}

// The embedded server keeps JetStream data under <dataDir>/nats, so a
// restart on the same directory finds the stream and its messages.
func TestEmbeddedPersistsInDataDir(t *testing.T) {
	dir := t.TempDir()
	e, err := StartEmbedded(dir, "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(testCtx(t), Config{URL: e.ClientURL(), JetStream: true, CreateStream: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(testCtx(t), events(4, 10, "persist")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	e.Shutdown()
	if _, err := os.Stat(filepath.Join(dir, "nats", "jetstream")); err != nil {
		t.Fatalf("no JetStream store under <dataDir>/nats: %v", err)
	}

	e2, err := StartEmbedded(dir, "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Shutdown()
	_, js := connect(t, e2.ClientURL())
	st, err := js.Stream(testCtx(t), DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n != 4 {
		t.Errorf("after restart the stream holds %d messages, want 4", n)
	}
}

func TestStartEmbeddedBadAddr(t *testing.T) {
	for _, addr := range []string{"nohost", "127.0.0.1:x", "127.0.0.1:70000"} {
		if e, err := StartEmbedded(t.TempDir(), addr, nil); err == nil {
			e.Shutdown()
			t.Errorf("StartEmbedded(%q) = nil error", addr)
		}
	}
}

// BenchmarkWrite writes 10-event batches, serially and from parallel
// goroutines, with JetStream and with core NATS.
func BenchmarkWrite(b *testing.B) {
	for _, js := range []bool{true, false} {
		name := "core"
		if js {
			name = "jetstream"
		}
		br := startNATS(b, js)
		s := newSink(b, Config{URL: br.e.ClientURL(), JetStream: js, CreateStream: true}, nil)
		ctx := context.Background()
		var seq atomic.Int64
		// Fresh ids for every Write, so JetStream stores every message
		// rather than dropping duplicates.
		batch := func() []*codec.Event {
			evs := events(10, 400, "bench")
			n := seq.Add(1)
			for j, ev := range evs {
				ev.ID = fmt.Sprintf("bench-%d-%d", n, j)
			}
			return evs
		}
		b.Run(name+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			evs := batch()
			for b.Loop() {
				b.StopTimer()
				n := seq.Add(1)
				for j, ev := range evs {
					ev.ID = fmt.Sprintf("bench-%d-%d", n, j)
				}
				b.StartTimer()
				if err := s.Write(ctx, evs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*10), "ns/event")
		})
		b.Run(name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := s.Write(ctx, batch()); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*10), "ns/event")
		})
	}
}

// Consecutive Writes publish through different publishers, each with its
// own PubAck subscription and window, so that the acks of one Write do not
// queue behind another's; once the Writes return, no publisher waits for
// an ack.
func TestWritesSpreadOverPublishShards(t *testing.T) {
	b := startNATS(t, true)
	s := newSink(t, Config{URL: b.e.ClientURL(), JetStream: true, CreateStream: true}, nil)
	c := s.cur.Load()
	if len(c.pubs) != publishShards {
		t.Fatalf("%d publishers, want %d", len(c.pubs), publishShards)
	}
	// A publisher subscribes to its PubAcks on its first publish.
	subs := c.nc.NumSubscriptions()
	var wg sync.WaitGroup
	errs := make(chan error, publishShards)
	for i := range publishShards {
		wg.Go(func() { errs <- s.Write(testCtx(t), events(5, 10, fmt.Sprintf("shard%d", i))) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Write: %v", err)
		}
	}
	if got := c.nc.NumSubscriptions() - subs; got != publishShards {
		t.Errorf("%d Writes subscribed %d publishers to their PubAcks, want %d", publishShards, got, publishShards)
	}
	for i, p := range c.pubs {
		if n := p.pending(); n != 0 {
			t.Errorf("publisher %d waits for %d PubAcks after every Write returned", i, n)
		}
	}
}

// A Write whose ctx ends before its PubAcks arrive returns at once with a
// transient error for each message not acknowledged yet; the messages it
// handed to nats.go are not reused by later Writes, whose messages land
// intact.
func TestWriteGivesUpOnItsCtx(t *testing.T) {
	b := startNATS(t, true)
	s := newSink(t, Config{URL: b.e.ClientURL(), JetStream: true, CreateStream: true}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var all []*codec.Event
	for i := range 20 {
		evs := events(5, 100, fmt.Sprintf("given-up-%d", i))
		all = append(all, evs...)
		err := s.Write(ctx, evs)
		var werrs sinks.WriteErrors
		switch {
		case err == nil:
		case errors.As(err, &werrs):
			for j, e := range werrs {
				if e != nil && (!errors.Is(e, context.Canceled) || sinks.IsPermanent(e)) {
					t.Errorf("Write %d, event %d: %v, want nil or a transient context.Canceled", i, j, e)
				}
			}
		default:
			t.Fatalf("Write %d = %v (%T), want nil or a WriteErrors", i, err, err)
		}
	}
	var wg sync.WaitGroup
	for i := range 8 {
		evs := events(5, 100, fmt.Sprintf("after-%d", i))
		all = append(all, evs...)
		wg.Go(func() {
			if err := s.Write(testCtx(t), evs); err != nil {
				t.Errorf("Write after the given-up ones: %v", err)
			}
		})
	}
	wg.Wait()
	// Every message that landed is the event its Nats-Msg-Id names.
	want := make(map[string]string, len(all))
	for _, ev := range all {
		want[ev.ID] = string(ev.Data)
	}
	_, js := connect(t, b.e.ClientURL())
	st, err := js.Stream(testCtx(t), DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	n := st.CachedInfo().State.Msgs
	if n < 40 {
		t.Fatalf("the stream holds %d messages, want at least the 40 of the later Writes", n)
	}
	for seq := uint64(1); seq <= n; seq++ {
		m, err := st.GetMsg(testCtx(t), seq)
		if err != nil {
			t.Fatal(err)
		}
		id := m.Header.Get(jetstream.MsgIDHeader)
		if data, ok := want[id]; !ok || data != string(m.Data) || m.Header.Get("ce-id") != id {
			t.Errorf("message %d: id %q, ce-id %q, data %.40s: not the event it names", seq, id, m.Header.Get("ce-id"), m.Data)
		}
	}
}
