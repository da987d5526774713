package auth

import (
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"
)

// Types lists the accepted values of MISTBRIDGE_AUTH_TYPE.
var Types = []string{"mist", "hmac", "basic", "bearer", "jwt", "header", "authheader", "querystring", "splunk", "none"}

// envPrefix is the prefix the caller parses Config with; messages name the
// variables in full.
const envPrefix = "MISTBRIDGE_"

// Config is how the environment configures the default receiver's
// authentication (every variable is prefixed MISTBRIDGE_; the tags leave
// the prefix to the caller). The zero value of a field means its
// documented default, so a Config built in code needs no envDefault. It
// never prints its secrets: see [Config.LogValue] and [Config.String].
type Config struct {
	// Type is the scheme: one of [Types]. Empty means "mist" when
	// WebhookSecret is set, else [Config.Verifier] fails.
	Type string `env:"AUTH_TYPE" spec:"authType"`
	// WebhookSecret holds the HMAC secrets of mist and hmac,
	// comma-separated and trimmed; several may be active at once while a
	// secret is rotated.
	WebhookSecret []string `env:"WEBHOOK_SECRET" envSeparator:"," spec:"secret"`

	// HMACHeader is the signature header of hmac. Required for hmac.
	HMACHeader string `env:"AUTH_HMAC_HEADER" spec:"hmacHeader"`
	// HMACAlgorithm is sha1, sha256 or sha512. The default is sha256.
	HMACAlgorithm string `env:"AUTH_HMAC_ALGORITHM" envDefault:"sha256" spec:"hmacAlgorithm"`
	// HMACEncoding is hex or base64. The default is hex.
	HMACEncoding string `env:"AUTH_HMAC_ENCODING" envDefault:"hex" spec:"hmacEncoding"`
	// HMACPrefix, when set, must start the signature (e.g. "sha256=").
	HMACPrefix string `env:"AUTH_HMAC_PREFIX" spec:"hmacPrefix"`
	// HMACTemplate is the signed content, with {body}, {timestamp} and {id}
	// (see [HMACOptions.Template]). The default is {body}.
	HMACTemplate string `env:"AUTH_HMAC_TEMPLATE" envDefault:"{body}" spec:"hmacTemplate"`
	// HMACTimestampHeader carries the signed Unix time of sending (e.g.
	// X-Slack-Request-Timestamp). The default is none.
	HMACTimestampHeader string `env:"AUTH_HMAC_TIMESTAMP_HEADER" spec:"hmacTimestampHeader"`
	// HMACTolerance is how far that timestamp may be from now. The default
	// is 5m.
	HMACTolerance time.Duration `env:"AUTH_HMAC_TOLERANCE" envDefault:"5m" spec:"hmacTolerance"`
	// HMACIDHeader carries the delivery id (e.g. X-GitHub-Delivery,
	// webhook-id). The default is none.
	HMACIDHeader string `env:"AUTH_HMAC_ID_HEADER" spec:"hmacIdHeader"`

	// Username and Password are basic's credentials. Both required for basic.
	Username string `env:"AUTH_USERNAME" spec:"userName"`
	Password string `env:"AUTH_PASSWORD" spec:"password"`

	// Token holds the tokens of bearer, header, authheader, querystring and
	// splunk, comma-separated and trimmed (several for rotation).
	Token []string `env:"AUTH_TOKEN" envSeparator:"," spec:"token"`
	// Header names the header that carries the token of header. Required
	// for header.
	Header string `env:"AUTH_HEADER" spec:"header"`
	// QueryParam names the query parameter of querystring. The default is
	// token.
	QueryParam string `env:"AUTH_QUERY_PARAM" envDefault:"token" spec:"queryParam"`

	// JWKSURL, JWTIssuer and JWTAudience (comma-separated: any of them) are
	// required for jwt.
	JWKSURL     string   `env:"AUTH_JWKS_URL" spec:"jwksUrl"`
	JWTIssuer   string   `env:"AUTH_JWT_ISSUER" spec:"issuer"`
	JWTAudience []string `env:"AUTH_JWT_AUDIENCE" envSeparator:"," spec:"audience"`
	// JWTAlgorithms are the allowed algorithms, from [JWTAlgorithms]. The
	// default is RS256,ES256.
	JWTAlgorithms []string `env:"AUTH_JWT_ALGORITHMS" envSeparator:"," envDefault:"RS256,ES256" spec:"jwtAlgorithms"`
	// JWTLeeway is the clock skew allowed on exp, nbf and iat. The default
	// is 60s.
	JWTLeeway time.Duration `env:"AUTH_JWT_LEEWAY" envDefault:"60s" spec:"jwtLeeway"`

	// AllowCIDRs, when set, is the source-IP allowlist (CIDRs or
	// addresses, comma-separated); others get 403. The default allows all.
	AllowCIDRs []string `env:"AUTH_ALLOW_CIDRS" envSeparator:"," spec:"allowCidrs"`
	// TrustedProxies are the proxies whose X-Forwarded-For is believed
	// (CIDRs or addresses). Needs AllowCIDRs. The default is none.
	TrustedProxies []string `env:"AUTH_TRUSTED_PROXIES" envSeparator:"," spec:"trustedProxies"`
	// RequireHeaders are custom headers every request must carry, as
	// Name=value, comma-separated. The values are secrets.
	RequireHeaders []string `env:"AUTH_REQUIRE_HEADERS" envSeparator:"," spec:"requireHeaders"`

	// ReplayWindow is how long hmac remembers an accepted delivery when it
	// has HMACIDHeader or HMACTimestampHeader; at least twice
	// HMACTolerance is used. The default is 10m.
	ReplayWindow time.Duration `env:"AUTH_REPLAY_WINDOW" envDefault:"10m" spec:"replayWindow"`
	// ReplaySize bounds how many deliveries are remembered. The default is
	// 100000.
	ReplaySize int `env:"AUTH_REPLAY_SIZE" envDefault:"100000" spec:"replaySize"`
}

