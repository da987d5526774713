package natssink

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
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mistbridge/mistbridge/sinks"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Config
		want string // the exact message, or "" for valid
	}{
		{"zero", Config{}, ""},
		{"full", Config{URL: "nats://a:4222, tls://b:4222", Stream: "EVENTS", SubjectPrefix: "acme.mist",
			DeadLetterSubject: "acme.dead", ContentMode: "structured", StreamReplicas: 3, Token: "t"}, ""},
		{"host:port URL", Config{URL: "localhost:4222"}, ""},
		{"dead letter beside the prefix", Config{SubjectPrefix: "mist", DeadLetterSubject: "mistbridge.deadletter"}, ""},
		{"URL scheme", Config{URL: "http://a:4222"},
			`MISTBRIDGE_NATS_URL has "http://a:4222": want nats://, tls://, ws:// or wss:// URLs, comma-separated`},
		{"prefix wildcard", Config{SubjectPrefix: "mist.*"},
			`MISTBRIDGE_NATS_SUBJECT_PREFIX is invalid: "mist.*" has '*': tokens accept only letters, digits, '-' and '_'`},
		{"prefix empty token", Config{SubjectPrefix: "mist..x"},
			`MISTBRIDGE_NATS_SUBJECT_PREFIX is invalid: "mist..x" has an empty token`},
		{"dead-letter subject", Config{DeadLetterSubject: "dead letters"},
			`MISTBRIDGE_NATS_DEADLETTER_SUBJECT is invalid: "dead letters" has ' ': tokens accept only letters, digits, '-' and '_'`},
		{"dead letter under the prefix", Config{SubjectPrefix: "mist", DeadLetterSubject: "mist.deadletter"},
			`MISTBRIDGE_NATS_DEADLETTER_SUBJECT="mist.deadletter" falls under MISTBRIDGE_NATS_SUBJECT_PREFIX="mist": dead letters would mix with events; choose a subject outside mist.>`},
		{"stream name", Config{Stream: "MIST.EVENTS"},
			`MISTBRIDGE_NATS_STREAM="MIST.EVENTS" is invalid: it has '.': a stream name accepts printable ASCII except space, '.', '*', '>', '/' and '\'`},
		{"content mode", Config{ContentMode: "xml"},
			`MISTBRIDGE_NATS_CONTENT_MODE="xml" is invalid: want binary or structured`},
		{"replicas", Config{StreamReplicas: 7},
			`MISTBRIDGE_NATS_STREAM_REPLICAS=7 is invalid: want 1 to 5`},
		{"duplicate window", Config{DuplicateWindow: -time.Minute},
			`MISTBRIDGE_NATS_DUPLICATE_WINDOW=-1m0s is invalid: want a positive duration such as 2m`},
		{"publish timeout", Config{PublishTimeout: -time.Second},
			`MISTBRIDGE_NATS_PUBLISH_TIMEOUT=-1s is invalid: want a positive duration such as 5s`},
		{"creds and token", Config{CredsFile: "a.creds", Token: "t"},
			`MISTBRIDGE_NATS_CREDS_FILE and MISTBRIDGE_NATS_TOKEN are both set: want one of them`},
		{"embedded addr", Config{EmbeddedAddr: "4222"},
			`MISTBRIDGE_NATS_EMBEDDED_ADDR="4222" is invalid: want host:port`},
		{"embedded port", Config{EmbeddedAddr: "127.0.0.1:99999"},
			`MISTBRIDGE_NATS_EMBEDDED_ADDR="127.0.0.1:99999" is invalid: the port "99999" is not a number from 0 to 65535`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.want != "" && err == nil:
				t.Fatalf("Validate() = nil, want %q", tc.want)
			case tc.want != "" && err.Error() != tc.want:
				t.Fatalf("Validate() =\n  %s\nwant\n  %s", err, tc.want)
			}
			if tc.want != "" {
				if _, nerr := New(context.Background(), tc.c, nil); nerr == nil || !strings.Contains(nerr.Error(), tc.want) {
					t.Errorf("New() = %v, want the Validate error", nerr)
				}
			}
		})
	}
}

func TestNewWithoutURL(t *testing.T) {
	_, err := New(context.Background(), Config{}, nil)
	if err == nil || !strings.Contains(err.Error(), "MISTBRIDGE_NATS_URL is empty") {
		t.Fatalf("New() = %v, want an error naming MISTBRIDGE_NATS_URL", err)
	}
}

