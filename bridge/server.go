package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"

	"github.com/mistbridge/mistbridge/bridge/auth"
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
	// means any topic.
	Topics []string
}

// ErrTopicNotAllowed is returned for a topic outside the receiver's Topics.
var ErrTopicNotAllowed = errors.New("bridge: topic not allowed")

func (rc *Receiver) allows(topic string) bool {
	if len(rc.Topics) == 0 {
		return true
	}
	for _, p := range rc.Topics {
		if ok, _ := path.Match(p, topic); ok {
			return true
		}
	}
	return false
}

// Options are what a [Server] is built from besides its [Config].
type Options struct {
	// Router sends events to the sinks and tells their health. Required.
	Router *Router
	// Delivery is what admitted events are handed to. The default is Router.
	Delivery Delivery
	// Receivers are the webhook endpoints. At least one is required.
	Receivers []*Receiver
	// Log is the logger; the default discards.
	Log *slog.Logger
	// Registry receives the metrics and is served on /metrics; the default
	// is a new registry.
	Registry *prometheus.Registry
}

// Server is the webhook ingress. Build it with [New]; it is safe for
// concurrent use.
type Server struct {
	cfg       Config
	log       *slog.Logger
	receivers map[string]*Receiver
	router    *Router
	delivery  Delivery
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
	if o.Router == nil {
		return nil, errors.New("bridge: Options.Router is required")
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
	if o.Delivery == nil {
		o.Delivery = o.Router
	}
	s := &Server{
		cfg:       cfg,
		log:       o.Log,
		receivers: make(map[string]*Receiver, len(o.Receivers)),
		router:    o.Router,
		delivery:  o.Delivery,
		admit:     newAdmission(cfg.MaxInflightEvents, cfg.MaxInflightBytes),
		metrics:   newMetrics(o.Registry),
		registry:  o.Registry,
	}
	for _, rc := range o.Receivers {
		if !validName(rc.Name) || rc.Verifier == nil {
			return nil, fmt.Errorf("bridge: receiver %q: want a name of letters, digits, '-', '_' and a verifier", rc.Name)
		}
		for _, p := range rc.Topics {
			if _, err := path.Match(p, ""); err != nil {
				return nil, fmt.Errorf("bridge: receiver %q: topic pattern %q: %v", rc.Name, p, err)
			}
		}
		if _, dup := s.receivers[rc.Name]; dup {
			return nil, fmt.Errorf("bridge: receiver %q is defined twice", rc.Name)
		}
		s.receivers[rc.Name] = rc
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/webhooks/{receiver}", s.handleWebhook)
	s.hecRoutes(mux)
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /readyz", s.handleReadyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.Registry, promhttp.HandlerOpts{Registry: o.Registry}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "not found: webhooks go to POST /webhooks/<receiver>", Reason: "not_found"})
	})
	s.handler = mux
	return s, nil
}

// Handler returns the HTTP handler of every endpoint.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve answers on ln, with at most MaxConnections connections open, until
// ctx is done, then shuts down gracefully: it
// stops accepting, answers every request in flight (waiting at most
// ShutdownTimeout) and returns. Closing the sinks is the caller's job,
// after Serve returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       s.cfg.ReadTimeout,
		// Counted from the end of the headers: a request may take ReadTimeout
		// to arrive, wait twice for admission, then for every broker ack.
		// Cutting it shorter could lose the answer of a delivered request.
		WriteTimeout: s.cfg.ReadTimeout + 2*s.cfg.AdmitWait + s.cfg.DeliveryTimeout + 10*time.Second,
		IdleTimeout:  s.cfg.IdleTimeout,
		ErrorLog:     slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(netutil.LimitListener(ln, s.cfg.MaxConnections)) }()
	select {
	case err := <-errc:
		return fmt.Errorf("bridge: serve: %w", err)
	case <-ctx.Done():
	}
	s.draining.Store(true)
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	err := hs.Shutdown(sctx)
	<-errc // Serve returns ErrServerClosed at once after Shutdown starts
	if err != nil {
		return fmt.Errorf("bridge: shutdown: %w", err)
	}
	return nil
}