// Spec returns c as the transport-neutral [Spec] (lists not yet trimmed:
// the Spec trims them).
func (c *Config) Spec() Spec {
	return Spec{
		Type:                c.Type,
		Secret:              c.WebhookSecret,
		UserName:            c.Username,
		Password:            c.Password,
		Token:               c.Token,
		Header:              c.Header,
		QueryParam:          c.QueryParam,
		HMACHeader:          c.HMACHeader,
		HMACAlgorithm:       c.HMACAlgorithm,
		HMACEncoding:        c.HMACEncoding,
		HMACPrefix:          c.HMACPrefix,
		HMACTemplate:        c.HMACTemplate,
		HMACTimestampHeader: c.HMACTimestampHeader,
		HMACTolerance:       c.HMACTolerance,
		HMACIDHeader:        c.HMACIDHeader,
		JWKSURL:             c.JWKSURL,
		Issuer:              c.JWTIssuer,
		Audience:            c.JWTAudience,
		JWTAlgorithms:       c.JWTAlgorithms,
		JWTLeeway:           c.JWTLeeway,
		AllowCIDRs:          c.AllowCIDRs,
		TrustedProxies:      c.TrustedProxies,
		RequireHeaders:      c.RequireHeaders,
		ReplayWindow:        c.ReplayWindow,
		ReplaySize:          c.ReplaySize,
	}
}

// VariableOf returns the environment variable of a [Spec] field (a JSON
// name such as "secret"), e.g. MISTBRIDGE_WEBHOOK_SECRET, or the field
// itself when no variable sets it.
func VariableOf(field string) string {
	if v, ok := variableOf()[field]; ok {
		return v
	}
	return field
}

// variableOf maps Spec field names to variables, read from Config's tags
// so that the tags stay the one place a variable is named.
var variableOf = sync.OnceValue(func() map[string]string {
	m := map[string]string{}
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		f := t.Field(i)
		if field := f.Tag.Get("spec"); field != "" {
			m[field] = envPrefix + f.Tag.Get("env")
		}
	}
	return m
})

// Validate checks c without building anything or touching the network.
// The error joins one [*FieldError] per problem, each naming its variable
// and the accepted values; it never quotes a secret. It is [Spec]'s
// validation with the fields named by their variables.
func (c *Config) Validate() error {
	s := c.Spec()
	_, errs := s.check(VariableOf)
	return joinFieldErrors(errs)
}

// Verifier validates c and builds the default receiver's verifier: the
// scheme, wrapped in replay protection (hmac with a delivery id or a
// timestamp), the required headers and the IP allowlist, in the order they
// run: allowlist, headers, scheme, replay. Errors name the variables. It
// logs a warning for none, for an http:// JWKS and for variables the
// chosen type ignores. log may be nil.
//
// A jwt verifier fetches the JWKS (waiting at most 10s) and refreshes it in
// the background until the returned verifier's Close is called (it
// implements io.Closer whatever the type).
func (c *Config) Verifier(log *slog.Logger) (Verifier, error) {
	s := c.Spec()
	return s.build(log, VariableOf, "auth: variable ignored by this "+envPrefix+"AUTH_TYPE", "variable")
}

// closer gives every verifier Config builds a Close, so the caller can
// always stop a JWKS refresh without knowing the type.
type closer struct{ Verifier }

func (c closer) unwrap() Verifier { return c.Verifier }

// Precheck, Capabilities and Commit are the wrapped verifier's.
func (c closer) Precheck(r *http.Request) error { return Precheck(c.Verifier, r) }
func (c closer) Capabilities() Capabilities     { return CapabilitiesOf(c.Verifier) }
func (c closer) Commit(r *http.Request)         { Commit(c.Verifier, r) }
func (c closer) Close() error                   { return closeNext(c.Verifier) }
func (c closer) String() string                 { return describe(c.Verifier) }
func (c closer) GoString() string               { return describe(c.Verifier) }

func uses(parts []part, k partKind) bool {
	return slices.ContainsFunc(parts, func(p part) bool { return p.kind == k })
}

func isDefault(v, def string) bool {
	v = strings.TrimSpace(v)
	return v == "" || strings.EqualFold(v, def)
}

// LogValue keeps secrets out of structured logs: it shows which are set
// and how many, never their values.
func (c Config) LogValue() slog.Value { return c.Spec().LogValue() }

// String is LogValue as text, so that printing a Config with %v, %+v or
// %#v shows no secret.
func (c Config) String() string { return c.LogValue().String() }

// GoString is String.
func (c Config) GoString() string { return c.String() }

func trimAll(in []string) []string {
	var out []string
	for _, s := range in {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
