package bridge_test

import (
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	cejs "github.com/cloudevents/sdk-go/protocol/nats_jetstream/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/mistbridge/mistbridge/bridge"
	"github.com/mistbridge/mistbridge/bridge/auth"
	"github.com/mistbridge/mistbridge/test/loadgen"
)

// otlpReceiver is an in-process OTLP/HTTP trace receiver: it decodes what
// the real exporter sends (protobuf ExportTraceServiceRequest on
// /v1/traces) and keeps the spans.
type otlpReceiver struct {
	mu    sync.Mutex
	spans []*tracepb.Span
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(r.Body)
	var req coltrace.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(raw, &req)
	}
	if r.URL.Path != "/v1/traces" || err != nil {
		http.Error(w, "bad export", http.StatusBadRequest)
		return
	}
	o.mu.Lock()
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			o.spans = append(o.spans, ss.Spans...)
		}
	}
	o.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
	_, _ = w.Write(out)
}

func (o *otlpReceiver) byName() map[string]*tracepb.Span {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := map[string]*tracepb.Span{}
	for _, s := range o.spans {
		m[s.Name] = s
	}
	return m
}

// TestTracing: a signed webhook with a W3C traceparent is traced through
// the real OTLP exporter into an in-process receiver: the request span
// continues the sender's trace, auth, split, deliver and the NATS publish
// are its descendants, and the CloudEvent read back from JetStream with
// the CloudEvents SDK carries the request's trace context.
func TestTracing(t *testing.T) {
	recv := &otlpReceiver{}
	collector := httptest.NewServer(recv)
	defer collector.Close()
	ctx := context.Background()
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(collector.URL+"/v1/traces"))
	if err != nil {
		t.Fatal(err)
	}
	// A syncer exports each span as it ends: the test needs no wait.
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(ctx)

	log := testLogger(t)
	r := newRig(t, rigOptions{noKafka: true})
	router, err := bridge.NewRouter("", r.outputs[0])
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := auth.NewMist([]string{secret})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := bridge.New(defaults[bridge.Config](t, nil), bridge.Options{
		Router: router, Receivers: []*bridge.Receiver{{Name: "mist", Verifier: verifier}},
		Log: log, Tracer: tp.Tracer("test"),
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()

	const (
		traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		parent  = "00f067aa0ba902b7"
	)
	body := loadgen.Body("traced", 0, 2)
	h := signed(body)
	h["traceparent"] = "00-" + traceID + "-" + parent + "-01"
	h["tracestate"] = "rojo=00f067aa0ba902b7"
	if a := post(t, hs.URL+"/webhooks/mist", body, h); a.code != 200 {
		t.Fatalf("%d %v", a.code, a.body)
	}

	spans := recv.byName()
	req := spans["POST /webhooks/{receiver}"]
	if req == nil {
		t.Fatalf("no request span among %d exported", len(spans))
	}
	if got := hex.EncodeToString(req.TraceId); got != traceID {
		t.Errorf("request span's trace %s, want the sender's %s", got, traceID)
	}
	if got := hex.EncodeToString(req.ParentSpanId); got != parent {
		t.Errorf("request span's parent %s, want the sender's span %s", got, parent)
	}
	wantParent := map[string]string{
		"auth.precheck": "POST /webhooks/{receiver}",
		"auth.verify":   "POST /webhooks/{receiver}",
		"split":         "POST /webhooks/{receiver}",
		"deliver":       "POST /webhooks/{receiver}",
		"publish nats":  "deliver",
	}
	for name, parentName := range wantParent {
		sp := spans[name]
		if sp == nil {
			t.Errorf("no %q span", name)
			continue
		}
		if hex.EncodeToString(sp.TraceId) != traceID {
			t.Errorf("%q is in trace %x, want %s", name, sp.TraceId, traceID)
		}
		if p := spans[parentName]; p == nil || string(sp.ParentSpanId) != string(p.SpanId) {
			t.Errorf("%q's parent is not %q", name, parentName)
		}
	}
	attrs := map[string]string{}
	for _, kv := range req.Attributes {
		attrs[kv.Key] = kv.Value.String()
	}
	for _, k := range []string{"mistbridge.receiver", "mistbridge.topic", "mistbridge.events", "http.response.status_code", "mistbridge.request_id"} {
		if attrs[k] == "" {
			t.Errorf("the request span lacks %s (has %v)", k, attrs)
		}
	}

	// The published CloudEvents carry the trace context of the request.
	msgs := natsMessages(t, r.nats.ClientURL(), "mist.traced.>", 2)
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want 2", len(msgs))
	}
	for _, m := range msgs {
		ev, err := binding.ToEvent(ctx, cejs.NewMessage(&nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()}))
		if err != nil {
			t.Fatalf("the CloudEvents SDK cannot read the message: %v", err)
		}
		tpv, _ := ev.Extensions()["traceparent"].(string)
		if !strings.HasPrefix(tpv, "00-"+traceID+"-") || strings.Contains(tpv, parent) {
			t.Errorf("event %s: traceparent %q, want the request span's in trace %s", ev.ID(), tpv, traceID)
		} else if want := hex.EncodeToString(req.SpanId); !strings.Contains(tpv, want) {
			t.Errorf("event %s: traceparent %q, want the request span %s", ev.ID(), tpv, want)
		}
		if ts, _ := ev.Extensions()["tracestate"].(string); ts != "rojo=00f067aa0ba902b7" {
			t.Errorf("event %s: tracestate %q, want the sender's", ev.ID(), ts)
		}
	}
}
