package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/net/netutil"

	"github.com/mistbridge/mistbridge/bridge/auth"
	"github.com/mistbridge/mistbridge/codec"
)

// Receiver is one webhook endpoint: POST /webhooks/<Name>.
type Receiver struct {
	// Name is the path segment, e.g. "mist".
	Name string
	// Verifier authenticates each request.
	Verifier auth.Verifier
	// DefaultTopic is the topic of a bare object or array body without ?topic=.
	DefaultTopic string
	// Topics, when set, are the only topics the receiver accepts: shell
	// patterns such as "device-*". Others are refused with 422. Empty
	// means any topic. Mist's "ping" (the test event sent when an admin
	// saves a webhook) is always accepted.
	Topics []string
}

// PingTopic is the topic of the test event Mist sends when a webhook is
// saved; every receiver accepts it, whatever its Topics.
const PingTopic = "ping"

// ErrTopicNotAllowed is returned for a topic outside the receiver's Topics.
var ErrTopicNotAllowed = errors.New("bridge: topic not allowed")

func (rc *Receiver) allows(topic string) bool {
	if len(rc.Topics) == 0 || topic == PingTopic {
		return true
	}
	for _, p := range rc.Topics {
		if ok, _ := path.Match(p, topic); ok {
			return true
		}
	}
	return false
}

// Archiver keeps verified request bodies so they can be replayed later.
// Implementations are safe for concurrent use.
type Archiver interface {
	// Archive stores rec. rec.Body is valid only during the call.
	Archive(ctx context.Context, rec ArchiveRecord) error
}

// ArchiveRecord is one verified webhook request.
type ArchiveRecord struct {
	// Receiver is the receiver's name.
	Receiver string
	// Received is when the request arrived.
	Received time.Time
	// Topic is the fallback topic the body was split with (?topic=, else
	// the receiver's default); empty when there was none.
	Topic string
	// ContentType and UserAgent are the request's headers of those names.
	ContentType, UserAgent string
	// Body is the raw body, exactly as received.
	Body []byte
}

// StatusRecorder is told what the status page shows. *status.Recorder
// implements it; its methods are cheap and safe for concurrent use.
type StatusRecorder interface {
	// Request is called once per answered webhook request.
	Request(receiver, topic string, events, code int, reason string, at time.Time)
	// Events is called with the events of a request once they are safe;
	// it reads them only during the call.
	Events(evs []*codec.Event)
}

// Options are what a [Server] is built from besides its [Config].
type Options struct {
	// Delivery takes admitted events to the brokers and tells their health:
	// a [*Router], or a spool wrapping one. Required unless Router is set.
	Delivery Delivery
	// Router is the Delivery when Delivery is nil.
	Router *Router
	// Receivers are the webhook endpoints. At least one is required.
	Receivers []*Receiver
	// API, when set, serves every path under /api/v1/ (the receivers API,
	// which authenticates its own callers). Nil answers those paths 404.
	API http.Handler
	// Archive, when set, is handed every verified request body before its
	// events are published (MISTBRIDGE_ARCHIVE_RETENTION). Its failure is
	// logged and counted, and does not fail the request.
	Archive Archiver
	// Status, when set, is told of every answered webhook request and of
	// the events accepted: the status page's figures (*status.Recorder).
	Status StatusRecorder
	// StatusPage, when set, serves the status page: GET / and GET
	// /status.json, and its sign-in and sign-out forms (POST /status/login,
	// POST /status/logout). Nil leaves / answering 404.
	StatusPage http.Handler
	// Tracer, when set, traces every webhook request (a span per request,
	// children for auth, split, delivery and each publish) and stamps the
	// trace context on every CloudEvent. Nil means tracing off, at no cost.
	Tracer trace.Tracer
	// Log is the logger; the default discards.
	Log *slog.Logger
	// Registry receives the metrics and is served on /metrics; the default
	// is a new registry.
	Registry *prometheus.Registry
}

// Server is the webhook ingress. Build it with [New]; it is safe for
// concurrent use.
type Server struct {
	cfg Config
	log *slog.Logger
	// fixed are the receivers of Options, always served; receivers is
	// the set in force (fixed plus managed ones), swapped whole by
	// SetReceivers so the hot path reads it without a lock.
	fixed     []*Receiver
	receivers atomic.Pointer[receiverSet]
	delivery  Delivery
	archive   Archiver
	status    StatusRecorder
	tracer    trace.Tracer
	admit     *admission
	metrics   *metrics
	registry  *prometheus.Registry
	draining  atomic.Bool
	handler   http.Handler
}

