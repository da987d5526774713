// Command mistbridge receives Juniper Mist webhooks and publishes each event
// as a CloudEvent to NATS and/or Kafka. Run it with -h for its variables.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/trace"

	"github.com/mistbridge/mistbridge/bridge"
	"github.com/mistbridge/mistbridge/bridge/archive"
	"github.com/mistbridge/mistbridge/bridge/auth"
	"github.com/mistbridge/mistbridge/bridge/receivers"
	"github.com/mistbridge/mistbridge/bridge/spool"
	"github.com/mistbridge/mistbridge/bridge/status"
	"github.com/mistbridge/mistbridge/sinks"
	"github.com/mistbridge/mistbridge/sinks/kafkasink"
	"github.com/mistbridge/mistbridge/sinks/natssink"
)

func main() { os.Exit(mainCode()) }

// mainCode runs the bridge and returns the exit code: 0 after a clean
// shutdown, 2 for bad configuration, 1 when it stopped on an error.
func mainCode() int {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "spool":
			return spoolCommand(os.Args[2:], os.Stdout, os.Stderr)
		case "receivers":
			return receiversCommand(os.Args[2:], os.Stdout, os.Stderr)
		case "replay":
			return replayCommand(os.Args[2:], os.Stdout, os.Stderr)
		case "deadletter":
			return deadletterCommand(os.Args[2:], os.Stdout, os.Stderr)
		case "tail":
			return tailCommand(os.Args[2:], os.Stdout, os.Stderr)
		}
	}
	fs := flag.NewFlagSet("mistbridge", flag.ContinueOnError)
	fs.Usage = func() { printUsage(os.Stderr) }
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	cfg, unknown, err := loadConfig(environMap())
	if err != nil {
		fmt.Fprintf(os.Stderr, "mistbridge: invalid configuration:\n%s\n(run mistbridge -h for every variable)\n", indent(err.Error()))
		return 2
	}
	log := newLogger(cfg)
	setGCPercent(os.Getenv) // for the process's life
	for _, k := range unknown {
		if instead, ok := replacedVariables[k]; ok {
			log.Warn("variable no longer read", "variable", k, "instead", instead)
			continue
		}
		log.Warn("unknown variable ignored (a typo?)", "variable", k)
	}
	verifier, err := cfg.Auth.Verifier(log)
	if err != nil {
		fmt.Fprintf(os.Stderr, "mistbridge: invalid configuration:\n%s\n(run mistbridge -h for every variable)\n", indent(err.Error()))
		return 2
	}
	if c, ok := verifier.(io.Closer); ok {
		defer c.Close() // stops a JWKS refresher
	}
	if cfg.PprofAddr != "" {
		go servePprof(cfg.PprofAddr, log)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, verifier, log); err != nil {
		log.Error("mistbridge stopped", "err", err)
		return 1
	}
	return 0
}

