package auth

import (
	"errors"
	"net/http"
	"strings"
)

// BasicChallenge is the WWW-Authenticate value of every [Basic] failure.
const BasicChallenge = `Basic realm="` + Realm + `"`

// Basic verifies HTTP Basic authentication (RFC 7617), which Mist sends
// for a webhook URL written https://user:password@host/... It is safe for
// concurrent use. Build it with [NewBasic].
type Basic struct {
	user, password digest
}

// NewBasic returns a verifier for one user and password. Both are required;
// the user may not contain a colon (Basic cannot carry one).
func NewBasic(user, password string) (*Basic, error) {
	if user == "" || password == "" {
		return nil, errors.New("auth: basic: a user and a password are required")
	}
	if strings.Contains(user, ":") {
		return nil, errors.New("auth: basic: the user must not contain ':'")
	}
	return &Basic{user: digestOf(user), password: digestOf(password)}, nil
}

// Verify implements [Verifier]. Failure reasons: [ReasonCredentialsMissing],
// [ReasonCredentialsMalformed], [ReasonCredentialsInvalid]; each carries
// [BasicChallenge].
func (b *Basic) Verify(r *http.Request, _ []byte) error {
	if r.Header.Get("Authorization") == "" {
		return Unauthorized(ReasonCredentialsMissing, BasicChallenge)
	}
	user, password, ok := r.BasicAuth()
	if !ok {
		return Unauthorized(ReasonCredentialsMalformed, BasicChallenge)
	}
	// Both compared, always: a right user with a wrong password takes as
	// long as a wrong user.
	u := digestOf(user)
	p := digestOf(password)
	userOK := anyDigest(u, []digest{b.user})
	passwordOK := anyDigest(p, []digest{b.password})
	if !userOK || !passwordOK {
		return Unauthorized(ReasonCredentialsInvalid, BasicChallenge)
	}
	return nil
}

// Precheck implements [Prechecker]: Basic reads no body, so this is the
// whole of Verify.
func (b *Basic) Precheck(r *http.Request) error { return b.Verify(r, nil) }

// Capabilities implements [Capable].
func (b *Basic) Capabilities() Capabilities { return Capabilities{HeadersOnly: true} }

// String describes b without its credentials.
func (b *Basic) String() string { return "basic(user=*** password=***)" }

// GoString is String, so that %#v does not print the digests.
func (b *Basic) GoString() string { return b.String() }
