// Package sinks defines what a broker output is ([Sink]), how its errors are
// classified (transient or [Permanent]), and the delivery policy shared by
// every broker: retries with jittered exponential backoff for transient
// errors and a dead-letter destination for permanent ones ([Retrying]).
//
// Each broker lives in its own package (kafkasink, natssink) so that its
// client library does not leak into the rest of the bridge; sinktest is the
// conformance suite every one of them passes.
package sinks

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/mistbridge/mistbridge/codec"
)

// Sink publishes CloudEvents to one broker. Implementations are safe for
// concurrent use.
type Sink interface {
	// Name is a short lowercase name for logs and metrics ("kafka", "nats").
	Name() string

	// Write blocks until every event is acknowledged by the broker or has
	// failed. It returns nil when all are acknowledged; a [WriteErrors] of
	// len(events) when some failed (nil entries succeeded); or another
	// error when the whole call failed. Errors that retrying cannot fix are
	// marked with [Permanent]. Write does not keep or modify events after it
	// returns.
	Write(ctx context.Context, events []*codec.Event) error

	// DeadLetter publishes an event that failed permanently to the sink's
	// dead-letter destination, with its original data and the cause.
	DeadLetter(ctx context.Context, ev *codec.Event, cause error) error

	// Ready reports whether the broker accepts writes now.
	Ready(ctx context.Context) error

	// Close flushes what is pending and releases the connection.
	Close(ctx context.Context) error
}

// ErrClosed is returned by a sink's Write after Close.
var ErrClosed = errors.New("sinks: sink closed")

// WriteErrors holds one error per event of a Write; nil entries succeeded.
type WriteErrors []error

func (e WriteErrors) Error() string {
	var failed int
	var first error
	for _, err := range e {
		if err != nil {
			if first == nil {
				first = err
			}
			failed++
		}
	}
	return fmt.Sprintf("sinks: %d of %d events failed (first: %v)", failed, len(e), first)
}

// Unwrap lets errors.Is and errors.As look at every failure.
func (e WriteErrors) Unwrap() []error {
	out := make([]error, 0, len(e))
	for _, err := range e {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }

// Permanent marks err as one that retrying cannot fix (message too large,
// invalid topic, authorization refused by the broker). It returns nil for nil.
func Permanent(err error) error {
	if err == nil || IsPermanent(err) {
		return err
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err, or an error it wraps, was marked with [Permanent].
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// DeadLetterReason is the text a dead-letter message carries for cause:
// its message with line breaks removed and cut to a header-friendly size.
func DeadLetterReason(cause error) string {
	s := strings.Join(strings.Fields(cause.Error()), " ")
	if len(s) > 512 {
		s = s[:512]
	}
	return s
}

// Header names a dead-letter message carries besides the CloudEvent ones.
const (
	HeaderDeadLetterReason = "mistbridge-error"
	HeaderDeadLetterSink   = "mistbridge-sink"
)
