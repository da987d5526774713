package natssink

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/mistbridge/mistbridge/codec"
)

// envPrefix is how the variables of [Config] are spelled in messages: the
// caller nests Config under MISTBRIDGE_ with the prefix NATS_.
const envPrefix = "MISTBRIDGE_NATS_"

// Defaults applied by [New] to zero fields of [Config]. They match the
// envDefault tags.
const (
	DefaultStream            = "MIST"
	DefaultSubjectPrefix     = "mist"
	DefaultDeadLetterSubject = "mistbridge.deadletter"
	DefaultStreamReplicas    = 1
	DefaultDuplicateWindow   = 2 * time.Minute
	DefaultEmbeddedAddr      = "127.0.0.1:4222"
	DefaultPublishTimeout    = 5 * time.Second
)

// Config configures a NATS [Sink]. It is parsed from the environment with
// github.com/caarlos0/env (the caller nests it under the prefix NATS_, so
// the variables are MISTBRIDGE_NATS_*). A zero string, duration or number
// means the documented default; the booleans are false when zero, so a Go
// caller that builds a Config by hand must set JetStream and CreateStream
// itself.
type Config struct {
	// URL lists the NATS servers (comma-separated nats:// or tls:// URLs).
	// Empty means the caller starts the embedded server ([StartEmbedded])
	// and passes its ClientURL here.
	URL string `env:"URL"`

	// JetStream publishes to a stream and waits for each PubAck (the
	// default from the environment). When false, the sink publishes with
	// core NATS, which is at-most-once: the server accepts the message but
	// nothing stores it, and a subscriber that is not connected misses it.
	JetStream bool `env:"JETSTREAM" envDefault:"true"`

	// Stream is the JetStream stream that captures the events. The default
	// is "MIST".
	Stream string `env:"STREAM" envDefault:"MIST"`

	// SubjectPrefix is the first token(s) of every subject:
	// <prefix>.<topic>.<org>.<site>. The default is "mist".
	SubjectPrefix string `env:"SUBJECT_PREFIX" envDefault:"mist"`

	// DeadLetterSubject receives events that failed permanently. It must
	// not fall under SubjectPrefix. The default is "mistbridge.deadletter".
	DeadLetterSubject string `env:"DEADLETTER_SUBJECT" envDefault:"mistbridge.deadletter"`

	// ContentMode is the CloudEvents content mode, "binary" (the default:
	// ce- headers and the event's bytes as the payload) or "structured".
	ContentMode string `env:"CONTENT_MODE" envDefault:"binary"`

	// CreateStream creates Stream when it does not exist (the default from
	// the environment). An existing stream is never changed.
	CreateStream bool `env:"CREATE_STREAM" envDefault:"true"`

	// StreamReplicas is the replica count of a stream the sink creates.
	// The default is 1.
	StreamReplicas int `env:"STREAM_REPLICAS" envDefault:"1"`

	// DuplicateWindow is how long a created stream remembers message ids
	// to drop duplicates. The default is 2m.
	DuplicateWindow time.Duration `env:"DUPLICATE_WINDOW" envDefault:"2m"`

	// CredsFile is a NATS credentials file (user JWT and nkey seed).
	CredsFile string `env:"CREDS_FILE"`

	// Token authenticates with a token. A secret: String and LogValue mask it.
	Token string `env:"TOKEN"`

	// TLSCAFile is a PEM bundle of CAs that sign the servers' certificates.
	TLSCAFile string `env:"TLS_CA_FILE"`

	// EmbeddedAddr is the host:port the embedded server listens on when
	// URL is empty. Port 0 picks a free port. The default is 127.0.0.1:4222.
	EmbeddedAddr string `env:"EMBEDDED_ADDR" envDefault:"127.0.0.1:4222"`

	// PublishTimeout bounds the wait for a PubAck (JetStream) or a flush
	// (core NATS), and for the stream look-ups of the stream keeper; the
	// caller's context can only shorten it. The default is 5s.
	PublishTimeout time.Duration `env:"PUBLISH_TIMEOUT" envDefault:"5s"`
}