// The envDefault tags are the documented defaults, and parse as the caller
// nests Config.
func TestEnvDefaults(t *testing.T) {
	var root struct {
		NATS Config `envPrefix:"NATS_"`
	}
	err := env.ParseWithOptions(&root, env.Options{
		Prefix:      "MISTBRIDGE_",
		Environment: map[string]string{"MISTBRIDGE_NATS_TOKEN": "s3cret"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		JetStream:         true,
		Stream:            DefaultStream,
		SubjectPrefix:     DefaultSubjectPrefix,
		DeadLetterSubject: DefaultDeadLetterSubject,
		ContentMode:       "binary",
		CreateStream:      true,
		StreamReplicas:    DefaultStreamReplicas,
		DuplicateWindow:   DefaultDuplicateWindow,
		Token:             "s3cret",
		EmbeddedAddr:      DefaultEmbeddedAddr,
		PublishTimeout:    DefaultPublishTimeout,
	}
	if got := root.NATS; fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) || got.Token != want.Token {
		t.Errorf("parsed\n  %#v\nwant\n  %#v", got, want)
	}
	if err := root.NATS.Validate(); err != nil {
		t.Errorf("Validate() = %v", err)
	}
	// Zero values mean the same defaults.
	if got := (Config{JetStream: true, ContentMode: "binary", CreateStream: true, Token: "s3cret"}).withDefaults(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("withDefaults:\n  %v\nwant\n  %v", got, want)
	}
}

func TestSecretsAreMasked(t *testing.T) {
	c := Config{URL: "nats://bridge:pa55word@n1:4222,nats://n2:4222", Token: "t0ken-s3cret"}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "nats", c)
	out := buf.String() + fmt.Sprintf("%v %+v %#v %s", c, c, c, c)
	for _, secret := range []string{"t0ken-s3cret", "pa55word"} {
		if strings.Contains(out, secret) {
			t.Fatalf("%q was printed:\n%s", secret, out)
		}
	}
	if !strings.Contains(out, "n1:4222") || !strings.Contains(out, redacted) {
		t.Fatalf("want the hosts and a mask in:\n%s", out)
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err       error
		permanent bool
	}{
		{nats.ErrMaxPayload, true},
		{nats.ErrBadSubject, true},
		{fmt.Errorf("%w: Permissions Violation for Publish to \"mist.x\"", nats.ErrPermissionViolation), true},
		{nats.ErrAuthorization, true},
		{nats.ErrAuthExpired, true},
		{&jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamMessageExceedsMaximum, Description: "message size exceeds maximum allowed"}, true},
		{jetstream.ErrStreamMessageExceedsMaximum, true},
		{&jetstream.APIError{Code: 400, ErrorCode: 10097, Description: "header size exceeds maximum allowed of 64k"}, true},
		{&jetstream.APIError{Code: 400, ErrorCode: 10002, Description: "resource limits exceeded for account"}, false},
		{&jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "maximum messages exceeded"}, false},
		{&jetstream.APIError{Code: 500, ErrorCode: 10009, Description: "JetStream cluster can not handle request"}, false},
		{jetstream.ErrNoStreamResponse, false},
		{jetstream.ErrAsyncPublishTimeout, false},
		{jetstream.ErrTooManyStalledMsgs, false},
		{nats.ErrNoResponders, false},
		{nats.ErrTimeout, false},
		{nats.ErrDisconnected, false},
		{nats.ErrConnectionClosed, false},
		{nats.ErrHeadersNotSupported, false}, // also what a never-connected client says
		{context.DeadlineExceeded, false},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			wrapped := fmt.Errorf("natssink: publish to x: %w", tc.err)
			got := classify(wrapped)
			if sinks.IsPermanent(got) != tc.permanent {
				t.Errorf("classify(%v): permanent = %v, want %v", tc.err, sinks.IsPermanent(got), tc.permanent)
			}
			if !errors.Is(got, tc.err) {
				t.Errorf("classify(%v) lost the cause: %v", tc.err, got)
			}
		})
	}
	if classify(nil) != nil {
		t.Error("classify(nil) != nil")
	}
}

func TestCovers(t *testing.T) {
	for _, tc := range []struct {
		pattern, subject string
		want             bool
	}{
		{"mist.>", "mist.>", true},
		{">", "mist.>", true},
		{"mist.*.>", "mist.>", false}, // mist.x is not matched by mist.*.>
		{"*.>", "mist.>", true},
		{"mist.>", "mist", false},
		{"mist", "mist", true},
		{"mist.*", "mist.>", false},
		{"mistbridge.deadletter", "mistbridge.deadletter", true},
		{"mistbridge.*", "mistbridge.deadletter", true},
		{"mistbridge.*", "mistbridge.deadletter.x", false},
		{"mist.>", "acme.mist.>", false},
		{"mist.a", "mist.b", false},
	} {
		if got := covers(tc.pattern, tc.subject); got != tc.want {
			t.Errorf("covers(%q, %q) = %v, want %v", tc.pattern, tc.subject, got, tc.want)
		}
	}
}
