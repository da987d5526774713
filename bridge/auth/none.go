package auth

import "net/http"

// None accepts every request. It exists so that turning authentication off
// is an explicit choice ([Config] logs a warning when it builds one); it
// can still be wrapped in [IPAllow] or [RequireHeaders].
type None struct{}

// NewNone returns a verifier that accepts every request.
func NewNone() *None { return &None{} }

// Verify implements [Verifier]: it returns nil.
func (*None) Verify(*http.Request, []byte) error { return nil }

// Precheck implements [Prechecker]: it returns nil.
func (*None) Precheck(*http.Request) error { return nil }

// Capabilities implements [Capable].
func (*None) Capabilities() Capabilities { return Capabilities{HeadersOnly: true} }

// String names the scheme.
func (*None) String() string { return "none" }
