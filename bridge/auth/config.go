package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
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
	Type string `env:"AUTH_TYPE"`
	// WebhookSecret holds the HMAC secrets of mist and hmac,
	// comma-separated and trimmed; several may be active at once while a
	// secret is rotated.
	WebhookSecret []string `env:"WEBHOOK_SECRET" envSeparator:","`

	// HMACHeader is the signature header of hmac. Required for hmac.
	HMACHeader string `env:"AUTH_HMAC_HEADER"`
	// HMACAlgorithm is sha1, sha256 or sha512. The default is sha256.
	HMACAlgorithm string `env:"AUTH_HMAC_ALGORITHM" envDefault:"sha256"`
	// HMACEncoding is hex or base64. The default is hex.
	HMACEncoding string `env:"AUTH_HMAC_ENCODING" envDefault:"hex"`
	// HMACPrefix, when set, must start the signature (e.g. "sha256=").
	HMACPrefix string `env:"AUTH_HMAC_PREFIX"`
	// HMACTemplate is the signed content, with {body}, {timestamp} and {id}
	// (see [HMACOptions.Template]). The default is {body}.
	HMACTemplate string `env:"AUTH_HMAC_TEMPLATE" envDefault:"{body}"`
	// HMACTimestampHeader carries the signed Unix time of sending (e.g.
	// X-Slack-Request-Timestamp). The default is none.
	HMACTimestampHeader string `env:"AUTH_HMAC_TIMESTAMP_HEADER"`
	// HMACTolerance is how far that timestamp may be from now. The default
	// is 5m.
	HMACTolerance time.Duration `env:"AUTH_HMAC_TOLERANCE" envDefault:"5m"`
	// HMACIDHeader carries the delivery id (e.g. X-GitHub-Delivery,
	// webhook-id). The default is none.
	HMACIDHeader string `env:"AUTH_HMAC_ID_HEADER"`

	// Username and Password are basic's credentials. Both required for basic.
	Username string `env:"AUTH_USERNAME"`
	Password string `env:"AUTH_PASSWORD"`

	// Token holds the tokens of bearer, header, authheader, querystring and
	// splunk, comma-separated and trimmed (several for rotation).
	Token []string `env:"AUTH_TOKEN" envSeparator:","`
	// Header names the header that carries the token of header. Required
	// for header.
	Header string `env:"AUTH_HEADER"`
	// QueryParam names the query parameter of querystring. The default is
	// token.
	QueryParam string `env:"AUTH_QUERY_PARAM" envDefault:"token"`

	// JWKSURL, JWTIssuer and JWTAudience (comma-separated: any of them) are
	// required for jwt.
	JWKSURL     string   `env:"AUTH_JWKS_URL"`
	JWTIssuer   string   `env:"AUTH_JWT_ISSUER"`
	JWTAudience []string `env:"AUTH_JWT_AUDIENCE" envSeparator:","`
	// JWTAlgorithms are the allowed algorithms, from [JWTAlgorithms]. The
	// default is RS256,ES256.
	JWTAlgorithms []string `env:"AUTH_JWT_ALGORITHMS" envSeparator:"," envDefault:"RS256,ES256"`
	// JWTLeeway is the clock skew allowed on exp, nbf and iat. The default
	// is 60s.
	JWTLeeway time.Duration `env:"AUTH_JWT_LEEWAY" envDefault:"60s"`

	// AllowCIDRs, when set, is the source-IP allowlist (CIDRs or
	// addresses, comma-separated); others get 403. The default allows all.
	AllowCIDRs []string `env:"AUTH_ALLOW_CIDRS" envSeparator:","`
	// TrustedProxies are the proxies whose X-Forwarded-For is believed
	// (CIDRs or addresses). Needs AllowCIDRs. The default is none.
	TrustedProxies []string `env:"AUTH_TRUSTED_PROXIES" envSeparator:","`
	// RequireHeaders are custom headers every request must carry, as
	// Name=value, comma-separated. The values are secrets.
	RequireHeaders []string `env:"AUTH_REQUIRE_HEADERS" envSeparator:","`

	// ReplayWindow is how long hmac remembers an accepted delivery when it
	// has HMACIDHeader or HMACTimestampHeader; at least twice
	// HMACTolerance is used. The default is 10m.
	ReplayWindow time.Duration `env:"AUTH_REPLAY_WINDOW" envDefault:"10m"`
	// ReplaySize bounds how many deliveries are remembered. The default is
	// 100000.
	ReplaySize int `env:"AUTH_REPLAY_SIZE" envDefault:"100000"`
}

