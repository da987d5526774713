package auth

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Challenges of the token schemes. A failure of [NewBearer] or [NewJWT]
// carries BearerChallenge, with error="invalid_token" added (RFC 6750)
// when a token was sent but refused; one of [NewSplunk] carries
// SplunkChallenge.
const (
	BearerChallenge = `Bearer realm="` + Realm + `"`
	SplunkChallenge = `Splunk realm="` + Realm + `"`

	bearerInvalid = BearerChallenge + `, error="invalid_token"`
	bearerBadReq  = BearerChallenge + `, error="invalid_request"`
)

// DefaultQueryParam is the query parameter [NewQueryToken] reads by default.
const DefaultQueryParam = "token"

type tokenKind uint8

const (
	kindBearer tokenKind = iota
	kindHeader
	kindAuthHeader
	kindQuery
	kindSplunk
)

// Token verifies a static token, found where its constructor says:
// [NewBearer], [NewHeaderToken], [NewAuthHeader], [NewQueryToken] or
// [NewSplunk]. Several tokens may be active at once, for rotation; all are
// compared, in constant time. It is safe for concurrent use.
type Token struct {
	kind   tokenKind
	name   string // the header or query parameter
	tokens []digest
}

func newToken(kind tokenKind, name string, tokens []string) (*Token, error) {
	trimmed := make([]string, len(tokens))
	for i, t := range tokens {
		trimmed[i] = strings.TrimSpace(t)
	}
	t := &Token{kind: kind, name: name, tokens: digests(trimmed)}
	if len(t.tokens) == 0 {
		return nil, errNoToken
	}
	return t, nil
}

// NewBearer returns a verifier of "Authorization: Bearer <token>" (the
// scheme name in any case) against static tokens.
func NewBearer(tokens []string) (*Token, error) { return newToken(kindBearer, "", tokens) }

// NewHeaderToken returns a verifier of a token sent as the whole value of
// the named header (e.g. X-Api-Token: <token>).
func NewHeaderToken(header string, tokens []string) (*Token, error) {
	header = strings.TrimSpace(header)
	if header == "" || strings.ContainsAny(header, " \t:") {
		return nil, fmt.Errorf("auth: header: %q is not a header name", header)
	}
	if strings.EqualFold(header, "Authorization") {
		return newToken(kindAuthHeader, "", tokens)
	}
	return newToken(kindHeader, http.CanonicalHeaderKey(header), tokens)
}

// NewAuthHeader returns a verifier of a token that is the whole
// Authorization value, whatever scheme it names (e.g. "Token abc" or "abc").
func NewAuthHeader(tokens []string) (*Token, error) { return newToken(kindAuthHeader, "", tokens) }

// NewQueryToken returns a verifier of a token in the named query parameter
// ("" means [DefaultQueryParam]). The first value of the parameter counts,
// as with url.Values.Get. The URL, and so the token, ends up in the access
// logs of every proxy on the way: prefer a header where the sender can.
func NewQueryToken(param string, tokens []string) (*Token, error) {
	param = strings.TrimSpace(param)
	if param == "" {
		param = DefaultQueryParam
	}
	return newToken(kindQuery, param, tokens)
}

// NewSplunk returns a verifier of a Splunk HEC token:
// "Authorization: Splunk <token>".
func NewSplunk(tokens []string) (*Token, error) { return newToken(kindSplunk, "", tokens) }

// Verify implements [Verifier]. Failure reasons:
// [ReasonCredentialsMissing] (nothing where the token belongs),
// [ReasonCredentialsMalformed] (an Authorization header of another scheme,
// or an empty token), [ReasonCredentialsInvalid].
func (t *Token) Verify(r *http.Request, _ []byte) error {
	tok, reason := t.extract(r)
	if reason != "" {
		return Unauthorized(reason, t.challenge(reason))
	}
	if !anyDigest(digestOf(tok), t.tokens) {
		return Unauthorized(ReasonCredentialsInvalid, t.challenge(ReasonCredentialsInvalid))
	}
	return nil
}

// Precheck implements [Prechecker]: a token scheme reads no body, so this
// is the whole of Verify.
func (t *Token) Precheck(r *http.Request) error { return t.Verify(r, nil) }

// Capabilities implements [Capable].
func (t *Token) Capabilities() Capabilities {
	return Capabilities{HeadersOnly: true, Splunk: t.kind == kindSplunk}
}

// extract returns the token of r, or the reason there is none.
func (t *Token) extract(r *http.Request) (string, string) {
	switch t.kind {
	case kindBearer:
		return schemeToken(r.Header.Get("Authorization"), "Bearer")
	case kindSplunk:
		return schemeToken(r.Header.Get("Authorization"), "Splunk")
	case kindAuthHeader:
		if v := r.Header.Get("Authorization"); v != "" {
			return v, ""
		}
	case kindHeader:
		if v := strings.TrimSpace(r.Header.Get(t.name)); v != "" {
			return v, ""
		}
	case kindQuery:
		if r.URL != nil {
			if v, ok := queryValue(r.URL.RawQuery, t.name); ok && v != "" {
				return v, ""
			}
		}
	}
	return "", ReasonCredentialsMissing
}

func (t *Token) challenge(reason string) string {
	switch t.kind {
	case kindBearer:
		return bearerChallenge(reason)
	case kindSplunk:
		return SplunkChallenge
	}
	return ""
}

func bearerChallenge(reason string) string {
	switch reason {
	case ReasonCredentialsMissing:
		return BearerChallenge
	case ReasonCredentialsMalformed:
		return bearerBadReq
	}
	return bearerInvalid
}

// String describes t without its tokens.
func (t *Token) String() string {
	switch t.kind {
	case kindBearer:
		return fmt.Sprintf("bearer(tokens=%d)", len(t.tokens))
	case kindHeader:
		return fmt.Sprintf("header(name=%s tokens=%d)", t.name, len(t.tokens))
	case kindAuthHeader:
		return fmt.Sprintf("authheader(tokens=%d)", len(t.tokens))
	case kindQuery:
		return fmt.Sprintf("querystring(param=%s tokens=%d)", t.name, len(t.tokens))
	default:
		return fmt.Sprintf("splunk(tokens=%d)", len(t.tokens))
	}
}

// GoString is String, so that %#v does not print the digests.
func (t *Token) GoString() string { return t.String() }

// schemeToken returns the credentials of an Authorization value of the
// given scheme (case-insensitive, RFC 9110), or the reason there are none.
func schemeToken(v, scheme string) (string, string) {
	if v == "" {
		return "", ReasonCredentialsMissing
	}
	if len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) || (v[len(scheme)] != ' ' && v[len(scheme)] != '\t') {
		return "", ReasonCredentialsMalformed
	}
	tok := strings.TrimSpace(v[len(scheme)+1:])
	if tok == "" {
		return "", ReasonCredentialsMalformed
	}
	return tok, ""
}

// queryValue returns the first value of param in the raw query, exactly as
// url.ParseQuery(raw).Get(param) would (FuzzQueryValue checks that), but
// without building the whole map for each request.
func queryValue(raw, param string) (string, bool) {
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if strings.Contains(pair, ";") || pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		if k != param && !strings.ContainsAny(k, "%+") {
			continue // cheap skip of a plainly different key
		}
		key, err := url.QueryUnescape(k)
		if err != nil || key != param {
			continue
		}
		val, err := url.QueryUnescape(v)
		if err != nil {
			continue
		}
		return val, true
	}
	return "", false
}
