// Package codec holds the pure functions of the bridge: splitting a webhook
// body into events without re-encoding them, mapping each event to a
// CloudEvent, and writing that CloudEvent in the Kafka and NATS protocol
// bindings.
//
// Nothing in this package does I/O; every function is safe for concurrent use.
package codec