// Validate checks c without building anything or touching the network.
// The error lists every problem, each naming its variable and the accepted
// values; it never quotes a secret.
func (c *Config) Validate() error {
	_, err := c.check()
	return err
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
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	typ, err := c.check()
	if err != nil {
		return nil, err
	}
	for _, v := range c.ignored(typ) {
		log.Warn("auth: variable ignored by this MISTBRIDGE_AUTH_TYPE", "type", typ, "variable", v)
	}
	v, err := c.scheme(typ, log)
	if err != nil {
		return nil, err
	}
	if h, ok := v.(*HMAC); ok {
		if h.idHeader != "" || h.tsHeader != "" {
			window := max(c.ReplayWindow, 2*h.tolerance)
			if v, err = NewReplay(h, h.DeliveryKey, ReplayOptions{Window: window, Size: c.ReplaySize}); err != nil {
				return nil, err
			}
		}
	}
	if len(c.RequireHeaders) > 0 {
		want, _ := ParseHeaderList(c.RequireHeaders) // checked
		if v, err = NewRequireHeaders(v, want); err != nil {
			return nil, fmt.Errorf("%sAUTH_REQUIRE_HEADERS: %w", envPrefix, err)
		}
	}
	if len(trimAll(c.AllowCIDRs)) > 0 {
		allow, _ := ParsePrefixes(c.AllowCIDRs) // checked
		trusted, _ := ParsePrefixes(c.TrustedProxies)
		if v, err = NewIPAllow(v, allow, trusted); err != nil {
			return nil, err
		}
	}
	return closer{v}, nil
}

// closer gives every verifier Config builds a Close, so the caller can
// always stop a JWKS refresh without knowing the type.
type closer struct{ Verifier }

func (c closer) unwrap() Verifier { return c.Verifier }
func (c closer) Close() error     { return closeNext(c.Verifier) }
func (c closer) String() string   { return describe(c.Verifier) }
func (c closer) GoString() string { return describe(c.Verifier) }

// scheme builds the verifier of a checked type.
func (c *Config) scheme(typ string, log *slog.Logger) (Verifier, error) {
	secrets := trimAll(c.WebhookSecret)
	tokens := trimAll(c.Token)
	switch typ {
	case "mist":
		return NewMist(secrets)
	case "hmac":
		h, err := NewHMAC(c.hmacOptions(secrets))
		if err != nil {
			return nil, fmt.Errorf("%sAUTH_TYPE=hmac: %w", envPrefix, err)
		}
		return h, nil
	case "basic":
		return NewBasic(c.Username, c.Password)
	case "bearer":
		return NewBearer(tokens)
	case "header":
		return NewHeaderToken(c.Header, tokens)
	case "authheader":
		return NewAuthHeader(tokens)
	case "querystring":
		return NewQueryToken(c.QueryParam, tokens)
	case "splunk":
		return NewSplunk(tokens)
	case "jwt":
		j, err := NewJWT(context.Background(), JWTOptions{
			JWKSURL:    c.JWKSURL,
			Issuer:     c.JWTIssuer,
			Audience:   c.JWTAudience,
			Algorithms: c.JWTAlgorithms,
			Leeway:     c.JWTLeeway,
			Log:        log,
		})
		if err != nil {
			return nil, fmt.Errorf("%sAUTH_TYPE=jwt: %w", envPrefix, err)
		}
		return j, nil
	default: // "none", checked
		log.Warn("auth: MISTBRIDGE_AUTH_TYPE=none: webhooks are accepted from anyone who can reach the bridge",
			"ip_allowlist", len(trimAll(c.AllowCIDRs)) > 0, "required_headers", len(trimAll(c.RequireHeaders)))
		return NewNone(), nil
	}
}

func (c *Config) hmacOptions(secrets []string) HMACOptions {
	return HMACOptions{
		Header:          c.HMACHeader,
		Algorithm:       c.HMACAlgorithm,
		Encoding:        c.HMACEncoding,
		Prefix:          c.HMACPrefix,
		Template:        c.HMACTemplate,
		TimestampHeader: c.HMACTimestampHeader,
		Tolerance:       c.HMACTolerance,
		IDHeader:        c.HMACIDHeader,
		Secrets:         secrets,
	}
}