// Validate reports the first invalid setting with a message that names its
// environment variable and the accepted values. It does not read files or
// contact the servers; [New] does.
func (c *Config) Validate() error {
	for _, u := range splitURLs(c.URL) {
		if !strings.Contains(u, "://") {
			continue // nats.go accepts host:port
		}
		scheme := u[:strings.Index(u, "://")]
		switch scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("%sURL has %q: want nats://, tls://, ws:// or wss:// URLs, comma-separated", envPrefix, redactURLs(u))
		}
	}
	prefix := or(c.SubjectPrefix, DefaultSubjectPrefix)
	if err := codec.ValidateSubjectPrefix(prefix); err != nil {
		return fmt.Errorf("%sSUBJECT_PREFIX is invalid: %v", envPrefix, err)
	}
	dl := or(c.DeadLetterSubject, DefaultDeadLetterSubject)
	if err := codec.ValidateSubjectPrefix(dl); err != nil {
		return fmt.Errorf("%sDEADLETTER_SUBJECT is invalid: %v", envPrefix, err)
	}
	if strings.HasPrefix(dl, prefix+".") {
		return fmt.Errorf("%sDEADLETTER_SUBJECT=%q falls under %sSUBJECT_PREFIX=%q: dead letters would mix with events; choose a subject outside %s.>",
			envPrefix, dl, envPrefix, prefix, prefix)
	}
	if err := validateStreamName(or(c.Stream, DefaultStream)); err != nil {
		return fmt.Errorf("%sSTREAM=%q is invalid: %v", envPrefix, c.Stream, err)
	}
	if _, err := codec.ParseMode(c.ContentMode); err != nil {
		return fmt.Errorf("%sCONTENT_MODE=%q is invalid: want binary or structured", envPrefix, c.ContentMode)
	}
	if c.StreamReplicas < 0 || c.StreamReplicas > 5 {
		return fmt.Errorf("%sSTREAM_REPLICAS=%d is invalid: want 1 to 5", envPrefix, c.StreamReplicas)
	}
	if c.DuplicateWindow < 0 {
		return fmt.Errorf("%sDUPLICATE_WINDOW=%s is invalid: want a positive duration such as 2m", envPrefix, c.DuplicateWindow)
	}
	if c.PublishTimeout < 0 {
		return fmt.Errorf("%sPUBLISH_TIMEOUT=%s is invalid: want a positive duration such as 5s", envPrefix, c.PublishTimeout)
	}
	if c.CredsFile != "" && c.Token != "" {
		return fmt.Errorf("%sCREDS_FILE and %sTOKEN are both set: want one of them", envPrefix, envPrefix)
	}
	if c.URL == "" {
		if err := validateListenAddr(or(c.EmbeddedAddr, DefaultEmbeddedAddr)); err != nil {
			return fmt.Errorf("%sEMBEDDED_ADDR=%q is invalid: %v", envPrefix, c.EmbeddedAddr, err)
		}
	}
	return nil
}

// withDefaults returns c with the zero fields that have a default filled in.
func (c Config) withDefaults() Config {
	c.Stream = or(c.Stream, DefaultStream)
	c.SubjectPrefix = or(c.SubjectPrefix, DefaultSubjectPrefix)
	c.DeadLetterSubject = or(c.DeadLetterSubject, DefaultDeadLetterSubject)
	c.EmbeddedAddr = or(c.EmbeddedAddr, DefaultEmbeddedAddr)
	if c.StreamReplicas == 0 {
		c.StreamReplicas = DefaultStreamReplicas
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	return c
}

const redacted = "<redacted>"

// String formats c for humans with Token masked, so that printing a Config
// with %v or %+v never shows the secret.
func (c Config) String() string {
	type plainConfig Config // drops the methods, so %+v does not recurse
	p := plainConfig(c)
	if p.Token != "" {
		p.Token = redacted
	}
	p.URL = redactURLs(p.URL)
	return fmt.Sprintf("%+v", p)
}

// GoString masks Token for %#v as String does for %v.
func (c Config) GoString() string { return "natssink.Config" + c.String() }

// LogValue logs the settings that help diagnose a connection, never the
// token or a password in the URL.
func (c Config) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("url", redactURLs(c.URL)),
		slog.Bool("jetstream", c.JetStream),
		slog.String("stream", c.Stream),
		slog.String("subject_prefix", c.SubjectPrefix),
		slog.String("deadletter_subject", c.DeadLetterSubject),
		slog.String("content_mode", c.ContentMode),
		slog.String("creds_file", c.CredsFile),
	}
	if c.Token != "" {
		attrs = append(attrs, slog.String("token", redacted))
	}
	return slog.GroupValue(attrs...)
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func splitURLs(s string) []string {
	var out []string
	for _, u := range strings.Split(s, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// RedactURL returns the NATS URL list s with user info (a password or
// token) masked, for anything printed.
func RedactURL(s string) string { return redactURLs(s) }

// redactURLs masks user info (a password or token) in URLs.
func redactURLs(s string) string {
	urls := splitURLs(s)
	for i, u := range urls {
		at := strings.LastIndex(u, "@")
		sep := strings.Index(u, "://")
		if at > sep && sep >= 0 {
			urls[i] = u[:sep+3] + redacted + u[at:]
		}
	}
	return strings.Join(urls, ",")
}

// validateStreamName applies JetStream's rule: no whitespace, '.', '*',
// '>' or path separators, at most 255 characters.
func validateStreamName(s string) error {
	if len(s) > 255 {
		return fmt.Errorf("a stream name has at most 255 characters")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`.*>/\`, c) >= 0 {
			return fmt.Errorf("it has %q: a stream name accepts printable ASCII except space, '.', '*', '>', '/' and '\\'", c)
		}
	}
	return nil
}

func validateListenAddr(a string) error {
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("want host:port")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("the port %q is not a number from 0 to 65535", port)
	}
	return nil
}