// New returns a Server. cfg must be valid (see [Config.Validate]).
func New(cfg Config, o Options) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if o.Delivery == nil && o.Router != nil {
		o.Delivery = o.Router
	}
	if o.Delivery == nil {
		return nil, errors.New("bridge: Options.Delivery (or Router) is required")
	}
	if len(o.Receivers) == 0 {
		return nil, errors.New("bridge: at least one receiver is required")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	s := &Server{
		cfg:      cfg,
		log:      o.Log,
		delivery: o.Delivery,
		archive:  o.Archive,
		status:   o.Status,
		tracer:   o.Tracer,
		admit:    newAdmission(cfg.MaxInflightEvents, cfg.MaxInflightBytes),
		metrics:  newMetrics(o.Registry),
		registry: o.Registry,
	}
	set, err := newReceiverSet(o.Receivers, nil)
	if err != nil {
		return nil, err
	}
	s.fixed = o.Receivers
	for _, rc := range o.Receivers {
		s.metrics.initReceiver(rc.Name)
	}
	set.hec = s.pickHEC(set)
	s.receivers.Store(set)
	mux := http.NewServeMux()
	mux.HandleFunc("/webhooks/{receiver}", s.handleWebhook)
	s.hecRoutes(mux)
	if o.API != nil {
		mux.Handle("/api/v1/", o.API)
	}
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /readyz", s.handleReadyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.Registry, promhttp.HandlerOpts{Registry: o.Registry}))
	if o.StatusPage != nil {
		mux.Handle("GET /{$}", o.StatusPage)
		mux.Handle("GET /status.json", o.StatusPage)
		mux.Handle("POST /status/login", o.StatusPage)
		mux.Handle("POST /status/logout", o.StatusPage)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "not found: webhooks go to POST /webhooks/<receiver>", Reason: "not_found"})
	})
	s.handler = mux
	return s, nil
}

// receiverSet is an immutable lookup of receivers by name.
type receiverSet struct {
	byName map[string]*Receiver
	hec    *Receiver // where HEC requests go, or nil
}

// newReceiverSet checks and indexes fixed plus managed receivers. A
// managed receiver may not take a fixed one's name.
func newReceiverSet(fixed, managed []*Receiver) (*receiverSet, error) {
	set := &receiverSet{byName: make(map[string]*Receiver, len(fixed)+len(managed))}
	for _, rc := range slices.Concat(fixed, managed) {
		if !validName(rc.Name) || rc.Verifier == nil {
			return nil, fmt.Errorf("bridge: receiver %q: want a name of letters, digits, '-', '_' and a verifier", rc.Name)
		}
		for _, p := range rc.Topics {
			if _, err := path.Match(p, ""); err != nil {
				return nil, fmt.Errorf("bridge: receiver %q: topic pattern %q: %v", rc.Name, p, err)
			}
		}
		if _, dup := set.byName[rc.Name]; dup {
			return nil, fmt.Errorf("bridge: receiver %q is defined twice", rc.Name)
		}
		set.byName[rc.Name] = rc
	}
	return set, nil
}

// SetReceivers replaces the managed receivers (those besides the ones of
// Options) at once: a request that starts after it returns sees the new
// set, one in flight finishes with the receiver it started with. It fails,
// changing nothing, when a receiver is invalid or names one twice. It is
// safe for concurrent use.
func (s *Server) SetReceivers(managed []*Receiver) error {
	set, err := newReceiverSet(s.fixed, managed)
	if err != nil {
		return err
	}
	set.hec = s.pickHEC(set)
	for _, rc := range managed {
		s.metrics.initReceiver(rc.Name)
	}
	s.receivers.Store(set)
	return nil
}

// receiver returns the receiver named name, or nil.
func (s *Server) receiver(name string) *Receiver { return s.receivers.Load().byName[name] }

// Handler returns the HTTP handler of every endpoint.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve answers on ln until ctx is done, then drains and shuts down
// gracefully. At most MaxConnections connections are open, at most
// MaxConnectionsPerIP from one address. When ctx is done it:
//
//  1. turns /readyz to 503 at once and answers every request with
//     "Connection: close", so keep-alive clients leave politely;
//  2. keeps serving for DrainDelay, so load balancers notice;
//  3. stops accepting, closes idle connections, and answers every request
//     in flight (waiting at most ShutdownTimeout), then returns.
//
// Closing the sinks is the caller's job, after Serve returns. Serve
// returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.closeWhileDraining(s.handler),
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		// Counted from the end of the headers: a request may take ReadTimeout
		// to arrive, wait twice for admission, then for every broker ack.
		// Cutting it shorter could lose the answer of a delivered request.
		WriteTimeout: s.cfg.ReadTimeout + 2*s.cfg.AdmitWait + s.cfg.DeliveryTimeout + 10*time.Second,
		IdleTimeout:  s.cfg.IdleTimeout,
		ErrorLog:     slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	perIP := newPerIPListener(ln, s.cfg.MaxConnectionsPerIP, s.metrics.connsRefused.Inc)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(netutil.LimitListener(perIP, s.cfg.MaxConnections)) }()
	select {
	case err := <-errc:
		return fmt.Errorf("bridge: serve: %w", err)
	case <-ctx.Done():
	}
	s.draining.Store(true)
	if s.cfg.DrainDelay > 0 {
		s.log.Info("draining: /readyz answers 503; still serving", "drain_delay", s.cfg.DrainDelay)
		t := time.NewTimer(s.cfg.DrainDelay)
		select {
		case <-t.C:
		case err := <-errc:
			t.Stop()
			return fmt.Errorf("bridge: serve: %w", err)
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	err := hs.Shutdown(sctx)
	<-errc // Serve returns ErrServerClosed at once after Shutdown starts
	if err != nil {
		return fmt.Errorf("bridge: shutdown: %w", err)
	}
	return nil
}

// closeWhileDraining asks the client to close its connection after each
// answer once draining has begun: the answer is written whole, then the
// server closes the connection, so no request is cut off mid-flight.
func (s *Server) closeWhileDraining(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.draining.Load() {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
}
