package main

import (
	"bytes"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
)

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name      string
		env       map[string]string
		wantErr   []string
		wantSinks []string
	}{
		{name: "embedded default", env: map[string]string{"MISTBRIDGE_WEBHOOK_SECRET": "s"}, wantSinks: []string{"nats"}},
		{name: "brokers add kafka", env: map[string]string{"MISTBRIDGE_WEBHOOK_SECRET": "s", "MISTBRIDGE_KAFKA_BROKERS": "k:9092"}, wantSinks: []string{"nats", "kafka"}},
		{name: "explicit kafka only", env: map[string]string{"MISTBRIDGE_WEBHOOK_SECRET": "s", "MISTBRIDGE_SINKS": "Kafka", "MISTBRIDGE_KAFKA_BROKERS": "k:9092"}, wantSinks: []string{"kafka"}},
		{name: "unknown sink", env: map[string]string{"MISTBRIDGE_SINKS": "nats,redis"}, wantErr: []string{`MISTBRIDGE_SINKS="nats,redis" is invalid`, "nats, kafka or nats,kafka"}},
		{name: "kafka without brokers", env: map[string]string{"MISTBRIDGE_SINKS": "kafka"}, wantErr: []string{"MISTBRIDGE_KAFKA_BROKERS is empty"}},
		{name: "bad duration names the variable", env: map[string]string{"MISTBRIDGE_DELIVERY_TIMEOUT": "ten"}, wantErr: []string{`MISTBRIDGE_DELIVERY_TIMEOUT="ten" is invalid`, "duration"}},
		{name: "bad int names the variable", env: map[string]string{"MISTBRIDGE_MAX_BODY_BYTES": "1MB"}, wantErr: []string{`MISTBRIDGE_MAX_BODY_BYTES="1MB" is invalid`, "whole number"}},
		{name: "bad bool names the variable", env: map[string]string{"MISTBRIDGE_NATS_JETSTREAM": "yes please"}, wantErr: []string{`MISTBRIDGE_NATS_JETSTREAM="yes please" is invalid`, "true or false"}},
		{name: "kafka compression", env: map[string]string{"MISTBRIDGE_KAFKA_BROKERS": "k:9092", "MISTBRIDGE_KAFKA_COMPRESSION": "brotli"}, wantErr: []string{"MISTBRIDGE_KAFKA_COMPRESSION", "brotli", "zstd"}},
		{name: "log level", env: map[string]string{"MISTBRIDGE_LOG_LEVEL": "loud"}, wantErr: []string{`MISTBRIDGE_LOG_LEVEL="loud"`, "debug, info, warn or error"}},
		{name: "every problem at once", env: map[string]string{"MISTBRIDGE_DELIVERY_TIMEOUT": "ten", "MISTBRIDGE_LOG_FORMAT": "xml"}, wantErr: []string{"MISTBRIDGE_DELIVERY_TIMEOUT", "MISTBRIDGE_LOG_FORMAT"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := loadConfig(tt.env)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if !slices.Equal(cfg.Sinks, tt.wantSinks) {
					t.Errorf("sinks %v, want %v", cfg.Sinks, tt.wantSinks)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestSecretsStayOutOfErrors(t *testing.T) {
	env := map[string]string{
		"MISTBRIDGE_KAFKA_BROKERS":       "k:9092",
		"MISTBRIDGE_KAFKA_SASL_PASSWORD": "hunter2-secret",
		"MISTBRIDGE_KAFKA_COMPRESSION":   "brotli",
		"MISTBRIDGE_WEBHOOK_SECRET":      "mist-secret-value",
	}
	cfg, _, err := loadConfig(env)
	if err == nil {
		t.Fatal("accepted SASL password without mechanism and a bad compression")
	}
	for _, s := range []string{"hunter2-secret", "mist-secret-value"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error shows a secret: %v", err)
		}
	}
	if _, err := cfg.Auth.Verifier(nil); err != nil {
		t.Fatal(err)
	}
}

func TestUnknownVariables(t *testing.T) {
	_, unknown, err := loadConfig(map[string]string{"MISTBRIDGE_WEBHOOK_SECRET": "s", "MISTBRIDGE_KAFKA_BROKER": "typo:9092", "OTHER": "x"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(unknown, []string{"MISTBRIDGE_KAFKA_BROKER"}) {
		t.Errorf("unknown = %v", unknown)
	}
}

// A replaced variable is no longer read (so the start-up warning names it)
// and points at a variable that is.
func TestReplacedVariables(t *testing.T) {
	known := map[string]bool{}
	for _, v := range variables() {
		known[v.Key] = true
	}
	for old, instead := range replacedVariables {
		_, unknown, err := loadConfig(map[string]string{"MISTBRIDGE_WEBHOOK_SECRET": "s", old: "100"})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(unknown, []string{old}) {
			t.Errorf("%s: unknown = %v, want it alone", old, unknown)
		}
		if name, _, _ := strings.Cut(instead, ":"); !known[name] {
			t.Errorf("%s points at %q, which is not a variable", old, name)
		}
	}
}

func TestUsageListsEveryVariable(t *testing.T) {
	var b bytes.Buffer
	printUsage(&b)
	for _, v := range variables() {
		if !strings.Contains(b.String(), v.Key) {
			t.Errorf("-h does not list %s", v.Key)
		}
	}
	for _, want := range []string{"MISTBRIDGE_LISTEN_ADDR", "[:8080]", "MISTBRIDGE_NATS_JETSTREAM", "MISTBRIDGE_KAFKA_TOPIC_TEMPLATE", "[mist.{topic}]"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("-h lacks %q", want)
		}
	}
}

func TestAuthProblemsAreListedWithTheRest(t *testing.T) {
	_, _, err := loadConfig(map[string]string{"MISTBRIDGE_AUTH_TYPE": "basic", "MISTBRIDGE_AUTH_USERNAME": "u", "MISTBRIDGE_LOG_LEVEL": "loud"})
	if err == nil {
		t.Fatal("accepted basic without a password")
	}
	for _, w := range []string{"MISTBRIDGE_AUTH_PASSWORD", "MISTBRIDGE_LOG_LEVEL"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
}

func TestBannerHidesCredentials(t *testing.T) {
	cfg, _, err := loadConfig(map[string]string{
		"MISTBRIDGE_WEBHOOK_SECRET": "s", "MISTBRIDGE_NATS_URL": "nats://alice:s3cretpw@127.0.0.1:4222",
		"MISTBRIDGE_KAFKA_BROKERS": "k:9092",
	})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	printBanner(&b, slog.New(slog.DiscardHandler), cfg, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080})
	out := b.String()
	if strings.Contains(out, "s3cretpw") {
		t.Errorf("banner shows the NATS password:\n%s", out)
	}
	for _, want := range []string{"http://127.0.0.1:8080/webhooks/mist", "nats sub", "kcat -C -b k:9092 -t mist.device-events"} {
		if !strings.Contains(out, want) {
			t.Errorf("banner lacks %q:\n%s", want, out)
		}
	}
	_, _, err = loadConfig(map[string]string{"MISTBRIDGE_WEBHOOK_SECRET": "s", "MISTBRIDGE_NATS_URL": "http://alice:s3cretpw@host:4222"})
	if err == nil || strings.Contains(err.Error(), "s3cretpw") {
		t.Errorf("bad NATS URL error = %v: want an error without the password", err)
	}
}
