package sinks

import (
	"context"
	"time"
)

type receivedKey struct{}

// WithReceived returns ctx carrying when the events about to be delivered
// were received, so that [Retrying] can observe the time from receipt to
// the broker's acknowledgement (mistbridge_delivery_latency_seconds).
func WithReceived(ctx context.Context, t time.Time) context.Context {
	return context.WithValue(ctx, receivedKey{}, t)
}

// received is what WithReceived put in ctx, or the zero time.
func received(ctx context.Context) time.Time {
	t, _ := ctx.Value(receivedKey{}).(time.Time)
	return t
}
