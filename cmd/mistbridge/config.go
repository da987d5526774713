package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"github.com/caarlos0/env/v11"

	"github.com/mistbridge/mistbridge/bridge"
	"github.com/mistbridge/mistbridge/bridge/archive"
	"github.com/mistbridge/mistbridge/bridge/auth"
	"github.com/mistbridge/mistbridge/bridge/receivers"
	"github.com/mistbridge/mistbridge/bridge/spool"
	"github.com/mistbridge/mistbridge/sinks/kafkasink"
	"github.com/mistbridge/mistbridge/sinks/natssink"
)

//go:generate go run ./internal/helpgen

// envPrefix starts every variable the bridge reads.
const envPrefix = "MISTBRIDGE_"

// config is everything the bridge reads from the environment. Each
// component owns its struct; this one only nests them.
type config struct {
	// DataDir holds the embedded NATS server's JetStream store, the spool
	// and the receivers database.
	DataDir string `env:"DATA_DIR" envDefault:"./data"`
	// Sinks lists the outputs: nats, kafka or both. Empty means nats, plus
	// kafka when MISTBRIDGE_KAFKA_BROKERS is set.
	Sinks []string `env:"SINKS" envSeparator:","`
	// LogLevel is the least level logged: debug, info, warn or error.
	LogLevel string `env:"LOG_LEVEL" envDefault:"info"`
	// PprofAddr, when set, serves net/http/pprof there (e.g. 127.0.0.1:6060)
	// for profiling; keep it on loopback.
	PprofAddr string `env:"PPROF_ADDR"`
	// LogFormat is the log line format: text (logfmt) or json.
	LogFormat string `env:"LOG_FORMAT" envDefault:"text"`

	Bridge bridge.Config
	Auth   auth.Config
	// Spool is MISTBRIDGE_ACK_MODE, MISTBRIDGE_ACK_WAIT and MISTBRIDGE_SPOOL_*.
	Spool spool.Config
	// Archive is MISTBRIDGE_ARCHIVE_*: the raw archive of verified request
	// bodies for `mistbridge replay` (off unless MISTBRIDGE_ARCHIVE_RETENTION is set).
	Archive archive.Config

	// AdminToken, when set, turns the receivers API (/api/v1/) on: callers
	// send Authorization: Bearer <token>; comma-separated for rotation.
	AdminToken []string `env:"ADMIN_TOKEN" envSeparator:","`
	// ReceiversKey, when set (base64 of 32 bytes), encrypts stored receiver
	// credentials with AES-256-GCM.
	ReceiversKey string `env:"RECEIVERS_KEY"`
	// Tracing turns OpenTelemetry tracing on even without
	// OTEL_EXPORTER_OTLP_ENDPOINT (then the SDK's default endpoint,
	// localhost:4318, is used); the standard OTEL_* variables configure it.
	Tracing bool `env:"TRACING"`
	// PublicURL is the base of the ingest URLs the receivers API shows,
	// e.g. https://hooks.example.com; the default is the request's host.
	PublicURL string           `env:"PUBLIC_URL"`
	Kafka     kafkasink.Config `envPrefix:"KAFKA_"`
	NATS      natssink.Config  `envPrefix:"NATS_"`
}

// variable describes one environment variable of config.
type variable struct {
	Key     string
	Field   string
	Type    string
	Default string
	// Help is the first sentence of the field's doc comment (help_gen.go).
	Help string
}

// variables lists every variable config reads, in declaration order.
func variables() []variable {
	var out []variable
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			key, _, _ := strings.Cut(f.Tag.Get("env"), ",")
			if f.Type.Kind() == reflect.Struct && key == "" {
				walk(f.Type, prefix+f.Tag.Get("envPrefix"))
				continue
			}
			if key == "" || key == "-" {
				continue
			}
			typ := f.Type.String()
			switch {
			case typ == "time.Duration":
				typ = "duration"
			case f.Type.Kind() == reflect.Slice:
				typ = "list"
			case strings.HasPrefix(typ, "int"):
				typ = "int"
			}
			pkg := path.Base(t.PkgPath())
			if t == reflect.TypeOf(config{}) {
				pkg = "main" // its path is "main" in the binary, the module path in tests
			}
			help := fieldHelp[pkg+"."+t.Name()+"."+f.Name]
			out = append(out, variable{Key: prefix + key, Field: f.Name, Type: typ, Default: f.Tag.Get("envDefault"), Help: help})
		}
	}
	walk(reflect.TypeOf(config{}), envPrefix)
	return out
}

