package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// tracingWanted reports whether to trace: MISTBRIDGE_TRACING=true, or an
// OTLP endpoint in the standard variables; OTEL_SDK_DISABLED=true wins.
func tracingWanted(cfg config, getenv func(string) string) bool {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	return cfg.Tracing || getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// newTracer builds the OpenTelemetry tracer the bridge uses, exporting over
// OTLP/HTTP. Everything else comes from the standard OTEL_* variables the
// SDK reads itself: the endpoint and its headers (OTEL_EXPORTER_OTLP_*),
// the sampler (OTEL_TRACES_SAMPLER, default parent-based always-on), the
// service name and resource (OTEL_SERVICE_NAME, default mistbridge;
// OTEL_RESOURCE_ATTRIBUTES). shutdown flushes what is buffered.
func newTracer(ctx context.Context, log *slog.Logger) (trace.Tracer, func(context.Context) error, error) {
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	if p := os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL"); p != "" && p != "http/protobuf" {
		log.Warn("OTEL_EXPORTER_OTLP_PROTOCOL is not http/protobuf: the bridge exports traces over OTLP/HTTP (protobuf) only", "protocol", p)
	}
	// The service name defaults to mistbridge; OTEL_SERVICE_NAME and
	// OTEL_RESOURCE_ATTRIBUTES (read by WithFromEnv, applied last) win.
	res, err := resource.New(ctx, resource.WithTelemetrySDK(), resource.WithHost(),
		resource.WithAttributes(semconv.ServiceName("mistbridge")), resource.WithFromEnv())
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	log.Info("tracing on: exporting spans over OTLP/HTTP")
	return tp.Tracer("github.com/mistbridge/mistbridge"), tp.Shutdown, nil
}