func run(ctx context.Context, cfg config, verifier auth.Verifier, log *slog.Logger) error {
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("MISTBRIDGE_DATA_DIR=%q: %w", cfg.DataDir, err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	sinkMetrics := sinks.NewMetrics(reg)
	policy := sinks.RetryPolicy{Initial: cfg.Bridge.RetryInitial, Max: cfg.Bridge.RetryMax}

	var (
		outputs  []bridge.Output
		closers  []sinks.Sink
		embedded *natssink.Embedded
		err      error
	)
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, s := range slices.Backward(closers) {
			if err := s.Close(cctx); err != nil {
				log.Warn("closing sink", "sink", s.Name(), "err", err)
			}
		}
		if embedded != nil {
			embedded.Shutdown()
		}
	}()
	for _, name := range cfg.Sinks {
		var s sinks.Sink
		switch name {
		case "nats":
			if cfg.NATS.URL == "" {
				embedded, err = natssink.StartEmbedded(cfg.DataDir, cfg.NATS.EmbeddedAddr, log)
				if err != nil {
					return fmt.Errorf("embedded NATS server on MISTBRIDGE_NATS_EMBEDDED_ADDR=%s: %w", cfg.NATS.EmbeddedAddr, err)
				}
				cfg.NATS.URL = embedded.ClientURL()
			}
			if !cfg.NATS.JetStream {
				log.Warn("MISTBRIDGE_NATS_JETSTREAM=false: core NATS is at-most-once; a 200 means the server received the events, not that anyone stored them")
			}
			ns, err := natssink.New(ctx, cfg.NATS, log)
			if err != nil {
				return err
			}
			s = ns
		case "kafka":
			ks, err := kafkasink.New(cfg.Kafka, log)
			if err != nil {
				return err
			}
			s = ks
		}
		closers = append(closers, s)
		outputs = append(outputs, sinks.NewRetrying(s, policy, sinkMetrics, log))
	}
	router, err := bridge.NewRouter(cfg.Bridge.Routes, outputs...)
	if err != nil {
		return err
	}
	sp, err := spool.New(cfg.Spool, router, log, reg)
	if err != nil {
		return err
	}
	defer func() { // before the sinks' closers, registered earlier
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := sp.Close(cctx); err != nil {
			log.Warn("closing the spool", "err", err)
		}
	}()
	var tracer trace.Tracer // nil: tracing off, at no cost
	if tracingWanted(cfg, os.Getenv) {
		t, shutdown, err := newTracer(ctx, log)
		if err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := shutdown(sctx); err != nil {
				log.Warn("flushing traces", "err", err)
			}
		}()
		tracer = t
	}
	var arc bridge.Archiver // stays a nil interface when off
	if cfg.Archive.Enabled() {
		a, err := archive.Open(cfg.Archive, log, reg)
		if err != nil {
			return fmt.Errorf("MISTBRIDGE_ARCHIVE_DIR=%q: %w", cfg.Archive.Dir, err)
		}
		defer func() {
			if err := a.Close(); err != nil {
				log.Warn("closing the archive", "err", err)
			}
		}()
		arc = a
	}
	var (
		srv  *bridge.Server
		api  http.Handler
		live *receivers.Live
	)
	tokens := slices.DeleteFunc(slices.Clone(cfg.AdminToken), func(s string) bool { return strings.TrimSpace(s) == "" })
	if len(tokens) > 0 {
		var key []byte
		if cfg.ReceiversKey != "" {
			key, _ = receivers.ParseKey(cfg.ReceiversKey) // validated by loadConfig
		}
		store, err := receivers.Open(ctx, filepath.Join(cfg.DataDir, receivers.FileName), receivers.StoreOptions{Key: key})
		if err != nil {
			return fmt.Errorf("MISTBRIDGE_DATA_DIR=%q: %w", cfg.DataDir, err)
		}
		defer store.Close()
		rlog := log.With("component", "receivers")
		live = receivers.NewLive(store, func(l []*bridge.Receiver) error { return srv.SetReceivers(l) }, rlog, cfg.Bridge.Receiver)
		defer live.Close()
		api = receivers.NewAPI(store, receivers.APIOptions{
			Tokens: tokens, PublicURL: cfg.PublicURL, Reserved: []string{cfg.Bridge.Receiver},
			OnChange: live.Sync, Log: rlog,
		})
	}
	statusOpts := status.Options{Gatherer: reg}
	if slices.Contains(cfg.Sinks, "nats") {
		statusOpts.SubjectPrefix = cfg.NATS.SubjectPrefix
	}
	rec := status.New(statusOpts)
	statusCtx, stopStatus := context.WithCancel(ctx)
	statusDone := make(chan struct{})
	go func() { defer close(statusDone); rec.Run(statusCtx) }()
	defer func() { stopStatus(); <-statusDone }()
	page := status.NewHandler(rec, status.HandlerOptions{
		Tokens:     tokens,
		SinkStates: func(ctx context.Context) map[string]string { return sp.Ready(ctx).Sinks },
		Log:        log.With("component", "status"),
	})
	srv, err = bridge.New(cfg.Bridge, bridge.Options{
		Status:     rec,
		StatusPage: page,
		Delivery:   sp,
		Receivers:  []*bridge.Receiver{{Name: cfg.Bridge.Receiver, Verifier: verifier, DefaultTopic: cfg.Bridge.DefaultTopic, Topics: cfg.Bridge.Topics}},
		API:        api,
		Archive:    arc,
		Tracer:     tracer,
		Log:        log,
		Registry:   reg,
	})
	if err != nil {
		return err
	}
	if live != nil {
		if err := live.Sync(ctx); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", cfg.Bridge.ListenAddr)
	if err != nil {
		return fmt.Errorf("MISTBRIDGE_LISTEN_ADDR=%s: %w", cfg.Bridge.ListenAddr, err)
	}
	printBanner(os.Stderr, log, cfg, ln.Addr())
	if err := srv.Serve(ctx, ln); err != nil {
		return err
	}
	log.Info("stopped accepting; every request in flight answered; closing sinks")
	return nil
}

func printBanner(w io.Writer, log *slog.Logger, cfg config, addr net.Addr) {
	host, port, _ := net.SplitHostPort(addr.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	url := fmt.Sprintf("http://%s/webhooks/%s", net.JoinHostPort(host, port), cfg.Bridge.Receiver)
	log.Info("mistbridge ready", "webhook_url", url, "sinks", strings.Join(cfg.Sinks, ","))
	fmt.Fprintf(w, "\n  Point Mist's webhook at %s\n  (use the host name Mist can reach; the secret is MISTBRIDGE_WEBHOOK_SECRET).\n", url)
	if slices.Contains(cfg.Sinks, "nats") {
		fmt.Fprintf(w, "  Subscribe on NATS:  nats sub --server %s '%s.>'\n", natssink.RedactURL(cfg.NATS.URL), cfg.NATS.SubjectPrefix)
	}
	if slices.Contains(cfg.Sinks, "kafka") {
		fmt.Fprintf(w, "  Read from Kafka:    kcat -C -b %s -t %s -J\n", cfg.Kafka.Brokers[0], strings.ReplaceAll(cfg.Kafka.TopicTemplate, "{topic}", "device-events"))
	}
	hp := net.JoinHostPort(host, port)
	fmt.Fprintf(w, "  Status page: http://%s/   Health: http://%s/readyz   Metrics: http://%s/metrics\n\n", hp, hp, hp)
}

func newLogger(cfg config) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // validated by loadConfig
	opts := &slog.HandlerOptions{Level: level}
	if strings.EqualFold(cfg.LogFormat, "json") {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

func indent(s string) string { return "  " + strings.ReplaceAll(s, "\n", "\n  ") }

// servePprof serves the runtime profiles on addr, apart from the webhook
// listener so they are never exposed with it.
func servePprof(addr string, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	log.Info("pprof listening", "addr", addr)
	if err := http.ListenAndServe(addr, mux); err != nil {
		log.Warn("pprof stopped", "err", err)
	}
}