// loadConfig parses the environment and validates every component. The
// error lists every problem, each naming its variable.
func loadConfig(environ map[string]string) (config, []string, error) {
	var cfg config
	var errs []error
	// A parse error leaves the other fields parsed: go on validating so
	// that one run reports every problem.
	if err := env.ParseWithOptions(&cfg, env.Options{Prefix: envPrefix, Environment: environ}); err != nil {
		errs = append(errs, explainParseError(err, environ))
	}
	if len(cfg.Sinks) == 0 {
		cfg.Sinks = []string{"nats"}
		if len(cfg.Kafka.Brokers) > 0 {
			cfg.Sinks = append(cfg.Sinks, "kafka")
		}
	}
	for i, s := range cfg.Sinks {
		s = strings.ToLower(strings.TrimSpace(s))
		cfg.Sinks[i] = s
		if s != "nats" && s != "kafka" {
			errs = append(errs, fmt.Errorf("%sSINKS=%q is invalid: want nats, kafka or nats,kafka", envPrefix, strings.Join(cfg.Sinks, ",")))
		}
	}
	cfg.Sinks = slices.Compact(cfg.Sinks)
	if cfg.Spool.Dir == "" {
		cfg.Spool.Dir = filepath.Join(cfg.DataDir, "spool")
	}
	if err := cfg.Spool.Validate(); err != nil {
		errs = append(errs, err)
	}
	if cfg.Archive.Dir == "" {
		cfg.Archive.Dir = filepath.Join(cfg.DataDir, "archive")
	}
	if err := cfg.Archive.Validate(); err != nil {
		errs = append(errs, err)
	}
	if cfg.ReceiversKey != "" {
		if _, err := receivers.ParseKey(cfg.ReceiversKey); err != nil {
			errs = append(errs, fmt.Errorf("%sRECEIVERS_KEY is invalid: %w", envPrefix, err))
		}
	}
	if err := cfg.Auth.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := cfg.Bridge.Validate(); err != nil {
		errs = append(errs, err)
	}
	if slices.Contains(cfg.Sinks, "kafka") {
		if len(cfg.Kafka.Brokers) == 0 {
			errs = append(errs, fmt.Errorf("%sSINKS includes kafka but %sKAFKA_BROKERS is empty: want host:port[,host:port...]", envPrefix, envPrefix))
		} else if err := cfg.Kafka.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if slices.Contains(cfg.Sinks, "nats") {
		if err := cfg.NATS.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	switch strings.ToLower(cfg.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("%sLOG_LEVEL=%q is invalid: want debug, info, warn or error", envPrefix, cfg.LogLevel))
	}
	if f := strings.ToLower(cfg.LogFormat); f != "text" && f != "json" {
		errs = append(errs, fmt.Errorf("%sLOG_FORMAT=%q is invalid: want text or json", envPrefix, cfg.LogFormat))
	}
	return cfg, unknownVariables(environ), errors.Join(errs...)
}

// explainParseError names the variable behind a parse error: the env
// library only knows the Go field.
func explainParseError(err error, environ map[string]string) error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return err
	}
	vars := variables()
	var errs []error
	for _, e := range agg.Errors {
		var pe env.ParseError
		if !errors.As(e, &pe) {
			errs = append(errs, e)
			continue
		}
		for _, v := range vars {
			if val, set := environ[v.Key]; set && v.Field == pe.Name {
				errs = append(errs, fmt.Errorf("%s=%q is invalid: want a %s (%v)", v.Key, val, describeType(v.Type), pe.Err))
			}
		}
	}
	return errors.Join(errs...)
}

func describeType(t string) string {
	switch t {
	case "duration":
		return "duration such as 250ms, 10s or 1m"
	case "bool":
		return "boolean: true or false"
	case "int":
		return "whole number"
	}
	return t
}

// replacedVariables are variables earlier versions read, with what to set
// instead: the start-up warning says so rather than suspect a typo.
var replacedVariables = map[string]string{
	"MISTBRIDGE_KAFKA_BATCH_SIZE": "MISTBRIDGE_KAFKA_BATCH_BYTES: the Kafka producer bounds its batches in bytes (default 1 MiB), not in records",
}

// unknownVariables lists MISTBRIDGE_ variables that nothing reads: usually a typo.
func unknownVariables(environ map[string]string) []string {
	known := map[string]bool{}
	for _, v := range variables() {
		known[v.Key] = true
	}
	var out []string
	for k := range environ {
		if strings.HasPrefix(k, envPrefix) && !known[k] {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func environMap() map[string]string {
	m := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// printUsage lists every variable with its default.
func printUsage(w io.Writer) {
	fmt.Fprintf(w, `mistbridge turns Juniper Mist webhooks into CloudEvents on NATS and Kafka.

Usage: mistbridge [-h]          run the bridge
       mistbridge COMMAND ...   an operator's tool (COMMAND -h for its flags):

  receivers list|show|create|update|delete|enable|disable
                       manage receivers through the API (MISTBRIDGE_ADMIN_TOKEN)
  spool status         what the spool holds, per sink
  deadletter list|replay
                       inspect dead letters, and publish them again after a fix
  replay --since T     publish again what the raw archive kept (MISTBRIDGE_ARCHIVE_RETENTION)
  tail [--kafka] [--topic T] [--org O] [--site S] [--json]
                       print the CloudEvents as they arrive on NATS (or Kafka)

The bridge is configured only through the environment. With nothing but
MISTBRIDGE_WEBHOOK_SECRET set it starts an embedded NATS server (JetStream,
stored under MISTBRIDGE_DATA_DIR) and serves POST /webhooks/mist on :8080.

Variables (default in brackets; secrets have none):
`)
	for _, v := range variables() {
		def := v.Default
		if def == "" {
			def = "unset"
		}
		fmt.Fprintf(w, "  %-44s %-8s [%s]\n      %s\n", v.Key, v.Type, def, v.Help)
	}
}