// check validates c and returns the effective type.
func (c *Config) check() (string, error) {
	secrets := trimAll(c.WebhookSecret)
	tokens := trimAll(c.Token)
	typ := strings.ToLower(strings.TrimSpace(c.Type))
	if typ == "" {
		if len(secrets) == 0 {
			hint := ""
			switch {
			case len(tokens) > 0:
				hint = " (" + envPrefix + "AUTH_TOKEN is set: choose bearer, header, authheader, querystring or splunk)"
			case c.Username != "" || c.Password != "":
				hint = " (" + envPrefix + "AUTH_USERNAME/PASSWORD are set: choose basic)"
			}
			return "", fmt.Errorf("%sWEBHOOK_SECRET is not set and %sAUTH_TYPE is empty: set the webhook's secret (as in Mist's webhook settings), or choose a %sAUTH_TYPE: %s%s",
				envPrefix, envPrefix, envPrefix, strings.Join(Types, ", "), hint)
		}
		typ = "mist"
	}
	if !slices.Contains(Types, typ) {
		return "", fmt.Errorf("%sAUTH_TYPE=%q is not supported: want one of %s", envPrefix, c.Type, strings.Join(Types, ", "))
	}
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	// The seed's rules: each type takes its own credentials and no others.
	type cred struct {
		name string
		set  bool
	}
	creds := []cred{
		{"WEBHOOK_SECRET", len(secrets) > 0},
		{"AUTH_USERNAME", c.Username != ""},
		{"AUTH_PASSWORD", c.Password != ""},
		{"AUTH_TOKEN", len(tokens) > 0},
	}
	var own []string
	switch typ {
	case "mist", "hmac":
		own = []string{"WEBHOOK_SECRET"}
	case "basic":
		own = []string{"AUTH_USERNAME", "AUTH_PASSWORD"}
	case "bearer", "header", "authheader", "querystring", "splunk":
		own = []string{"AUTH_TOKEN"}
	}
	for _, cr := range creds {
		mine := slices.Contains(own, cr.name)
		switch {
		case mine && !cr.set:
			add("%sAUTH_TYPE=%s needs %s%s%s", envPrefix, typ, envPrefix, cr.name, credHint(cr.name))
		case !mine && cr.set:
			add("%sAUTH_TYPE=%s takes no %s%s: unset it (credentials of another type)", envPrefix, typ, envPrefix, cr.name)
		}
	}

	switch typ {
	case "hmac":
		if strings.TrimSpace(c.HMACHeader) == "" {
			add("%sAUTH_TYPE=hmac needs %sAUTH_HMAC_HEADER (the signature header, e.g. X-Hub-Signature-256)", envPrefix, envPrefix)
		}
		for _, h := range []struct{ name, v string }{{"AUTH_HMAC_HEADER", c.HMACHeader}, {"AUTH_HMAC_TIMESTAMP_HEADER", c.HMACTimestampHeader}, {"AUTH_HMAC_ID_HEADER", c.HMACIDHeader}} {
			if strings.ContainsAny(strings.TrimSpace(h.v), " \t:") {
				add("%s%s=%q is not a header name", envPrefix, h.name, h.v)
			}
		}
		if strings.ContainsAny(c.HMACPrefix, " \t") {
			add("%sAUTH_HMAC_PREFIX=%q is invalid: no spaces (they separate signatures), e.g. sha256= or v1,", envPrefix, c.HMACPrefix)
		}
		if a := strings.ToLower(strings.TrimSpace(c.HMACAlgorithm)); a != "" {
			if _, _, err := hashOf(a); err != nil {
				add("%sAUTH_HMAC_ALGORITHM=%q is invalid: want sha1, sha256 or sha512", envPrefix, c.HMACAlgorithm)
			}
		}
		if e := strings.ToLower(strings.TrimSpace(c.HMACEncoding)); e != "" && e != "hex" && e != "base64" {
			add("%sAUTH_HMAC_ENCODING=%q is invalid: want hex or base64", envPrefix, c.HMACEncoding)
		}
		if c.HMACTolerance < 0 {
			add("%sAUTH_HMAC_TOLERANCE=%s is invalid: want a positive duration such as 5m", envPrefix, c.HMACTolerance)
		}
		tmpl := c.HMACTemplate
		if tmpl == "" {
			tmpl = "{body}"
		}
		if parts, err := parseTemplate(tmpl); err != nil {
			add("%sAUTH_HMAC_TEMPLATE=%q is invalid: want {body} once, with optional {timestamp} and {id} and literal text (e.g. v0:{timestamp}:{body})", envPrefix, c.HMACTemplate)
		} else {
			ts, id := strings.TrimSpace(c.HMACTimestampHeader) != "", strings.TrimSpace(c.HMACIDHeader) != ""
			switch {
			case uses(parts, partTimestamp) && !ts:
				add("%sAUTH_HMAC_TEMPLATE=%q signs {timestamp} but %sAUTH_HMAC_TIMESTAMP_HEADER is empty", envPrefix, c.HMACTemplate, envPrefix)
			case ts && !uses(parts, partTimestamp):
				add("%sAUTH_HMAC_TIMESTAMP_HEADER is set but %sAUTH_HMAC_TEMPLATE=%q does not sign {timestamp}, so a replay could carry a fresh one: want e.g. v0:{timestamp}:{body} (Slack) or {id}.{timestamp}.{body} (Standard Webhooks)", envPrefix, envPrefix, c.HMACTemplate)
			}
			if uses(parts, partID) && !id {
				add("%sAUTH_HMAC_TEMPLATE=%q signs {id} but %sAUTH_HMAC_ID_HEADER is empty", envPrefix, c.HMACTemplate, envPrefix)
			}
		}
		for i, sec := range secrets {
			if _, err := secretKey(sec); err != nil {
				add("%sWEBHOOK_SECRET: secret %d starts whsec_ but is not base64 after it (Standard Webhooks form)", envPrefix, i+1)
			}
		}
	case "basic":
		if strings.Contains(c.Username, ":") {
			add("%sAUTH_USERNAME must not contain ':' (Basic authentication cannot carry it)", envPrefix)
		}
	case "header":
		if h := strings.TrimSpace(c.Header); h == "" || strings.ContainsAny(h, " \t:") {
			add("%sAUTH_TYPE=header needs %sAUTH_HEADER, the header that carries the token (e.g. X-Api-Token)", envPrefix, envPrefix)
		}
	case "jwt":
		if strings.TrimSpace(c.JWKSURL) == "" {
			add("%sAUTH_TYPE=jwt needs %sAUTH_JWKS_URL (the issuer's https:// JWKS, e.g. https://idp.example.com/.well-known/jwks.json)", envPrefix, envPrefix)
		} else if u, err := url.Parse(strings.TrimSpace(c.JWKSURL)); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			add("%sAUTH_JWKS_URL is invalid: want an absolute https:// URL (http:// is accepted with a warning)", envPrefix)
		}
		if strings.TrimSpace(c.JWTIssuer) == "" {
			add("%sAUTH_TYPE=jwt needs %sAUTH_JWT_ISSUER (the iss every token must carry)", envPrefix, envPrefix)
		}
		if len(trimAll(c.JWTAudience)) == 0 {
			add("%sAUTH_TYPE=jwt needs %sAUTH_JWT_AUDIENCE (the aud every token must name; comma-separated for several)", envPrefix, envPrefix)
		}
		if _, err := jwtAlgorithms(c.JWTAlgorithms); err != nil {
			add("%sAUTH_JWT_ALGORITHMS=%q is invalid: want some of %s (never none or HS*)", envPrefix, strings.Join(c.JWTAlgorithms, ","), strings.Join(JWTAlgorithms, ","))
		}
		if c.JWTLeeway < 0 {
			add("%sAUTH_JWT_LEEWAY=%s is invalid: want a duration such as 60s", envPrefix, c.JWTLeeway)
		}
	}

	// The wrappers, whatever the type.
	if _, err := ParsePrefixes(c.AllowCIDRs); err != nil {
		add("%sAUTH_ALLOW_CIDRS: %v: want CIDRs or addresses, comma-separated (e.g. 10.0.0.0/8,2001:db8::/32)", envPrefix, strings.TrimPrefix(err.Error(), "auth: "))
	}
	if _, err := ParsePrefixes(c.TrustedProxies); err != nil {
		add("%sAUTH_TRUSTED_PROXIES: %v: want CIDRs or addresses, comma-separated", envPrefix, strings.TrimPrefix(err.Error(), "auth: "))
	}
	if len(trimAll(c.TrustedProxies)) > 0 && len(trimAll(c.AllowCIDRs)) == 0 {
		add("%sAUTH_TRUSTED_PROXIES is set but %sAUTH_ALLOW_CIDRS is empty: the proxies only serve the allowlist", envPrefix, envPrefix)
	}
	if _, err := ParseHeaderList(c.RequireHeaders); err != nil {
		add("%sAUTH_REQUIRE_HEADERS: %v: want Name=value,Name=value", envPrefix, err)
	}
	if c.ReplayWindow < 0 {
		add("%sAUTH_REPLAY_WINDOW=%s is invalid: want a duration such as 10m", envPrefix, c.ReplayWindow)
	}
	if c.ReplaySize < 0 {
		add("%sAUTH_REPLAY_SIZE=%d is invalid: want a positive number", envPrefix, c.ReplaySize)
	}
	return typ, errors.Join(errs...)
}

