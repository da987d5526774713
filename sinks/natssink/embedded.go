package natssink

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// embeddedReadyTimeout bounds how long StartEmbedded waits for the server
// to accept clients (JetStream recovers its store first).
const embeddedReadyTimeout = 10 * time.Second

// Embedded is an in-process nats-server with JetStream, the bridge's
// default broker when none is configured.
type Embedded struct {
	srv *server.Server
	url string
}

// StartEmbedded starts a nats-server in this process with JetStream, its
// store in <dataDir>/nats, listening on addr (host:port; port 0 picks a
// free port), and waits until it accepts clients. The server logs its
// warnings and errors to log, and its notices too when log is enabled for
// debug. A nil log discards.
func StartEmbedded(dataDir, addr string, log *slog.Logger) (*Embedded, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("natssink: embedded server address %q: want host:port", addr)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("natssink: embedded server address %q: the port is not a number from 0 to 65535", addr)
	}
	if port == 0 {
		port = server.RANDOM_PORT // nats-server reads 0 as its default, 4222
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "nats-server")
	opts := &server.Options{
		ServerName: "mistbridge-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   filepath.Join(dataDir, "nats"),
		NoSigs:     true, // the bridge owns the process's signals
		NoLog:      true, // replaced by SetLogger below
	}
	if port != server.RANDOM_PORT {
		// A busy port makes nats-server log a fatal error and never become
		// ready: find it now and say so, rather than wait and blame readiness.
		ln, err := net.Listen("tcp", net.JoinHostPort(host, portStr))
		if err != nil {
			return nil, fmt.Errorf("natssink: embedded server cannot listen on %s: %w", addr, err)
		}
		ln.Close()
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natssink: embedded server: %w", err)
	}
	debug := log.Enabled(context.Background(), slog.LevelDebug)
	adapter := slogAdapter{log: log, debug: debug, fatal: new(atomic.Value)}
	srv.SetLogger(adapter, debug, false)
	srv.Start()
	if !srv.ReadyForConnections(embeddedReadyTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		if msg, ok := adapter.fatal.Load().(string); ok {
			return nil, fmt.Errorf("natssink: embedded server on %s: %s", addr, msg)
		}
		return nil, fmt.Errorf("natssink: embedded server on %s with store %s did not become ready within %v",
			addr, opts.StoreDir, embeddedReadyTimeout)
	}
	e := &Embedded{srv: srv, url: clientURL(srv, host)}
	log.Info("embedded NATS server started", "url", e.url, "store", opts.StoreDir)
	return e, nil
}

// clientURL is the server's client URL, with a wildcard listen host
// replaced by the loopback address a client can dial.
func clientURL(srv *server.Server, host string) string {
	addr, ok := srv.Addr().(*net.TCPAddr)
	if !ok {
		return srv.ClientURL()
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "nats://" + net.JoinHostPort(host, strconv.Itoa(addr.Port))
}

// ClientURL is the URL to pass to [New] as Config.URL.
func (e *Embedded) ClientURL() string { return e.url }

// Shutdown stops the server and waits until it has stopped (JetStream has
// flushed its store).
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// slogAdapter is a nats-server logger that writes to slog. Notices and
// debug lines are start-up chatter, kept only when debugging.
type slogAdapter struct {
	log   *slog.Logger
	debug bool
	fatal *atomic.Value // the first fatal message, a string
}

func (a slogAdapter) Noticef(format string, v ...any) {
	if a.debug {
		a.log.Debug(fmt.Sprintf(format, v...))
	}
}
func (a slogAdapter) Warnf(format string, v ...any) { a.log.Warn(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	a.fatal.CompareAndSwap(nil, msg)
	a.log.Error(msg)
}
func (a slogAdapter) Errorf(format string, v ...any) { a.log.Error(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Debugf(format string, v ...any) { a.log.Debug(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Tracef(format string, v ...any) { a.log.Debug(fmt.Sprintf(format, v...)) }
