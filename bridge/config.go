// Package bridge is the HTTP side of mistbridge: the webhook ingress, its
// receivers, admission control, delivery to the sinks, and health.
package bridge

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"time"
)

// Config tunes the ingress. Field tags name the environment variables
// without their MISTBRIDGE_ prefix; the zero value of a field that has an
// envDefault is not valid, so build a Config through the environment parser
// (cmd/mistbridge) or fill every field.
type Config struct {
	// ListenAddr is the HTTP listen address.
	ListenAddr string `env:"LISTEN_ADDR" envDefault:":8080"`
	// Receiver names the default receiver: webhooks go to /webhooks/<name>.
	Receiver string `env:"RECEIVER" envDefault:"mist"`
	// Topics, when set, are the only topics the default receiver accepts:
	// comma-separated shell patterns ("device-events,location*"). Others
	// get 422. Empty means any topic.
	Topics []string `env:"TOPICS" envSeparator:","`
	// DefaultTopic is the topic of a bare object or array body when the
	// request has no ?topic=. Empty means such a body is refused.
	DefaultTopic string `env:"DEFAULT_TOPIC"`
	// MaxConnections caps the open client connections; more wait in the
	// kernel's accept queue, costing the process no memory. Each open
	// connection holds buffers, so this bounds memory under any load.
	MaxConnections int `env:"MAX_CONNECTIONS" envDefault:"1024"`
	// MaxConnectionsPerIP caps the open connections of one client address,
	// so one source cannot take every slot of MaxConnections; a connection
	// over the cap is closed at once.
	MaxConnectionsPerIP int `env:"MAX_CONNECTIONS_PER_IP" envDefault:"128"`
	// MaxBodyBytes caps one request body; larger bodies get 413.
	MaxBodyBytes int64 `env:"MAX_BODY_BYTES" envDefault:"4194304"`
	// MaxInflightEvents bounds the events admitted and not yet answered.
	MaxInflightEvents int `env:"MAX_INFLIGHT_EVENTS" envDefault:"5000"`
	// MaxInflightBytes bounds the request bytes admitted and not yet answered.
	MaxInflightBytes int64 `env:"MAX_INFLIGHT_BYTES" envDefault:"134217728"`
	// AdmitWait is how long a request waits for room before 429/503.
	AdmitWait time.Duration `env:"ADMIT_WAIT" envDefault:"200ms"`
	// RetryAfter is the Retry-After sent with 429 and 503 (whole seconds, at least 1).
	RetryAfter time.Duration `env:"RETRY_AFTER" envDefault:"1s"`
	// DeliveryTimeout bounds the time from admission to every broker ack,
	// retries included. Past it the request fails with 503.
	DeliveryTimeout time.Duration `env:"DELIVERY_TIMEOUT" envDefault:"10s"`
	// RetryInitial and RetryMax bound the jittered exponential backoff
	// between delivery attempts.
	RetryInitial time.Duration `env:"RETRY_INITIAL" envDefault:"100ms"`
	RetryMax     time.Duration `env:"RETRY_MAX" envDefault:"2s"`
	// Routes sends topics to sinks: "pattern=sink+sink,..." with shell
	// patterns, first match wins, e.g. "location*=nats,*=nats+kafka".
	// Empty means every topic goes to every sink.
	Routes string `env:"ROUTES"`
	// ReadTimeout bounds reading a whole request, body included.
	ReadTimeout time.Duration `env:"READ_TIMEOUT" envDefault:"30s"`
	// ReadHeaderTimeout bounds reading a request's headers: a connection
	// that has not sent them by then is closed, so slow senders cannot
	// hold connection slots.
	ReadHeaderTimeout time.Duration `env:"READ_HEADER_TIMEOUT" envDefault:"5s"`
	// BodyIdleTimeout bounds the wait for each next part of a body: a
	// sender that stalls longer gets 408 and frees its room.
	BodyIdleTimeout time.Duration `env:"BODY_IDLE_TIMEOUT" envDefault:"5s"`
	// IdleTimeout closes idle keep-alive connections.
	IdleTimeout time.Duration `env:"IDLE_TIMEOUT" envDefault:"120s"`
	// LogRequests writes one info line per webhook request (request id,
	// receiver, topic, events, status, duration); failures are logged
	// either way.
	LogRequests bool `env:"LOG_REQUESTS" envDefault:"true"`
	// DrainDelay is how long the bridge keeps serving after SIGTERM with
	// /readyz answering 503, so load balancers stop sending to it before
	// it stops listening. Keep-alive connections are told to close on
	// their next answer meanwhile.
	DrainDelay time.Duration `env:"DRAIN_DELAY" envDefault:"5s"`
	// ShutdownTimeout bounds the graceful shutdown on SIGTERM, after
	// DrainDelay: the wait for every request in flight to be answered.
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"30s"`
}

// Validate checks c; messages name the variable, the value and what is accepted.
func (c *Config) Validate() error {
	var errs []error
	bad := func(name string, v any, want string) {
		errs = append(errs, fmt.Errorf("MISTBRIDGE_%s=%v is invalid: %s", name, v, want))
	}
	if c.ListenAddr == "" {
		bad("LISTEN_ADDR", `""`, "want host:port, e.g. :8080")
	}
	if !validName(c.Receiver) {
		bad("RECEIVER", fmt.Sprintf("%q", c.Receiver), "want 1-64 letters, digits, '-' or '_'")
	}
	if c.MaxBodyBytes < 1024 {
		bad("MAX_BODY_BYTES", c.MaxBodyBytes, "want at least 1024")
	}
	if c.MaxConnections < 1 {
		bad("MAX_CONNECTIONS", c.MaxConnections, "want at least 1")
	}
	if c.MaxConnectionsPerIP < 1 {
		bad("MAX_CONNECTIONS_PER_IP", c.MaxConnectionsPerIP, "want at least 1")
	}
	if c.MaxInflightEvents < 1 {
		bad("MAX_INFLIGHT_EVENTS", c.MaxInflightEvents, "want at least 1")
	}
	if c.MaxInflightBytes < reserveFor(c.MaxBodyBytes) {
		bad("MAX_INFLIGHT_BYTES", c.MaxInflightBytes, fmt.Sprintf("want at least twice MISTBRIDGE_MAX_BODY_BYTES plus 512 (%d), so one largest request fits", reserveFor(c.MaxBodyBytes)))
	}
	for _, p := range c.Topics {
		if _, err := path.Match(p, ""); err != nil || strings.TrimSpace(p) == "" {
			bad("TOPICS", fmt.Sprintf("%q", strings.Join(c.Topics, ",")), "want comma-separated topic patterns such as device-events,location*")
			break
		}
	}
	positive := []struct {
		name string
		d    time.Duration
	}{
		{"RETRY_AFTER", c.RetryAfter}, {"DELIVERY_TIMEOUT", c.DeliveryTimeout},
		{"RETRY_INITIAL", c.RetryInitial}, {"RETRY_MAX", c.RetryMax},
		{"READ_TIMEOUT", c.ReadTimeout}, {"IDLE_TIMEOUT", c.IdleTimeout}, {"SHUTDOWN_TIMEOUT", c.ShutdownTimeout},
		{"READ_HEADER_TIMEOUT", c.ReadHeaderTimeout}, {"BODY_IDLE_TIMEOUT", c.BodyIdleTimeout},
	}
	for _, p := range positive {
		if p.d <= 0 {
			bad(p.name, p.d, "want a positive duration such as 500ms or 10s")
		}
	}
	if c.DrainDelay < 0 {
		bad("DRAIN_DELAY", c.DrainDelay, "want 0 or a positive duration")
	}
	if c.AdmitWait < 0 {
		bad("ADMIT_WAIT", c.AdmitWait, "want 0 or a positive duration")
	}
	if c.RetryMax < c.RetryInitial {
		bad("RETRY_MAX", c.RetryMax, fmt.Sprintf("want at least MISTBRIDGE_RETRY_INITIAL (%v)", c.RetryInitial))
	}
	if _, err := parseRoutes(c.Routes); err != nil {
		bad("ROUTES", fmt.Sprintf("%q", c.Routes), err.Error())
	}
	return errors.Join(errs...)
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
