package kafkasink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mistbridge/mistbridge/sinks"
)

func validConfig() Config {
	return Config{
		Brokers:         []string{"k1:9092", "k2:9092"},
		TopicTemplate:   "mist.{topic}",
		DeadLetterTopic: "mistbridge.deadletter",
		ContentMode:     "binary",
		Compression:     "none",
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string // the exact message, or "" for valid
	}{
		{"valid", func(*Config) {}, ""},
		{"zero fields take defaults", func(c *Config) { *c = Config{Brokers: c.Brokers} }, ""},
		{"structured", func(c *Config) { c.ContentMode = "Structured" }, ""},
		{"zstd", func(c *Config) { c.Compression = "zstd" }, ""},
		{"scram lowercase", func(c *Config) { c.SASLMechanism, c.SASLUsername, c.SASLPassword = "scram-sha-512", "u", "p" }, ""},
		{"tls files", func(c *Config) { c.TLS, c.TLSCAFile, c.TLSCertFile, c.TLSKeyFile = true, "ca.pem", "c.pem", "k.pem" }, ""},
		{"no brokers", func(c *Config) { c.Brokers = nil },
			"MISTBRIDGE_KAFKA_BROKERS is empty: want host:port[,host:port...]"},
		{"broker without port", func(c *Config) { c.Brokers = []string{"k1"} },
			`MISTBRIDGE_KAFKA_BROKERS has "k1": want host:port`},
		{"broker port zero", func(c *Config) { c.Brokers = []string{"k1:0"} },
			`MISTBRIDGE_KAFKA_BROKERS has "k1:0": the port "0" is not a number from 1 to 65535`},
		{"broker without host", func(c *Config) { c.Brokers = []string{":9092"} },
			`MISTBRIDGE_KAFKA_BROKERS has ":9092": the host is empty`},
		{"template without placeholder", func(c *Config) { c.TopicTemplate = "mist" },
			`MISTBRIDGE_KAFKA_TOPIC_TEMPLATE is invalid: "mist" does not contain {topic}`},
		{"template with slash", func(c *Config) { c.TopicTemplate = "mist/{topic}" },
			`MISTBRIDGE_KAFKA_TOPIC_TEMPLATE is invalid: "mist/{topic}" has '/': a Kafka topic accepts only letters, digits, '.', '_' and '-'`},
		{"dead-letter topic with space", func(c *Config) { c.DeadLetterTopic = "dead letter" },
			`MISTBRIDGE_KAFKA_DEADLETTER_TOPIC="dead letter" is invalid: it has ' ': a Kafka topic accepts only letters, digits, '.', '_' and '-'`},
		{"dead-letter topic dot", func(c *Config) { c.DeadLetterTopic = ".." },
			`MISTBRIDGE_KAFKA_DEADLETTER_TOPIC=".." is invalid: "." and ".." are not topic names`},
		{"content mode", func(c *Config) { c.ContentMode = "xml" },
			`MISTBRIDGE_KAFKA_CONTENT_MODE="xml" is invalid: want binary or structured`},
		{"compression", func(c *Config) { c.Compression = "brotli" },
			`MISTBRIDGE_KAFKA_COMPRESSION="brotli" is invalid: want none, gzip, snappy, lz4 or zstd`},
		{"batch bytes negative", func(c *Config) { c.BatchBytes = -1 },
			`MISTBRIDGE_KAFKA_BATCH_BYTES=-1 is invalid: want a number of bytes from 1024 to 1048576 (1 MiB)`},
		{"batch bytes too small", func(c *Config) { c.BatchBytes = 1000 },
			`MISTBRIDGE_KAFKA_BATCH_BYTES=1000 is invalid: want a number of bytes from 1024 to 1048576 (1 MiB)`},
		{"batch bytes too large", func(c *Config) { c.BatchBytes = 2 << 20 },
			`MISTBRIDGE_KAFKA_BATCH_BYTES=2097152 is invalid: want a number of bytes from 1024 to 1048576 (1 MiB)`},
		{"batch timeout", func(c *Config) { c.BatchTimeout = -time.Second },
			`MISTBRIDGE_KAFKA_BATCH_TIMEOUT=-1s is invalid: want 0 (no wait) or a positive duration such as 1ms`},
		{"write timeout", func(c *Config) { c.WriteTimeout = -time.Second },
			`MISTBRIDGE_KAFKA_WRITE_TIMEOUT=-1s is invalid: want a positive duration such as 10s`},
		{"CA without TLS", func(c *Config) { c.TLSCAFile = "ca.pem" },
			`MISTBRIDGE_KAFKA_TLS_CA_FILE is set but MISTBRIDGE_KAFKA_TLS is false: set MISTBRIDGE_KAFKA_TLS=true to use TLS`},
		{"skip verify without TLS", func(c *Config) { c.TLSInsecureSkipVerify = true },
			`MISTBRIDGE_KAFKA_TLS_INSECURE_SKIP_VERIFY is set but MISTBRIDGE_KAFKA_TLS is false`},
		{"cert without key", func(c *Config) { c.TLS, c.TLSCertFile = true, "c.pem" },
			`MISTBRIDGE_KAFKA_TLS_CERT_FILE and MISTBRIDGE_KAFKA_TLS_KEY_FILE must be set together`},
		{"unknown mechanism", func(c *Config) { c.SASLMechanism = "GSSAPI" },
			`MISTBRIDGE_KAFKA_SASL_MECHANISM="GSSAPI" is invalid: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (or unset for no SASL)`},
		{"mechanism without password", func(c *Config) { c.SASLMechanism, c.SASLUsername = "PLAIN", "u" },
			`MISTBRIDGE_KAFKA_SASL_MECHANISM=PLAIN needs both MISTBRIDGE_KAFKA_SASL_USERNAME and MISTBRIDGE_KAFKA_SASL_PASSWORD`},
		{"mechanism without username", func(c *Config) { c.SASLMechanism, c.SASLPassword = "SCRAM-SHA-256", "p" },
			`MISTBRIDGE_KAFKA_SASL_MECHANISM=SCRAM-SHA-256 needs both MISTBRIDGE_KAFKA_SASL_USERNAME and MISTBRIDGE_KAFKA_SASL_PASSWORD`},
		{"credentials without mechanism", func(c *Config) { c.SASLUsername, c.SASLPassword = "u", "p" },
			`MISTBRIDGE_KAFKA_SASL_USERNAME or MISTBRIDGE_KAFKA_SASL_PASSWORD is set but MISTBRIDGE_KAFKA_SASL_MECHANISM is empty: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.edit(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.want != "" && err == nil:
				t.Fatalf("Validate() = nil, want %q", tc.want)
			case tc.want != "" && err.Error() != tc.want:
				t.Fatalf("Validate() =\n  %s\nwant\n  %s", err, tc.want)
			}
			if tc.want != "" {
				if _, nerr := New(c, nil); nerr == nil || !strings.Contains(nerr.Error(), tc.want) {
					t.Errorf("New() = %v, want the Validate error", nerr)
				}
			}
		})
	}
}

func TestNewTLSFileErrorsNameTheVariable(t *testing.T) {
	c := validConfig()
	c.TLS, c.TLSCAFile = true, "/nonexistent/ca.pem"
	if _, err := New(c, nil); err == nil || !strings.Contains(err.Error(), "MISTBRIDGE_KAFKA_TLS_CA_FILE") {
		t.Errorf("New() = %v, want an error naming MISTBRIDGE_KAFKA_TLS_CA_FILE", err)
	}
	c.TLSCAFile, c.TLSCertFile, c.TLSKeyFile = "", "/nonexistent/c.pem", "/nonexistent/k.pem"
	if _, err := New(c, nil); err == nil || !strings.Contains(err.Error(), "MISTBRIDGE_KAFKA_TLS_CERT_FILE") {
		t.Errorf("New() = %v, want an error naming MISTBRIDGE_KAFKA_TLS_CERT_FILE", err)
	}
}

// The envDefault tags are the documented defaults, and parse as the caller
// nests Config.
func TestEnvDefaults(t *testing.T) {
	var root struct {
		Kafka Config `envPrefix:"KAFKA_"`
	}
	err := env.ParseWithOptions(&root, env.Options{
		Prefix: "MISTBRIDGE_",
		Environment: map[string]string{
			"MISTBRIDGE_KAFKA_BROKERS":        "k1:9092,k2:9092",
			"MISTBRIDGE_KAFKA_SASL_MECHANISM": "PLAIN",
			"MISTBRIDGE_KAFKA_SASL_USERNAME":  "bridge",
			"MISTBRIDGE_KAFKA_SASL_PASSWORD":  "s3cret",
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := root.Kafka
	want := Config{
		Brokers:          []string{"k1:9092", "k2:9092"},
		TopicTemplate:    DefaultTopicTemplate,
		DeadLetterTopic:  DefaultDeadLetterTopic,
		ContentMode:      "binary",
		Compression:      "none",
		BatchTimeout:     DefaultBatchTimeout,
		BatchBytes:       DefaultBatchBytes,
		WriteTimeout:     DefaultWriteTimeout,
		AutoCreateTopics: true,
		SASLMechanism:    "PLAIN",
		SASLUsername:     "bridge",
		SASLPassword:     "s3cret",
	}
	if fmt.Sprintf("%#v", c) != fmt.Sprintf("%#v", want) || c.SASLPassword != want.SASLPassword {
		t.Errorf("parsed\n  %#v\nwant\n  %#v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate() = %v", err)
	}
}

func TestSecretsAreMasked(t *testing.T) {
	c := validConfig()
	c.SASLMechanism, c.SASLUsername, c.SASLPassword = "PLAIN", "bridge", "s3cret-pa55"
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("config", "kafka", c)
	s, err := New(c, log) // New logs its configuration
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	out := buf.String() + fmt.Sprintf("%v %+v %#v %s", c, c, c, c) + fmt.Sprint(&c)
	if strings.Contains(out, "s3cret-pa55") {
		t.Fatalf("the SASL password was printed:\n%s", out)
	}
	if !strings.Contains(out, "bridge") || !strings.Contains(out, redacted) {
		t.Fatalf("want the username and a mask in:\n%s", out)
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err       error
		permanent bool
	}{
		{kerr.MessageTooLarge, true},
		{kerr.RecordListTooLarge, true},
		{kerr.InvalidTopicException, true},
		{kerr.TopicAuthorizationFailed, true},
		{kerr.ClusterAuthorizationFailed, true},
		{kerr.InvalidRecord, true},
		{kerr.SaslAuthenticationFailed, true},
		{kerr.UnsupportedSaslMechanism, true},
		{kerr.InvalidRequiredAcks, true},
		{fmt.Errorf("%w (uncompressed_bytes=%d)", kerr.MessageTooLarge, 2<<20), true}, // franz-go's own size check
		{fmt.Errorf("wrapped: %w", kerr.TopicAuthorizationFailed), true},
		{kerr.LeaderNotAvailable, false},
		{kerr.NotLeaderForPartition, false},
		{kerr.UnknownTopicOrPartition, false}, // a topic being auto-created
		{kerr.RequestTimedOut, false},
		{kerr.NotEnoughReplicas, false},
		{kerr.NetworkException, false},
		{kgo.ErrRecordTimeout, false},
		{kgo.ErrClientClosed, false},
		{context.DeadlineExceeded, false},
		{errors.New("dial tcp 127.0.0.1:9092: connect: connection refused"), false},
		{sinks.ErrClosed, false},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			got := classify(tc.err)
			if sinks.IsPermanent(got) != tc.permanent {
				t.Errorf("classify(%v): permanent = %v, want %v", tc.err, sinks.IsPermanent(got), tc.permanent)
			}
			if got.Error() != tc.err.Error() {
				t.Errorf("classify(%v) lost the cause: %v", tc.err, got)
			}
		})
	}
}