func uses(parts []part, k partKind) bool {
	return slices.ContainsFunc(parts, func(p part) bool { return p.kind == k })
}

func credHint(name string) string {
	switch name {
	case "WEBHOOK_SECRET":
		return " (comma-separated for rotation)"
	case "AUTH_TOKEN":
		return " (comma-separated for rotation)"
	}
	return ""
}

// ignored lists the set variables that typ does not read (credentials of
// another type are errors, in check; these are only warned about).
func (c *Config) ignored(typ string) []string {
	type opt struct {
		name  string
		set   bool
		types []string
	}
	opts := []opt{
		{"AUTH_HMAC_HEADER", c.HMACHeader != "", []string{"hmac"}},
		{"AUTH_HMAC_ALGORITHM", !isDefault(c.HMACAlgorithm, "sha256"), []string{"hmac"}},
		{"AUTH_HMAC_ENCODING", !isDefault(c.HMACEncoding, "hex"), []string{"hmac"}},
		{"AUTH_HMAC_PREFIX", c.HMACPrefix != "", []string{"hmac"}},
		{"AUTH_HMAC_TEMPLATE", !isDefault(c.HMACTemplate, "{body}"), []string{"hmac"}},
		{"AUTH_HMAC_TIMESTAMP_HEADER", c.HMACTimestampHeader != "", []string{"hmac"}},
		{"AUTH_HMAC_ID_HEADER", c.HMACIDHeader != "", []string{"hmac"}},
		{"AUTH_HEADER", c.Header != "", []string{"header"}},
		{"AUTH_QUERY_PARAM", !isDefault(c.QueryParam, DefaultQueryParam), []string{"querystring"}},
		{"AUTH_JWKS_URL", c.JWKSURL != "", []string{"jwt"}},
		{"AUTH_JWT_ISSUER", c.JWTIssuer != "", []string{"jwt"}},
		{"AUTH_JWT_AUDIENCE", len(trimAll(c.JWTAudience)) > 0, []string{"jwt"}},
	}
	var out []string
	for _, o := range opts {
		if o.set && !slices.Contains(o.types, typ) {
			out = append(out, envPrefix+o.name)
		}
	}
	return out
}

