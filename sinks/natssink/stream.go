package natssink

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// errNoStream means the stream does not exist and the sink may not create it.
var errNoStream = errors.New("natssink: stream does not exist")

// streamConfig is the stream the sink creates: file storage, the events'
// subjects and the dead-letter subject, duplicates dropped by Nats-Msg-Id
// within DuplicateWindow.
func (s *Sink) streamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        s.cfg.Stream,
		Description: "Juniper Mist webhook events as CloudEvents, written by mistbridge",
		Subjects:    s.subjects(),
		Storage:     jetstream.FileStorage,
		Replicas:    s.cfg.StreamReplicas,
		Duplicates:  s.cfg.DuplicateWindow,
	}
}

func (s *Sink) subjects() []string {
	return []string{s.cfg.SubjectPrefix + ".>", s.cfg.DeadLetterSubject}
}

// ensureStream makes sure the stream exists, through js: it creates it
// when it is missing and CreateStream is set, and only warns when an
// existing stream does not capture the sink's subjects (the operator owns
// it).
func (s *Sink) ensureStream(ctx context.Context, js jetstream.JetStream) error {
	name := s.cfg.Stream
	st, err := js.Stream(ctx, name)
	switch {
	case err == nil:
		s.checkSubjects(st.CachedInfo().Config.Subjects)
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if !s.cfg.CreateStream {
			return fmt.Errorf("%w: %s (%sCREATE_STREAM is false): create it with subjects %s",
				errNoStream, name, envPrefix, strings.Join(s.subjects(), ", "))
		}
		_, err := js.CreateStream(ctx, s.streamConfig())
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			// Another bridge created it in the meantime.
			return s.ensureStream(ctx, js)
		}
		if err != nil {
			return fmt.Errorf("natssink: create stream %s: %w", name, err)
		}
		s.log.Info("created stream", "stream", name, "subjects", s.subjects(),
			"replicas", s.cfg.StreamReplicas, "duplicate_window", s.cfg.DuplicateWindow)
	default:
		return fmt.Errorf("natssink: look up stream %s: %w", name, err)
	}
	s.streamOK.Store(true)
	return nil
}

func (s *Sink) checkSubjects(have []string) {
	for _, want := range s.subjects() {
		if !anyCovers(have, want) {
			s.log.Warn("the stream does not capture a subject the sink publishes to: publishes there fail with no responders",
				"stream", s.cfg.Stream, "stream_subjects", have, "subject", want)
		}
	}
}

// checkStream asks the keeper to make sure the stream exists.
func (s *Sink) checkStream() {
	if !s.cfg.JetStream { // not cur's js: connection callbacks may run before New sets cur
		return
	}
	s.streamOK.Store(false)
	select {
	case s.kick <- struct{}{}:
	default: // a check is already pending
	}
}

// keepStream runs ensureStream on the current connection when asked,
// retrying with backoff until it succeeds, the connection drops (the next
// connect, or the redialer's new connection, asks again) or ctx ends.
func (s *Sink) keepStream(ctx context.Context) {
	defer s.workers.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		}
		backoff := 250 * time.Millisecond
		for c := s.cur.Load(); !s.streamOK.Load() && c.nc.IsConnected(); c = s.cur.Load() {
			actx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
			err := s.ensureStream(actx, c.js)
			cancel()
			if err == nil || ctx.Err() != nil {
				break
			}
			s.log.Warn("stream not ready", "stream", s.cfg.Stream, "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 30*time.Second)
		}
	}
}

// anyCovers reports whether one of the stream subjects covers subject.
func anyCovers(patterns []string, subject string) bool {
	for _, p := range patterns {
		if covers(p, subject) {
			return true
		}
	}
	return false
}

// covers reports whether every subject that pattern s matches is also
// matched by pattern p (NATS wildcards: '*' one token, '>' one or more
// trailing tokens).
func covers(p, s string) bool {
	pt, st := strings.Split(p, "."), strings.Split(s, ".")
	for i, tok := range pt {
		if tok == ">" {
			return len(st) > i
		}
		if i >= len(st) {
			return false
		}
		switch {
		case st[i] == ">":
			return false
		case tok == "*":
		case tok != st[i]:
			return false
		}
	}
	return len(pt) == len(st)
}
