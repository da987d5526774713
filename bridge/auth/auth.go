package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// Verifier authenticates one request. body is the raw request body, read
// once by the handler; Verify must not modify it. Implementations are safe
// for concurrent use.
type Verifier interface {
	// Verify returns nil when the request is authentic, else an error that
	// wraps [ErrUnauthorized] or [ErrForbidden] (usually an [*Error]).
	Verify(r *http.Request, body []byte) error
}

// VerifierFunc adapts a function to a [Verifier].
type VerifierFunc func(r *http.Request, body []byte) error

// Verify calls f(r, body).
func (f VerifierFunc) Verify(r *http.Request, body []byte) error { return f(r, body) }

// Sentinel errors every failure wraps; the handler maps them to 401 and 403.
var (
	ErrUnauthorized = errors.New("auth: unauthorized")
	ErrForbidden    = errors.New("auth: forbidden")
)

// The reasons a request is refused: a small fixed set of snake_case
// strings, safe to show to the sender and to use as a metric label.
// [Reasons] lists them all.
const (
	// ReasonUnauthorized is the reason of an error that is not an [*Error].
	ReasonUnauthorized = "unauthorized"

	// ReasonSignatureMissing: no signature header.
	ReasonSignatureMissing = "signature_missing"
	// ReasonSignatureMalformed: the signature is not of the configured
	// encoding, size or prefix.
	ReasonSignatureMalformed = "signature_malformed"
	// ReasonSignatureMismatch: no configured secret produced the signature.
	ReasonSignatureMismatch = "signature_mismatch"

	// ReasonTimestampMissing: the configured timestamp header is absent.
	ReasonTimestampMissing = "timestamp_missing"
	// ReasonTimestampMalformed: the timestamp is not whole Unix seconds.
	ReasonTimestampMalformed = "timestamp_malformed"
	// ReasonTimestampOutOfWindow: the timestamp is further from now than
	// the tolerance.
	ReasonTimestampOutOfWindow = "timestamp_out_of_window"
	// ReasonDeliveryIDMissing: the configured delivery id header is absent.
	ReasonDeliveryIDMissing = "delivery_id_missing"
	// ReasonReplayed: this delivery was already accepted within the window.
	ReasonReplayed = "replayed"

	// ReasonCredentialsMissing: no user/password or token where the scheme
	// looks for one.
	ReasonCredentialsMissing = "credentials_missing"
	// ReasonCredentialsMalformed: an Authorization header of another
	// scheme, or one that does not parse.
	ReasonCredentialsMalformed = "credentials_malformed"
	// ReasonCredentialsInvalid: wrong user/password or token.
	ReasonCredentialsInvalid = "credentials_invalid"

	// ReasonTokenInvalid: a JWT that does not parse, has a bad signature or
	// an algorithm that is not allowed.
	ReasonTokenInvalid = "token_invalid"
	// ReasonTokenExpired: a JWT past its exp (plus leeway).
	ReasonTokenExpired = "token_expired"
	// ReasonTokenNotYetValid: a JWT before its nbf or iat (minus leeway).
	ReasonTokenNotYetValid = "token_not_yet_valid"
	// ReasonTokenClaimsInvalid: a JWT of another issuer or audience, or
	// without exp.
	ReasonTokenClaimsInvalid = "token_claims_invalid"
	// ReasonTokenKeyUnknown: a JWT whose key id (and algorithm) the JWKS
	// does not hold, even after a refetch.
	ReasonTokenKeyUnknown = "token_key_unknown"

	// ReasonHeaderMissing: a required custom header is absent.
	ReasonHeaderMissing = "header_missing"
	// ReasonHeaderMismatch: a required custom header has another value.
	ReasonHeaderMismatch = "header_mismatch"

	// ReasonIPNotAllowed: the client address is outside the allowlist (403).
	ReasonIPNotAllowed = "ip_not_allowed"
)

// Reasons returns every reason this package gives, so that a metric can
// be initialised for each label value. The caller may modify the slice.
func Reasons() []string {
	return []string{
		ReasonUnauthorized,
		ReasonSignatureMissing, ReasonSignatureMalformed, ReasonSignatureMismatch,
		ReasonTimestampMissing, ReasonTimestampMalformed, ReasonTimestampOutOfWindow,
		ReasonDeliveryIDMissing, ReasonReplayed,
		ReasonCredentialsMissing, ReasonCredentialsMalformed, ReasonCredentialsInvalid,
		ReasonTokenInvalid, ReasonTokenExpired, ReasonTokenNotYetValid,
		ReasonTokenClaimsInvalid, ReasonTokenKeyUnknown,
		ReasonHeaderMissing, ReasonHeaderMismatch,
		ReasonIPNotAllowed,
	}
}

// Error is an authentication failure. Reason is short, safe to show to the
// sender and to use as a metric label: it never holds a secret, a token, a
// signature or a password.
type Error struct {
	Reason    string // one of the Reason constants, e.g. "signature_mismatch"
	Challenge string // a WWW-Authenticate value, or ""
	forbidden bool
}

func (e *Error) Error() string { return "auth: " + e.Reason }

// Unwrap returns ErrForbidden or ErrUnauthorized.
func (e *Error) Unwrap() error {
	if e.forbidden {
		return ErrForbidden
	}
	return ErrUnauthorized
}

// Unauthorized returns an [*Error] for a 401 answer.
func Unauthorized(reason, challenge string) *Error {
	return &Error{Reason: reason, Challenge: challenge}
}

// Forbidden returns an [*Error] for a 403 answer.
func Forbidden(reason string) *Error { return &Error{Reason: reason, forbidden: true} }

// Reason is the safe reason of err, for answers, logs and metric labels.
func Reason(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ReasonUnauthorized
}

