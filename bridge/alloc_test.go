package bridge_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/mistbridge/mistbridge/bridge"
	"github.com/mistbridge/mistbridge/bridge/auth"
	"github.com/mistbridge/mistbridge/codec"
	"github.com/mistbridge/mistbridge/test/loadgen"
)

// The tests in this file measure the handler's own cost: the HTTP
// plumbing, the signature check, splitting, mapping, admission and the
// Router. Delivery is a STUB (stubOutput) that acknowledges every event at
// once: these are not broker tests, which run against real brokers in
// bridge_test.go (TestSamplesThroughHandler, BenchmarkHandler).

// stubOutput is a STUB [bridge.Output]: it acknowledges every event at once
// and counts them. It reads each event's id, as every real sink does.
type stubOutput struct {
	name   string
	events atomic.Int64
	idLen  atomic.Int64
}

func (o *stubOutput) Name() string { return o.name }

func (o *stubOutput) Deliver(_ context.Context, evs []*codec.Event) error {
	n := 0
	for _, ev := range evs {
		n += len(ev.ID)
	}
	o.idLen.Add(int64(n))
	o.events.Add(int64(len(evs)))
	return nil
}

func (o *stubOutput) Ready(context.Context) error { return nil }
func (o *stubOutput) Failing() bool               { return false }

// handlerRig drives bridge.Server's handler directly, reusing one request
// and one response writer, so what a run allocates is the handler's.
type handlerRig struct {
	h       http.Handler
	req     *http.Request
	body    *rewindBody
	w       *discardWriter
	outputs []*stubOutput
	events  int // per request
}

// newHandlerRig builds a server whose Router sends every topic to the
// named stub outputs, and a Mist-signed request of a 10-event body.
func newHandlerRig(t testing.TB, outputNames ...string) *handlerRig {
	t.Helper()
	return newTracedHandlerRig(t, nil, outputNames...)
}

// newTracedHandlerRig is newHandlerRig with the given tracer (nil: off).
func newTracedHandlerRig(t testing.TB, tracer trace.Tracer, outputNames ...string) *handlerRig {
	t.Helper()
	hr := &handlerRig{events: 10}
	var outs []bridge.Output
	for _, n := range outputNames {
		o := &stubOutput{name: n}
		hr.outputs = append(hr.outputs, o)
		outs = append(outs, o)
	}
	router, err := bridge.NewRouter("", outs...)
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewMist([]string{secret})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := bridge.New(defaults[bridge.Config](t, nil), bridge.Options{
		Router:    router,
		Receivers: []*bridge.Receiver{{Name: "mist", Verifier: v}},
		// As in production: the access log on, at info, to a real handler.
		Log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		Tracer: tracer,
	})
	if err != nil {
		t.Fatal(err)
	}
	hr.h = srv.Handler()
	body := loadgen.Body("device-events", 0, hr.events)
	hr.body = &rewindBody{b: body}
	hr.req, err = http.NewRequest(http.MethodPost, "http://bridge.test/webhooks/mist", hr.body)
	if err != nil {
		t.Fatal(err)
	}
	hr.req.ContentLength = int64(len(body))
	hr.req.Header.Set("Content-Type", "application/json")
	hr.req.Header.Set("X-Mist-Signature-v2", loadgen.Sign(secret, body))
	hr.w = &discardWriter{h: http.Header{}}
	return hr
}

// serve runs one request through the handler and returns its status.
func (hr *handlerRig) serve() int {
	hr.body.rewind()
	hr.w.reset()
	hr.h.ServeHTTP(hr.w, hr.req)
	return hr.w.code
}

// rewindBody is a request body that can be read again from the start.
type rewindBody struct {
	b   []byte
	off int
}

func (r *rewindBody) Read(p []byte) (int, error) {
	if r.off >= len(r.b) {
		return 0, io.EOF
	}
	n := copy(p, r.b[r.off:])
	r.off += n
	return n, nil
}

func (r *rewindBody) Close() error { return nil }
func (r *rewindBody) rewind()      { r.off = 0 }

// discardWriter is a reusable http.ResponseWriter that keeps the status
// and the answer.
type discardWriter struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *discardWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.body.Write(p)
}

