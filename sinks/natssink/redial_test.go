package natssink

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mistbridge/mistbridge/codec"
	"github.com/mistbridge/mistbridge/sinks"
)

// killConn closes the sink's current connection as nats.go does after a
// fatal protocol error, and waits until its ClosedHandler has run.
func killConn(t *testing.T, s *Sink) *conn {
	t.Helper()
	c := s.cur.Load()
	c.nc.Close()
	select {
	case <-c.gone:
	case <-testCtx(t).Done():
		t.Fatal("the ClosedHandler did not run")
	}
	return c
}

// A closed connection is replaced: Ready and Write work again, the redial
// is logged once, and the log shows no credentials from the URL.
func TestRedialAfterClose(t *testing.T) {
	for _, srv := range servers {
		for _, js := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/jetstream=%v", srv.name, js), func(t *testing.T) {
				url := strings.Replace(srv.start(t), "nats://", "nats://user:hunter2@", 1)
				var logs bytes.Buffer
				var mu sync.Mutex
				log := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
				s := newSink(t, Config{URL: url, JetStream: js, CreateStream: true, PublishTimeout: 2 * time.Second}, log)
				waitReady(t, s, 5*time.Second)
				old := killConn(t, s)
				err := s.Write(testCtx(t), events(1, 10, "while-closed"))
				if err != nil && (sinks.IsPermanent(err) || !errors.Is(err, nats.ErrConnectionClosed)) {
					t.Errorf("Write while the connection is closed = %v, want nil or a transient ErrConnectionClosed", err)
				}
				waitReady(t, s, 10*time.Second)
				if s.cur.Load() == old {
					t.Fatal("ready on the closed connection")
				}
				if err := s.Write(testCtx(t), events(3, 10, "after")); err != nil {
					t.Fatalf("Write after the redial: %v", err)
				}
				mu.Lock()
				out := logs.String()
				mu.Unlock()
				if n := strings.Count(out, "dialling a new one"); n != 1 {
					t.Errorf("the redial is logged %d times, want once:\n%s", n, out)
				}
				if strings.Contains(out, "hunter2") {
					t.Errorf("the log shows the URL's password:\n%s", out)
				}
			})
		}
	}
}

// Connections that close again and again are redialled each time.
func TestRedialRepeatedly(t *testing.T) {
	b := startNATS(t, true)
	s := newSink(t, Config{URL: b.e.ClientURL(), JetStream: true, CreateStream: true}, nil)
	for i := range 3 {
		waitReady(t, s, 10*time.Second)
		killConn(t, s)
		if i == 2 {
			break
		}
	}
	waitReady(t, s, 10*time.Second)
	if err := s.Write(testCtx(t), events(2, 10, "again")); err != nil {
		t.Fatalf("Write after three redials: %v", err)
	}
}

// Close is idempotent and does not race with the redialer: closing while
// a redial is pending or under way leaves no connection open.
func TestCloseDuringRedial(t *testing.T) {
	for _, wait := range []time.Duration{0, 5 * time.Millisecond, 50 * time.Millisecond} {
		t.Run(wait.String(), func(t *testing.T) {
			b := startNATS(t, false)
			s, err := New(testCtx(t), Config{URL: b.e.ClientURL()}, nil)
			if err != nil {
				t.Fatal(err)
			}
			killConn(t, s)
			timer := time.NewTimer(wait)
			<-timer.C
			var wg sync.WaitGroup
			errs := make(chan error, 2)
			for range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- s.Close(testCtx(t))
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Errorf("Close: %v", err)
				}
			}
			if st := s.cur.Load().nc.Status(); st != nats.CLOSED {
				t.Errorf("after Close the connection is %v, want CLOSED", st)
			}
			if err := s.Write(testCtx(t), events(1, 10, "closed")); !errors.Is(err, sinks.ErrClosed) {
				t.Errorf("Write after Close = %v, want ErrClosed", err)
			}
			if err := s.Close(testCtx(t)); err != nil {
				t.Errorf("second Close: %v", err)
			}
		})
	}
}

