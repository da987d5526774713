package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// Defaults of [JWTOptions].
const (
	DefaultLeeway             = 60 * time.Second
	DefaultJWKSRefresh        = time.Hour
	DefaultUnknownKIDInterval = time.Minute
	jwksTimeout               = 10 * time.Second
)

// DefaultJWTAlgorithms returns the algorithms a [JWT] accepts by default:
// RS256 and ES256.
func DefaultJWTAlgorithms() []string { return []string{"RS256", "ES256"} }

// JWTAlgorithms lists the algorithms a [JWT] can be allowed: the
// asymmetric ones. "none" and the HMAC algorithms (HS256...) are refused:
// keys from a JWKS are public, and a token "signed" with a public key as an
// HMAC secret would prove nothing.
var JWTAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// JWTOptions configure a [JWT] verifier. The zero value of each optional
// field means its documented default.
type JWTOptions struct {
	// JWKSURL is where the issuer publishes its keys (https://; http:// is
	// accepted with a warning). Required.
	JWKSURL string
	// Issuer is the required "iss". Required.
	Issuer string
	// Audience lists the accepted "aud" values; a token must name one of
	// them. At least one is required.
	Audience []string
	// Algorithms allowed, from [JWTAlgorithms]. The default is
	// [DefaultJWTAlgorithms].
	Algorithms []string
	// Leeway is the clock skew allowed on exp, nbf and iat. The default is
	// [DefaultLeeway] (60s).
	Leeway time.Duration
	// RefreshInterval is how often the JWKS is fetched again in the
	// background. The default is [DefaultJWKSRefresh] (1h).
	RefreshInterval time.Duration
	// UnknownKIDInterval is the least time between two fetches caused by a
	// token whose key id the cached JWKS lacks (the issuer rotated its
	// keys). The default is [DefaultUnknownKIDInterval] (1m); it keeps a
	// flood of made-up key ids from hammering the issuer.
	UnknownKIDInterval time.Duration
	// HTTPClient fetches the JWKS. The default has a 10s timeout.
	HTTPClient *http.Client
	// Log receives the warnings (http:// JWKS, failed fetches). The default
	// discards them.
	Log *slog.Logger
	// Now returns the current time. The default is time.Now.
	Now func() time.Time
}

// JWT verifies a JSON Web Token sent as "Authorization: Bearer <jwt>", as
// Mist's OAuth2 webhook type sends the access token it got from the
// customer's identity provider. The signature is checked with a key from
// the issuer's JWKS (cached, refetched in the background and when a token
// names an unknown key id, at most once per UnknownKIDInterval); then exp
// (required), nbf, iat, iss and aud. It is safe for concurrent use. Build
// it with [NewJWT]; [JWT.Close] stops its background refresh.
type JWT struct {
	jwksURL  string // redacted, for String
	issuer   string
	audience []string
	algs     []string
	leeway   time.Duration
	parser   *jwt.Parser
	keys     keyfunc.Keyfunc
	cancel   context.CancelFunc
	once     sync.Once
}

// NewJWT fetches the JWKS once (a failure is logged, not returned: the
// issuer may come up later, and a token with an unknown key id makes the
// verifier try again) and returns the verifier. Its background refresh
// runs until ctx is done or [JWT.Close] is called. It fails when o is
// incomplete or allows an algorithm outside [JWTAlgorithms].
func NewJWT(ctx context.Context, o JWTOptions) (*JWT, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u, err := url.Parse(strings.TrimSpace(o.JWKSURL))
	switch {
	case strings.TrimSpace(o.JWKSURL) == "":
		return nil, errors.New("auth: jwt: the JWKS URL is required")
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		return nil, errors.New("auth: jwt: the JWKS URL must be an absolute https:// (or http://) URL")
	}
	shown := redactURL(u)
	if u.Scheme == "http" {
		log.Warn("auth: the JWKS URL is http://: anyone on the path can swap the keys and forge tokens; use https://", "jwks_url", shown)
	}
	issuer := strings.TrimSpace(o.Issuer)
	if issuer == "" {
		return nil, errors.New("auth: jwt: the issuer is required")
	}
	var aud []string
	for _, a := range o.Audience {
		if a = strings.TrimSpace(a); a != "" {
			aud = append(aud, a)
		}
	}
	if len(aud) == 0 {
		return nil, errors.New("auth: jwt: at least one audience is required")
	}
	algs, err := jwtAlgorithms(o.Algorithms)
	if err != nil {
		return nil, err
	}
	leeway := o.Leeway
	switch {
	case leeway < 0:
		return nil, errors.New("auth: jwt: the leeway must not be negative")
	case leeway == 0:
		leeway = DefaultLeeway
	}
	refresh := o.RefreshInterval
	if refresh <= 0 {
		refresh = DefaultJWKSRefresh
	}
	unknown := o.UnknownKIDInterval
	if unknown <= 0 {
		unknown = DefaultUnknownKIDInterval
	}
	client := o.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: jwksTimeout}
	}

	ctx, cancel := context.WithCancel(ctx)
	keys, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{u.String()}, keyfunc.Override{
		Client:      client,
		HTTPTimeout: jwksTimeout,
		// One fetch per interval for unknown key ids; a token waits for it
		// at most jwksTimeout, and is refused at once when the next fetch
		// is further away than that.
		RefreshUnknownKID: rate.NewLimiter(rate.Every(unknown), 1),
		RateLimitWaitMax:  jwksTimeout,
		RefreshInterval:   refresh,
		RefreshErrorHandlerFunc: func(string) func(context.Context, error) {
			return func(_ context.Context, err error) {
				// The HTTP client's errors quote the URL, query string and all.
				msg := strings.ReplaceAll(err.Error(), u.String(), shown)
				log.Warn("auth: fetching the JWKS failed", "jwks_url", shown, "err", msg)
			}
		},
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("auth: jwt: %w", err)
	}
	popts := []jwt.ParserOption{
		jwt.WithValidMethods(algs),
		jwt.WithLeeway(leeway),
		jwt.WithIssuer(issuer),
		jwt.WithAudience(aud...),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	}
	if o.Now != nil {
		popts = append(popts, jwt.WithTimeFunc(o.Now))
	}
	return &JWT{
		jwksURL:  shown,
		issuer:   issuer,
		audience: aud,
		algs:     algs,
		leeway:   leeway,
		parser:   jwt.NewParser(popts...),
		keys:     keys,
		cancel:   cancel,
	}, nil
}