// SetReadDeadline succeeds, as on a server's connection, so the handler
// takes the path it takes in production (http.ResponseController finds it).
func (w *discardWriter) SetReadDeadline(time.Time) error { return nil }

func (w *discardWriter) reset() {
	clear(w.h)
	w.code = 0
	w.body.Reset()
}

// BenchmarkHandlerStub is BenchmarkHandler's signed 10-event request
// through the handler with stub outputs that acknowledge at once (see the
// note at the top of this file): the bridge's own cost per request.
func BenchmarkHandlerStub(b *testing.B) {
	for _, bc := range []struct {
		name    string
		outputs []string
	}{{"one-output", []string{"nats"}}, {"two-outputs", []string{"nats", "kafka"}}} {
		b.Run(bc.name, func(b *testing.B) {
			hr := newHandlerRig(b, bc.outputs...)
			b.ReportAllocs()
			for b.Loop() {
				if code := hr.serve(); code != http.StatusOK {
					b.Fatalf("status %d: %s", code, hr.w.body.String())
				}
			}
			b.ReportMetric(float64(b.N*hr.events)/b.Elapsed().Seconds(), "events/s")
			for _, o := range hr.outputs {
				if got := o.events.Load(); got != int64(b.N*hr.events) {
					b.Fatalf("output %s got %d events, want %d", o.name, got, b.N*hr.events)
				}
			}
		})
	}
}