func TestCheckSubject(t *testing.T) {
	for _, tc := range []struct {
		subject string
		want    error
	}{
		{"mist.device-events.org.site", nil},
		{"mist." + strings.Repeat("a", MaxSubjectLen-5), nil},
		{"mist." + strings.Repeat("a", MaxSubjectLen-4), ErrSubjectTooLong},
		{"mist.device-events.org-1." + strings.Repeat("s", 5000), ErrSubjectTooLong},
		{"", ErrInvalidSubject},
		{"mist..site", ErrInvalidSubject},
		{".mist.site", ErrInvalidSubject},
		{"mist.site.", ErrInvalidSubject},
		{"mist.a b", ErrInvalidSubject},
		{"mist.a\tb", ErrInvalidSubject},
		{"mist.a\r\nPUB x 1", ErrInvalidSubject},
		{"mist.\x7f", ErrInvalidSubject},
		{"mist.*.site", ErrInvalidSubject},
		{"mist.>", ErrInvalidSubject},
	} {
		t.Run(shorten(tc.subject), func(t *testing.T) {
			err := checkSubject(tc.subject)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("checkSubject = %v, want %v", err, tc.want)
			}
			if err != nil && len(err.Error()) > 300 {
				t.Errorf("the error quotes %d bytes: %.80s...", len(err.Error()), err)
			}
		})
	}
}

// A message whose data fits max_payload but not with its headers is
// refused before it is sent, permanently, for that event alone.
func TestHeadersCountAgainstMaxPayload(t *testing.T) {
	b := startNATS(t, true)
	s := newSink(t, Config{URL: b.e.ClientURL(), JetStream: true, CreateStream: true}, nil)
	max := int(s.cur.Load().nc.MaxPayload())
	big := events(1, 0, "big")[0]
	pad := max - 16 - len(big.Data)
	raw := fmt.Sprintf(`{"org_id":"org-1","site_id":"site-0","timestamp":1700000000,"tag":"big","pad":"%s"}`, strings.Repeat("x", pad))
	ev := codec.Map("device-events", []byte(raw))
	if len(ev.Data) > max {
		t.Fatalf("data of %d bytes is over max_payload %d alone", len(ev.Data), max)
	}
	evs := append([]*codec.Event{&ev}, events(2, 10, "small")...)
	err := s.Write(testCtx(t), evs)
	var werrs sinks.WriteErrors
	if !errors.As(err, &werrs) || werrs[1] != nil || werrs[2] != nil {
		t.Fatalf("Write = %v, want only the first event to fail", err)
	}
	if !sinks.IsPermanent(werrs[0]) || !errors.Is(werrs[0], nats.ErrMaxPayload) || !strings.Contains(werrs[0].Error(), ev.ID) {
		t.Errorf("too large with headers: %v, want permanent, ErrMaxPayload, naming %s", werrs[0], ev.ID)
	}
	if err := s.Ready(testCtx(t)); err != nil {
		t.Errorf("Ready: %v", err)
	}
}

// A bare subject override keeps the sink's checks: a 5,000-character
// subject is refused whatever the codec builds.
func TestLongSubjectRefusedWhateverTheCodec(t *testing.T) {
	b := startNATS(t, true)
	s := newSink(t, Config{URL: b.e.ClientURL(), JetStream: true, CreateStream: true}, nil)
	long := "mist.device-events.org-1." + strings.Repeat("s", 5000)
	s.subject = func(*codec.Event) string { return long }
	err := s.Write(testCtx(t), events(1, 10, "long"))
	var werrs sinks.WriteErrors
	if !errors.As(err, &werrs) || !sinks.IsPermanent(werrs[0]) || !errors.Is(werrs[0], ErrSubjectTooLong) {
		t.Fatalf("Write = %v, want a permanent ErrSubjectTooLong", err)
	}
	if st := s.cur.Load().nc.Status(); st != nats.CONNECTED {
		t.Errorf("connection %v after the refusal, want CONNECTED", st)
	}
}
