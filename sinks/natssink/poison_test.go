package natssink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/mistbridge/mistbridge/codec"
	"github.com/mistbridge/mistbridge/sinks"
)

// smallControlLine is the max_control_line of the "external" server: a
// separately configured nats-server, set well below the default 4096.
const smallControlLine = 512

// startSmallControlLine starts a nats-server of its own in this process,
// with JetStream and max_control_line = smallControlLine, the stand-in for
// an operator's server configured with limits the sink cannot see. It
// returns the client URL.
func startSmallControlLine(t testing.TB) string {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		ServerName:     "small-control-line",
		Host:           "127.0.0.1",
		Port:           server.RANDOM_PORT,
		JetStream:      true,
		StoreDir:       t.TempDir(),
		MaxControlLine: smallControlLine,
		NoSigs:         true,
		NoLog:          true,
	})
	if err != nil {
		t.Fatalf("nats-server: %v", err)
	}
	srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server with a small max_control_line did not become ready")
	}
	return srv.ClientURL()
}

// servers are the brokers the poison tests run against: the embedded one
// and one configured by hand with a small max_control_line.
var servers = []struct {
	name  string
	start func(t testing.TB) string
}{
	{"embedded", func(t testing.TB) string { return startNATS(t, true).e.ClientURL() }},
	{"small-control-line", startSmallControlLine},
}

// poisonEvent is a signed-looking event whose site id is 5,000 characters.
func poisonEvent() *codec.Event {
	raw := fmt.Sprintf(`{"org_id":"org-1","site_id":"%s","timestamp":1700000000}`, strings.Repeat("s", 5000))
	ev := codec.Map("device-events", []byte(raw))
	return &ev
}

// unboundedSubject is the subject codec.Subject built before it bounded
// its tokens: <prefix>.<topic>.<org>.<site>, each byte other than a letter,
// digit, '-' or '_' replaced by '_', "_" for an empty token, and no limit
// on length. The poison tests publish with it so that they hold whatever
// the codec does: the sink must not depend on the codec to keep subjects
// short.
func unboundedSubject(prefix string) func(ev *codec.Event) string {
	token := func(v string) string {
		if v == "" {
			return "_"
		}
		b := []byte(v)
		for i, c := range b {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				b[i] = '_'
			}
		}
		return string(b)
	}
	return func(ev *codec.Event) string {
		return prefix + "." + token(ev.Topic) + "." + token(ev.Org) + "." + token(ev.Site)
	}
}

// waitReady polls Ready until it returns nil, failing the test when it has
// not by the deadline.
func waitReady(t *testing.T, s *Sink, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := s.Ready(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready within %v: %v", within, err)
		}
		<-tick.C
	}
}

// A poison event (a 5,000-character site id, whose subject is longer than
// any nats-server's control line) fails alone and permanently; the events
// of the same Write and of later ones are acknowledged, and the sink stays
// ready. Then the same event through the codec's own subject is
// acknowledged or refused permanently, never fatal to the connection.
func TestPoisonSubjectFailsAlone(t *testing.T) {
	for _, srv := range servers {
		for _, js := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/jetstream=%v", srv.name, js), func(t *testing.T) {
				url := srv.start(t)
				s := newSink(t, Config{URL: url, JetStream: js, CreateStream: true, PublishTimeout: 2 * time.Second}, nil)
				waitReady(t, s, 5*time.Second)
				s.subject = unboundedSubject(s.cfg.SubjectPrefix)
				poison := poisonEvent()
				if n := len(s.subject(poison)); n < 5000 {
					t.Fatalf("the poison's subject is %d bytes, want over 5000", n)
				}
				batch := append([]*codec.Event{poison}, events(3, 10, "same-write")...)
				err := s.Write(testCtx(t), batch)
				var werrs sinks.WriteErrors
				if !errors.As(err, &werrs) || len(werrs) != len(batch) {
					t.Fatalf("Write = %v, want a WriteErrors of %d", err, len(batch))
				}
				if !sinks.IsPermanent(werrs[0]) || !strings.Contains(werrs[0].Error(), poison.ID) {
					t.Errorf("poison: %v, want a permanent error naming event %s", werrs[0], poison.ID)
				}
				for i, e := range werrs[1:] {
					if e != nil {
						t.Errorf("event %d of the same Write: %v, want nil", i+1, e)
					}
				}
				if err := s.Write(testCtx(t), events(3, 10, "next-write")); err != nil {
					t.Errorf("Write after the poison: %v", err)
				}
				if err := s.Ready(testCtx(t)); err != nil {
					t.Errorf("Ready after the poison: %v", err)
				}

				s.subject = func(ev *codec.Event) string { return codec.Subject(s.cfg.SubjectPrefix, ev) }
				err = s.Write(testCtx(t), []*codec.Event{poison})
				if err != nil && !sinks.IsPermanent(err) {
					t.Errorf("the poison with the codec's subject: %v, want nil or a permanent error", err)
				}
				if err := s.Write(testCtx(t), events(2, 10, "codec-subject")); err != nil {
					t.Errorf("Write after the poison with the codec's subject: %v", err)
				}
				if err := s.Ready(testCtx(t)); err != nil {
					t.Errorf("Ready after the poison with the codec's subject: %v", err)
				}
			})
		}
	}
}