// BenchmarkHandlerTracing is BenchmarkHandlerStub's one-output request
// with tracing off (no tracer: what runs unless OTEL_EXPORTER_OTLP_ENDPOINT
// is set) and on (the OpenTelemetry SDK sampling every request, its spans
// recorded and dropped: the instrumentation's cost without an exporter's).
func BenchmarkHandlerTracing(b *testing.B) {
	for _, bc := range []struct {
		name   string
		tracer trace.Tracer
	}{{"off", nil}, {"on", sdktrace.NewTracerProvider().Tracer("bench")}} {
		b.Run(bc.name, func(b *testing.B) {
			hr := newTracedHandlerRig(b, bc.tracer, "nats")
			b.ReportAllocs()
			for b.Loop() {
				if code := hr.serve(); code != http.StatusOK {
					b.Fatalf("status %d: %s", code, hr.w.body.String())
				}
			}
			b.ReportMetric(float64(b.N*hr.events)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// recordingOutput is a STUB [bridge.Output] that records the ids of the
// events it is given and answers err.
type recordingOutput struct {
	name string
	err  error
	mu   sync.Mutex
	ids  []string
}

func (o *recordingOutput) Name() string { return o.name }

func (o *recordingOutput) Deliver(_ context.Context, evs []*codec.Event) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, ev := range evs {
		o.ids = append(o.ids, ev.ID)
	}
	return o.err
}

func (o *recordingOutput) Ready(context.Context) error { return nil }
func (o *recordingOutput) Failing() bool               { return false }

// TestRouterGroups checks how the Router splits a request's events between
// outputs (Groups, Plan and Deliver agree, in order, configuration order
// first), and that the common cases allocate nothing.
func TestRouterGroups(t *testing.T) {
	ev := func(topic, id string) *codec.Event { return &codec.Event{Topic: topic, ID: id} }
	tests := []struct {
		name   string
		routes string
		events []*codec.Event
		want   map[string][]string // per output: ids in order
		shared bool                // every group's Events is the events slice itself
		err    error
	}{
		{name: "no routes", events: []*codec.Event{ev("a", "1"), ev("b", "2")},
			want: map[string][]string{"nats": {"1", "2"}, "kafka": {"1", "2"}}, shared: true},
		{name: "one topic routed to one output", routes: "a=kafka,*=nats", events: []*codec.Event{ev("a", "1"), ev("a", "2")},
			want: map[string][]string{"kafka": {"1", "2"}}, shared: true},
		{name: "topics with the same outputs", routes: "a=kafka,b=kafka", events: []*codec.Event{ev("a", "1"), ev("b", "2"), ev("a", "3")},
			want: map[string][]string{"kafka": {"1", "2", "3"}}, shared: true},
		{name: "mixed", routes: "location*=nats,*=kafka", events: []*codec.Event{ev("device-events", "1"), ev("location", "2"), ev("device-events", "3")},
			want: map[string][]string{"nats": {"2"}, "kafka": {"1", "3"}}},
		{name: "overlapping", routes: "a=kafka+nats,b=kafka", events: []*codec.Event{ev("a", "1"), ev("b", "2"), ev("a", "3")},
			want: map[string][]string{"nats": {"1", "3"}, "kafka": {"1", "2", "3"}}},
		{name: "unrouted", routes: "a=nats", events: []*codec.Event{ev("a", "1"), ev("zz", "2")}, err: bridge.ErrUnrouted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nats, kafka := &recordingOutput{name: "nats"}, &recordingOutput{name: "kafka"}
			r, err := bridge.NewRouter(tt.routes, nats, kafka)
			if err != nil {
				t.Fatal(err)
			}
			prefix := []bridge.Group{{Output: "earlier"}}
			groups, err := r.Groups(prefix, tt.events)
			if tt.err != nil {
				if !errors.Is(err, tt.err) || len(groups) != 1 {
					t.Fatalf("Groups: %v with %d groups, want %v and the prefix alone", err, len(groups), tt.err)
				}
				if _, err := r.Plan(tt.events); !errors.Is(err, tt.err) {
					t.Fatalf("Plan: %v, want %v", err, tt.err)
				}
				if err := r.Deliver(context.Background(), tt.events); !errors.Is(err, tt.err) || len(nats.ids)+len(kafka.ids) != 0 {
					t.Fatalf("Deliver: %v, delivered %v %v; want %v and nothing delivered", err, nats.ids, kafka.ids, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if groups[0].Output != "earlier" {
				t.Fatalf("Groups overwrote dst: %+v", groups[0])
			}
			groups = groups[1:]
			var order []string
			for _, g := range groups {
				order = append(order, g.Output)
				if got, want := idsOf(g.Events), tt.want[g.Output]; !slices.Equal(got, want) {
					t.Errorf("group %s: %v, want %v", g.Output, got, want)
				}
				if shared := &g.Events[0] == &tt.events[0]; shared != tt.shared {
					t.Errorf("group %s shares the events slice: %v, want %v", g.Output, shared, tt.shared)
				}
			}
			var wantOrder []string
			for _, n := range []string{"nats", "kafka"} { // configuration order
				if _, ok := tt.want[n]; ok {
					wantOrder = append(wantOrder, n)
				}
			}
			if !slices.Equal(order, wantOrder) {
				t.Errorf("groups in order %v, want %v", order, wantOrder)
			}
			plan, err := r.Plan(tt.events)
			if err != nil {
				t.Fatal(err)
			}
			if len(plan) != len(tt.want) {
				t.Errorf("Plan has %d outputs, want %d", len(plan), len(tt.want))
			}
			for n, evs := range plan {
				if got := idsOf(evs); !slices.Equal(got, tt.want[n]) {
					t.Errorf("Plan[%s] = %v, want %v", n, got, tt.want[n])
				}
			}
			if err := r.Deliver(context.Background(), tt.events); err != nil {
				t.Fatal(err)
			}
			for _, o := range []*recordingOutput{nats, kafka} {
				if !slices.Equal(o.ids, tt.want[o.name]) {
					t.Errorf("Deliver gave %s %v, want %v", o.name, o.ids, tt.want[o.name])
				}
			}
			if tt.shared {
				var buf [4]bridge.Group
				if allocs := testing.AllocsPerRun(100, func() { _, _ = r.Groups(buf[:0], tt.events) }); allocs != 0 {
					t.Errorf("Groups allocates %.1f times, want none", allocs)
				}
			}
		})
	}

	t.Run("errors of every output, joined", func(t *testing.T) {
		errN, errK := errors.New("nats down"), errors.New("kafka down")
		r, err := bridge.NewRouter("", &recordingOutput{name: "nats", err: errN}, &recordingOutput{name: "kafka", err: errK})
		if err != nil {
			t.Fatal(err)
		}
		err = r.Deliver(context.Background(), []*codec.Event{ev("a", "1")})
		if !errors.Is(err, errN) || !errors.Is(err, errK) {
			t.Fatalf("Deliver: %v, want both outputs' errors", err)
		}
	})
}

func idsOf(evs []*codec.Event) []string {
	ids := make([]string, len(evs))
	for i, ev := range evs {
		ids[i] = ev.ID
	}
	return ids
}