// Verify implements [Verifier]. Failure reasons: [ReasonCredentialsMissing],
// [ReasonCredentialsMalformed], [ReasonTokenInvalid], [ReasonTokenExpired],
// [ReasonTokenNotYetValid], [ReasonTokenClaimsInvalid],
// [ReasonTokenKeyUnknown]; each carries a Bearer challenge. A token with an
// unknown key id may wait for one JWKS fetch (at most 10s, bounded also by
// the request's context).
func (j *JWT) Verify(r *http.Request, _ []byte) error {
	tok, reason := schemeToken(r.Header.Get("Authorization"), "Bearer")
	if reason != "" {
		return Unauthorized(reason, bearerChallenge(reason))
	}
	var claims jwt.RegisteredClaims
	if _, err := j.parser.ParseWithClaims(tok, &claims, j.keys.KeyfuncCtx(r.Context())); err != nil {
		return Unauthorized(jwtReason(err), bearerInvalid)
	}
	return nil
}

// Precheck implements [Prechecker]: a JWT is in a header, so this is the
// whole of Verify.
func (j *JWT) Precheck(r *http.Request) error { return j.Verify(r, nil) }

// Capabilities implements [Capable].
func (j *JWT) Capabilities() Capabilities { return Capabilities{HeadersOnly: true} }

// Close stops the background refresh of the JWKS. It returns nil; calling
// it again does nothing.
func (j *JWT) Close() error {
	j.once.Do(j.cancel)
	return nil
}

// String describes j (no token ever reaches it).
func (j *JWT) String() string {
	return fmt.Sprintf("jwt(jwks=%s issuer=%s audience=%s algorithms=%s leeway=%s)",
		j.jwksURL, j.issuer, strings.Join(j.audience, ","), strings.Join(j.algs, ","), j.leeway)
}

// GoString is String.
func (j *JWT) GoString() string { return j.String() }

// jwtReason maps an error of the JWT library to a reason. Claims errors
// come joined; the first match in this order wins.
func jwtReason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return ReasonTokenInvalid
	case errors.Is(err, jwkset.ErrKeyNotFound), errors.Is(err, jwt.ErrTokenUnverifiable):
		return ReasonTokenKeyUnknown
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return ReasonTokenInvalid
	case errors.Is(err, jwt.ErrTokenExpired):
		return ReasonTokenExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return ReasonTokenNotYetValid
	case errors.Is(err, jwt.ErrTokenInvalidIssuer), errors.Is(err, jwt.ErrTokenInvalidAudience),
		errors.Is(err, jwt.ErrTokenRequiredClaimMissing), errors.Is(err, jwt.ErrTokenInvalidClaims):
		return ReasonTokenClaimsInvalid
	}
	return ReasonTokenInvalid
}

// jwtAlgorithms checks a list of allowed algorithms against [JWTAlgorithms].
func jwtAlgorithms(in []string) ([]string, error) {
	var out []string
	for _, a := range in {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		i := slices.IndexFunc(JWTAlgorithms, func(k string) bool { return strings.EqualFold(k, a) })
		if i < 0 {
			if strings.EqualFold(a, "none") || strings.HasPrefix(strings.ToUpper(a), "HS") {
				return nil, fmt.Errorf("auth: jwt: algorithm %q is never allowed (unsigned, or an HMAC keyed with a public key): want some of %s", a, strings.Join(JWTAlgorithms, ","))
			}
			return nil, fmt.Errorf("auth: jwt: algorithm %q is not supported: want some of %s", a, strings.Join(JWTAlgorithms, ","))
		}
		if !slices.Contains(out, JWTAlgorithms[i]) {
			out = append(out, JWTAlgorithms[i])
		}
	}
	if len(out) == 0 {
		out = DefaultJWTAlgorithms()
	}
	return out, nil
}

// redactURL shows a URL without its password and query, which may hold
// credentials of the JWKS endpoint.
func redactURL(u *url.URL) string {
	c := *u
	c.RawQuery, c.ForceQuery, c.Fragment, c.RawFragment = "", false, "", ""
	return c.Redacted()
}
