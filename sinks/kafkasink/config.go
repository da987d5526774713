package kafkasink

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/mistbridge/mistbridge/codec"
)

// envPrefix is how the variables of [Config] are spelled in messages: the
// caller nests Config under MISTBRIDGE_ with the prefix KAFKA_.
const envPrefix = "MISTBRIDGE_KAFKA_"

// Defaults applied by [New] to zero fields of [Config]. They match the
// envDefault tags.
const (
	DefaultTopicTemplate   = "mist." + codec.TopicPlaceholder
	DefaultDeadLetterTopic = "mistbridge.deadletter"
	DefaultBatchTimeout    = 0
	DefaultBatchBytes      = MaxBatchBytes
	DefaultWriteTimeout    = 10 * time.Second
)

// SASL mechanisms accepted in [Config.SASLMechanism].
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// Config configures a Kafka [Sink]. It is parsed from the environment with
// github.com/caarlos0/env (the caller nests it under the prefix KAFKA_, so
// the variables are MISTBRIDGE_KAFKA_*). A zero string, duration or number
// means the documented default; the booleans are false when zero, so a Go
// caller that builds a Config by hand must set AutoCreateTopics itself.
type Config struct {
	// Brokers lists the bootstrap brokers as host:port. Required.
	Brokers []string `env:"BROKERS" envSeparator:","`

	// TopicTemplate names the Kafka topic of an event: {topic} is replaced
	// by the webhook topic. The default is "mist.{topic}".
	TopicTemplate string `env:"TOPIC_TEMPLATE" envDefault:"mist.{topic}"`

	// DeadLetterTopic receives events that failed permanently. The default
	// is "mistbridge.deadletter".
	DeadLetterTopic string `env:"DEADLETTER_TOPIC" envDefault:"mistbridge.deadletter"`

	// ContentMode is the CloudEvents content mode, "binary" (the default:
	// ce_ headers and the event's bytes as the value) or "structured".
	ContentMode string `env:"CONTENT_MODE" envDefault:"binary"`

	// Compression is the record batch codec: none (the default), gzip,
	// snappy, lz4 or zstd.
	Compression string `env:"COMPRESSION" envDefault:"none"`

	// BatchTimeout is how long a partition's records wait for more before
	// they are sent (linger.ms in the Java client). The default, 0, sends
	// records as soon as they are written: a Write with nothing else in
	// flight waits for no timer, and the records that arrive while requests
	// are in flight go together in the next one, so batches grow with the
	// load. The bridge holds the webhook request open until the brokers
	// acknowledge, so latency matters more than size.
	BatchTimeout time.Duration `env:"BATCH_TIMEOUT" envDefault:"0s"`

	// BatchBytes bounds a partition's record batch, in bytes, from 1024 to
	// 1048576 (1 MiB, the brokers' default message.max.bytes), which is
	// the default. It is also the largest record the sink sends: a larger
	// one fails, permanently, before it is sent. (It replaces BATCH_SIZE,
	// a count of records, which the producer has no use for.)
	BatchBytes int `env:"BATCH_BYTES" envDefault:"1048576"`

	// WriteTimeout bounds how long the brokers may take to answer a
	// produce request and how long a record may wait to be sent. A record
	// that waited longer fails, transiently. The default is 10s.
	WriteTimeout time.Duration `env:"WRITE_TIMEOUT" envDefault:"10s"`

	// AutoCreateTopics asks the brokers to create missing topics (they must
	// allow it with auto.create.topics.enable). Default from the
	// environment: true.
	AutoCreateTopics bool `env:"AUTO_CREATE_TOPICS" envDefault:"true"`

	// TLS enables TLS to the brokers, verified against the system roots or
	// TLSCAFile.
	TLS bool `env:"TLS"`
	// TLSCAFile is a PEM bundle of CAs to trust instead of the system roots.
	TLSCAFile string `env:"TLS_CA_FILE"`
	// TLSCertFile and TLSKeyFile are a PEM client certificate and its key,
	// for brokers that require mutual TLS. Set both or neither.
	TLSCertFile string `env:"TLS_CERT_FILE"`
	TLSKeyFile  string `env:"TLS_KEY_FILE"`
	// TLSInsecureSkipVerify disables verification of the brokers'
	// certificates. For tests only.
	TLSInsecureSkipVerify bool `env:"TLS_INSECURE_SKIP_VERIFY"`

	// SASLMechanism is empty (no SASL, the default), PLAIN, SCRAM-SHA-256
	// or SCRAM-SHA-512. When set, SASLUsername and SASLPassword are required.
	SASLMechanism string `env:"SASL_MECHANISM"`
	SASLUsername  string `env:"SASL_USERNAME"`
	// SASLPassword is a secret: String and LogValue mask it.
	SASLPassword string `env:"SASL_PASSWORD"`
}

