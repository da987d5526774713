package bridge

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/mistbridge/mistbridge/codec"
)

// TracerName names the tracer the bridge's spans come from.
const TracerName = "github.com/mistbridge/mistbridge/bridge"

// traceContext reads and writes W3C traceparent and tracestate.
var traceContext = propagation.TraceContext{}

// startRequest starts the span of a webhook request, continuing the
// sender's traceparent when it sent one. With tracing off (no tracer) it
// does nothing and costs nothing.
func (s *Server) startRequest(r *http.Request, ex *exchange, name string) (*http.Request, trace.Span) {
	if s.tracer == nil {
		return r, nil
	}
	ctx := traceContext.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := s.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("mistbridge.request_id", ex.id)))
	return r.WithContext(ctx), span
}

// endRequest records the outcome on the request's span and ends it.
func endRequest(span trace.Span, ex *exchange, code int) {
	if span == nil {
		return
	}
	attrs := []attribute.KeyValue{
		attribute.String("mistbridge.topic", ex.topic),
		attribute.Int("mistbridge.events", ex.events),
		attribute.Int("http.response.status_code", code),
	}
	if ex.rc != nil {
		attrs = append(attrs, attribute.String("mistbridge.receiver", ex.rc.Name))
	}
	if ex.reason != "" {
		attrs = append(attrs, attribute.String("mistbridge.reason", ex.reason))
	}
	span.SetAttributes(attrs...)
	if code >= 500 {
		span.SetStatus(codes.Error, ex.reason)
	}
	span.End()
}

// startSpan starts a child span of ctx's span, when ctx's span records:
// with tracing off it returns ctx and nil, allocating nothing. Callers
// set attributes on a non-nil span, so that building them costs nothing
// when off.
func startSpan(ctx context.Context, name string) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, nil
	}
	return parent.TracerProvider().Tracer(TracerName).Start(ctx, name)
}

// traced reports whether ctx's span records.
func traced(ctx context.Context) bool { return trace.SpanFromContext(ctx).IsRecording() }

// endSpan ends sp, recording err as its status. sp may be nil.
func endSpan(sp trace.Span, err error) {
	if sp == nil {
		return
	}
	if err != nil {
		sp.SetStatus(codes.Error, err.Error())
	}
	sp.End()
}

// stampTrace puts the trace context of ctx's span on every event (the
// CloudEvents distributed-tracing extension), so a consumer can join the
// trace. It does nothing when ctx's span does not record.
func stampTrace(ctx context.Context, events []codec.Event) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return
	}
	carrier := propagation.MapCarrier{}
	traceContext.Inject(ctx, carrier)
	tp, ts := carrier.Get("traceparent"), carrier.Get("tracestate")
	for i := range events {
		events[i].TraceParent, events[i].TraceState = tp, ts
	}
}