func isDefault(v, def string) bool {
	v = strings.TrimSpace(v)
	return v == "" || strings.EqualFold(v, def)
}

// LogValue keeps secrets out of structured logs: it shows which are set
// and how many, never their values.
func (c Config) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("type", c.Type),
		slog.Int("secrets", len(trimAll(c.WebhookSecret))),
		slog.Int("tokens", len(trimAll(c.Token))),
		slog.Bool("username_set", c.Username != ""),
		slog.Bool("password_set", c.Password != ""),
	}
	str := func(k, v string) {
		if v != "" {
			attrs = append(attrs, slog.String(k, v))
		}
	}
	str("hmac_header", c.HMACHeader)
	str("hmac_algorithm", c.HMACAlgorithm)
	str("hmac_encoding", c.HMACEncoding)
	str("hmac_prefix", c.HMACPrefix)
	str("hmac_template", c.HMACTemplate)
	str("hmac_timestamp_header", c.HMACTimestampHeader)
	str("hmac_id_header", c.HMACIDHeader)
	str("header", c.Header)
	str("query_param", c.QueryParam)
	if u, err := url.Parse(strings.TrimSpace(c.JWKSURL)); err == nil && c.JWKSURL != "" {
		str("jwks_url", redactURL(u))
	}
	str("jwt_issuer", c.JWTIssuer)
	str("jwt_audience", strings.Join(trimAll(c.JWTAudience), ","))
	str("allow_cidrs", strings.Join(trimAll(c.AllowCIDRs), ","))
	str("trusted_proxies", strings.Join(trimAll(c.TrustedProxies), ","))
	if hs, err := ParseHeaderList(c.RequireHeaders); err == nil && len(hs) > 0 {
		names := make([]string, 0, len(hs))
		for n := range hs {
			names = append(names, n)
		}
		slices.Sort(names)
		str("require_headers", strings.Join(names, ","))
	}
	return slog.GroupValue(attrs...)
}

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