// Validate reports the first invalid setting with a message that names its
// environment variable and the accepted values. It does not read files or
// contact the brokers; [New] does.
func (c *Config) Validate() error {
	if len(c.Brokers) == 0 {
		return fmt.Errorf("%sBROKERS is empty: want host:port[,host:port...]", envPrefix)
	}
	for _, b := range c.Brokers {
		if err := validateBroker(b); err != nil {
			return fmt.Errorf("%sBROKERS has %q: %v", envPrefix, b, err)
		}
	}
	if c.TopicTemplate != "" {
		if err := codec.ValidateKafkaTopicTemplate(c.TopicTemplate); err != nil {
			return fmt.Errorf("%sTOPIC_TEMPLATE is invalid: %v", envPrefix, err)
		}
	}
	if c.DeadLetterTopic != "" {
		if err := validateTopicName(c.DeadLetterTopic); err != nil {
			return fmt.Errorf("%sDEADLETTER_TOPIC=%q is invalid: %v", envPrefix, c.DeadLetterTopic, err)
		}
	}
	if _, err := codec.ParseMode(c.ContentMode); err != nil {
		return fmt.Errorf("%sCONTENT_MODE=%q is invalid: want binary or structured", envPrefix, c.ContentMode)
	}
	if _, err := parseCompression(c.Compression); err != nil {
		return err
	}
	if c.BatchTimeout < 0 {
		return fmt.Errorf("%sBATCH_TIMEOUT=%s is invalid: want 0 (no wait) or a positive duration such as 1ms", envPrefix, c.BatchTimeout)
	}
	if c.BatchBytes != 0 && (c.BatchBytes < MinBatchBytes || c.BatchBytes > MaxBatchBytes) {
		return fmt.Errorf("%sBATCH_BYTES=%d is invalid: want a number of bytes from %d to %d (1 MiB)", envPrefix, c.BatchBytes, MinBatchBytes, MaxBatchBytes)
	}
	if c.WriteTimeout < 0 {
		return fmt.Errorf("%sWRITE_TIMEOUT=%s is invalid: want a positive duration such as 10s", envPrefix, c.WriteTimeout)
	}
	if !c.TLS {
		for _, v := range []struct{ name, val string }{
			{"TLS_CA_FILE", c.TLSCAFile}, {"TLS_CERT_FILE", c.TLSCertFile}, {"TLS_KEY_FILE", c.TLSKeyFile},
		} {
			if v.val != "" {
				return fmt.Errorf("%s%s is set but %sTLS is false: set %sTLS=true to use TLS", envPrefix, v.name, envPrefix, envPrefix)
			}
		}
		if c.TLSInsecureSkipVerify {
			return fmt.Errorf("%sTLS_INSECURE_SKIP_VERIFY is set but %sTLS is false", envPrefix, envPrefix)
		}
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return fmt.Errorf("%sTLS_CERT_FILE and %sTLS_KEY_FILE must be set together", envPrefix, envPrefix)
	}
	switch strings.ToUpper(c.SASLMechanism) {
	case "":
		if c.SASLUsername != "" || c.SASLPassword != "" {
			return fmt.Errorf("%sSASL_USERNAME or %sSASL_PASSWORD is set but %sSASL_MECHANISM is empty: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", envPrefix, envPrefix, envPrefix)
		}
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if c.SASLUsername == "" || c.SASLPassword == "" {
			return fmt.Errorf("%sSASL_MECHANISM=%s needs both %sSASL_USERNAME and %sSASL_PASSWORD", envPrefix, strings.ToUpper(c.SASLMechanism), envPrefix, envPrefix)
		}
	default:
		return fmt.Errorf("%sSASL_MECHANISM=%q is invalid: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (or unset for no SASL)", envPrefix, c.SASLMechanism)
	}
	return nil
}