// Through the retry policy, the poison is dead-lettered and the delivery
// succeeds.
func TestPoisonIsDeadLettered(t *testing.T) {
	b := startNATS(t, true)
	s := newSink(t, Config{URL: b.e.ClientURL(), JetStream: true, CreateStream: true, PublishTimeout: 2 * time.Second}, nil)
	s.subject = unboundedSubject(s.cfg.SubjectPrefix)
	r := sinks.NewRetrying(s, sinks.RetryPolicy{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}, nil, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	poison := poisonEvent()
	if err := r.Deliver(ctx, append([]*codec.Event{poison}, events(2, 10, "deliver")...)); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	_, js := connect(t, b.e.ClientURL())
	st, err := js.Stream(testCtx(t), DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(testCtx(t), DefaultDeadLetterSubject)
	if err != nil {
		t.Fatalf("no dead letter: %v", err)
	}
	if got := m.Header.Get("ce-id"); got != poison.ID {
		t.Errorf("dead letter ce-id %q, want %q", got, poison.ID)
	}
	if reason := m.Header.Get(sinks.HeaderDeadLetterReason); !strings.Contains(reason, "subject") {
		t.Errorf("dead letter reason %q does not say the subject was refused", reason)
	}
	if err := s.Ready(testCtx(t)); err != nil {
		t.Errorf("Ready after the poison: %v", err)
	}
}

// A subject under MaxSubjectLen but over a server's smaller
// max_control_line reaches the server, which closes the connection for
// good: the sink dials a new one, and later writes succeed.
func TestServerClosingTheConnectionIsRedialled(t *testing.T) {
	for _, js := range []bool{true, false} {
		t.Run(fmt.Sprintf("jetstream=%v", js), func(t *testing.T) {
			url := startSmallControlLine(t)
			s := newSink(t, Config{URL: url, JetStream: js, CreateStream: true, PublishTimeout: time.Second}, nil)
			waitReady(t, s, 5*time.Second)
			old := s.cur.Load()
			long := "mist.device-events.org-1." + strings.Repeat("s", smallControlLine+100)
			if len(long) > MaxSubjectLen {
				t.Fatalf("test subject of %d bytes is over MaxSubjectLen", len(long))
			}
			s.subject = func(*codec.Event) string { return long }
			err := s.Write(testCtx(t), events(1, 10, "closes"))
			if err == nil || sinks.IsPermanent(err) {
				t.Fatalf("Write that makes the server close the connection = %v, want a transient error", err)
			}
			select {
			case <-old.gone:
			case <-testCtx(t).Done():
				t.Fatal("the server did not close the connection")
			}
			s.subject = func(ev *codec.Event) string { return codec.Subject(s.cfg.SubjectPrefix, ev) }
			waitReady(t, s, 10*time.Second)
			if s.cur.Load() == old {
				t.Fatal("ready on the closed connection")
			}
			if err := s.Write(testCtx(t), events(3, 10, "after")); err != nil {
				t.Fatalf("Write after the redial: %v", err)
			}
		})
	}
}