// Challenge is the WWW-Authenticate value err carries, or "".
func Challenge(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Challenge
	}
	return ""
}

// Realm is the realm of every WWW-Authenticate challenge.
const Realm = "mistbridge"

// digest is what a token or password is compared as: comparing SHA-256
// digests takes the same time whatever the lengths, so a wrong guess does
// not tell the length of the secret either.
type digest [sha256.Size]byte

func digestOf(s string) digest { return sha256.Sum256([]byte(s)) }

// anyDigest reports whether got equals one of want, looking at every one.
func anyDigest(got digest, want []digest) bool {
	ok := 0
	for i := range want {
		ok |= subtle.ConstantTimeCompare(got[:], want[i][:])
	}
	return ok == 1
}

// digests returns the digests of the non-empty strings of in, deduplicated.
func digests(in []string) []digest {
	var out []digest
	seen := map[digest]bool{}
	for _, s := range in {
		if s == "" {
			continue
		}
		d := digestOf(s)
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

var (
	errNoSecret = errors.New("auth: no secret configured")
	errNoToken  = errors.New("auth: no token configured")
)

// Capabilities is what a verifier declares about itself, so that the
// handler can plan a request without knowing the verifier's type. The zero
// value is the careful answer for an unknown verifier: it reads the body,
// it is not Splunk's, and it has nothing to check before the body.
type Capabilities struct {
	// HeadersOnly: the scheme decides from the request line and headers
	// alone (a password, a token, a JWT, none), so [Precheck] is the whole
	// check. False means it reads the body (an HMAC signature does).
	HeadersOnly bool
	// Splunk: the scheme is Splunk HEC's token ([NewSplunk]), so the HEC
	// endpoints may be served with it.
	Splunk bool
}

// Capable is a verifier that declares its [Capabilities]. Every verifier
// and wrapper of this package implements it; a wrapper declares what the
// verifier it wraps declares.
type Capable interface {
	Verifier
	Capabilities() Capabilities
}

// Prechecker is a verifier that can refuse a request from its request line
// and headers alone, before the body is read. Precheck returns nil or an
// error Verify would also return for that request (same sentinel, same
// reason): it never refuses a request Verify accepts. Verify still does
// every check, so a Prechecker stays correct when Precheck is not called.
type Prechecker interface {
	Verifier
	Precheck(r *http.Request) error
}

// Committer is a verifier that remembers deliveries once they succeed
// ([Replay] does; a wrapper passes Commit on to the verifier it wraps).
type Committer interface {
	Verifier
	Commit(r *http.Request)
}

// CapabilitiesOf returns what v declares, or the zero [Capabilities] when
// v is not [Capable].
func CapabilitiesOf(v Verifier) Capabilities {
	if c, ok := v.(Capable); ok {
		return c.Capabilities()
	}
	return Capabilities{}
}

// Precheck runs every check of v that needs no body: the IP allowlist, the
// required headers, the presence and form of an HMAC scheme's signature
// (and its timestamp and delivery id), and the whole check of a scheme
// that reads no body (token, basic, jwt, none). It returns nil, or an
// error wrapping [ErrUnauthorized] or [ErrForbidden] (an [*Error]) that
// Verify would return too. The handler calls it before it reserves room
// for the body, so an unauthenticated sender cannot hold any; it still
// calls Verify with the body after, unless [NeedsBody] reports false (then
// Precheck was the whole check).
//
// A verifier that is neither a [Prechecker] nor declares HeadersOnly has
// nothing checked here (nil); one that declares HeadersOnly without a
// Precheck method is verified with a nil body.
func Precheck(v Verifier, r *http.Request) error {
	if p, ok := v.(Prechecker); ok {
		return p.Precheck(r)
	}
	if CapabilitiesOf(v).HeadersOnly {
		return v.Verify(r, nil)
	}
	return nil
}

// Commit tells v that r was answered 2xx, so replay protection ([Replay])
// remembers its delivery from now on. The handler calls it after a
// successful answer, never before: a request that failed may be sent
// again. It does nothing for a verifier that is not a [Committer].
func Commit(v Verifier, r *http.Request) {
	if c, ok := v.(Committer); ok {
		c.Commit(r)
	}
}

// NeedsBody reports whether v's scheme reads the body (an HMAC signature
// does; a password or a token does not), from its declared
// [Capabilities]: a verifier that declares nothing is assumed to read it.
// When it does not, [Precheck] is the whole check.
func NeedsBody(v Verifier) bool { return !CapabilitiesOf(v).HeadersOnly }

// IsSplunk reports whether the scheme of v is Splunk HEC's token
// ([NewSplunk]), so that the HEC endpoints may be served with it.
func IsSplunk(v Verifier) bool { return CapabilitiesOf(v).Splunk }

// wrapper is a verifier around another, for [Scheme] only: the handler
// learns what it needs from [Capabilities], never by unwrapping.
type wrapper interface{ unwrap() Verifier }

// Scheme returns the scheme verifier inside v, with the wrappers of this
// package ([IPAllow], [RequireHeaders], [Replay] and what
// [Config.Verifier] returns) taken off: a [*Mist], [*HMAC], [*Basic],
// [*Token], [*JWT], [*None], or whatever v is when it is none of those.
// It is for descriptions and tests; decisions use [CapabilitiesOf].
func Scheme(v Verifier) Verifier {
	for {
		w, ok := v.(wrapper)
		if !ok {
			return v
		}
		v = w.unwrap()
	}
}

// closeNext closes v when it holds resources (a [JWT] does).
func closeNext(v Verifier) error {
	if c, ok := v.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// describe renders a verifier for String and GoString without its secrets.
func describe(v any) string {
	if s, ok := v.(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprintf("%T", v)
}