// withDefaults returns c with the zero fields that have a default filled in.
func (c Config) withDefaults() Config {
	if c.TopicTemplate == "" {
		c.TopicTemplate = DefaultTopicTemplate
	}
	if c.DeadLetterTopic == "" {
		c.DeadLetterTopic = DefaultDeadLetterTopic
	}
	if c.BatchTimeout == 0 {
		c.BatchTimeout = DefaultBatchTimeout
	}
	if c.BatchBytes == 0 {
		c.BatchBytes = DefaultBatchBytes
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	return c
}

const redacted = "<redacted>"

// String formats c for humans with SASLPassword masked, so that printing a
// Config with %v or %+v never shows the secret.
func (c Config) String() string {
	type plainConfig Config // drops the methods, so %+v does not recurse
	p := plainConfig(c)
	if p.SASLPassword != "" {
		p.SASLPassword = redacted
	}
	return fmt.Sprintf("%+v", p)
}

// GoString masks SASLPassword for %#v as String does for %v.
func (c Config) GoString() string { return "kafkasink.Config" + c.String() }

// LogValue logs the settings that help diagnose a connection, never the
// SASL password.
func (c Config) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.Any("brokers", c.Brokers),
		slog.String("topic_template", c.TopicTemplate),
		slog.String("deadletter_topic", c.DeadLetterTopic),
		slog.String("content_mode", c.ContentMode),
		slog.String("compression", c.Compression),
		slog.Bool("tls", c.TLS),
		slog.String("sasl_mechanism", c.SASLMechanism),
		slog.String("sasl_username", c.SASLUsername),
	}
	if c.SASLPassword != "" {
		attrs = append(attrs, slog.String("sasl_password", redacted))
	}
	return slog.GroupValue(attrs...)
}

func validateBroker(b string) error {
	host, port, err := net.SplitHostPort(strings.TrimSpace(b))
	if err != nil {
		return errors.New("want host:port")
	}
	if host == "" {
		return errors.New("the host is empty")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("the port %q is not a number from 1 to 65535", port)
	}
	return nil
}

// validateTopicName applies Kafka's rule for a literal topic name.
func validateTopicName(t string) error {
	if t == "." || t == ".." {
		return errors.New(`"." and ".." are not topic names`)
	}
	if len(t) > 249 {
		return errors.New("a Kafka topic has at most 249 characters")
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("it has %q: a Kafka topic accepts only letters, digits, '.', '_' and '-'", c)
		}
	}
	return nil
}

func parseCompression(s string) (kgo.CompressionCodec, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "none":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.NoCompression(), fmt.Errorf("%sCOMPRESSION=%q is invalid: want none, gzip, snappy, lz4 or zstd", envPrefix, s)
}

// TLSConfig is the TLS configuration the sink dials with, loaded from the
// files c names; nil means plaintext. Other Kafka clients of the command
// (tail, deadletter) use it, so they reach the brokers as the sink does.
func (c *Config) TLSConfig() (*tls.Config, error) {
	if !c.TLS {
		return nil, nil
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: c.TLSInsecureSkipVerify, // opt-in, documented as test-only
	}
	if c.TLSCAFile != "" {
		pem, err := os.ReadFile(c.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("%sTLS_CA_FILE: %w", envPrefix, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%sTLS_CA_FILE=%q holds no PEM certificate", envPrefix, c.TLSCAFile)
		}
		cfg.RootCAs = pool
	}
	if c.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("%sTLS_CERT_FILE/%sTLS_KEY_FILE: %w", envPrefix, envPrefix, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// ClientOptions are the franz-go options that reach the brokers of c as
// the sink does: the brokers (trimmed), the client id, TLS and SASL. The
// sink adds its producer's options to them; the command's other Kafka
// clients (tail, deadletter) use them as they are. It fails when a TLS
// file cannot be read, with an error that names its variable. The options
// hold the SASL password; they never print it.
func (c *Config) ClientOptions(clientID string) ([]kgo.Opt, error) {
	brokers := make([]string, len(c.Brokers))
	for i, b := range c.Brokers {
		brokers[i] = strings.TrimSpace(b)
	}
	opts := []kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ClientID(clientID)}
	tlsCfg, err := c.TLSConfig()
	if err != nil {
		return nil, err
	}
	if tlsCfg != nil {
		opts = append(opts, kgo.DialTLSConfig(tlsCfg))
	}
	user, pass := c.SASLUsername, c.SASLPassword
	switch strings.ToUpper(c.SASLMechanism) {
	case SASLPlain:
		opts = append(opts, kgo.SASL(plain.Auth{User: user, Pass: pass}.AsMechanism()))
	case SASLScramSHA256:
		opts = append(opts, kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()))
	case SASLScramSHA512:
		opts = append(opts, kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()))
	}
	return opts, nil
}

// The bounds of [Config.BatchBytes].
const (
	MinBatchBytes = 1 << 10
	MaxBatchBytes = 1 << 20
)
