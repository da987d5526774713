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

// Field names of a [Spec], as [FieldError] reports them: the JSON names
// of the receivers API. [Config] maps each to its MISTBRIDGE_ variable.
const (
	FieldType                = "authType"
	FieldSecret              = "secret"
	FieldUserName            = "userName"
	FieldPassword            = "password"
	FieldToken               = "token"
	FieldHeader              = "header"
	FieldQueryParam          = "queryParam"
	FieldHMACHeader          = "hmacHeader"
	FieldHMACAlgorithm       = "hmacAlgorithm"
	FieldHMACEncoding        = "hmacEncoding"
	FieldHMACPrefix          = "hmacPrefix"
	FieldHMACTemplate        = "hmacTemplate"
	FieldHMACTimestampHeader = "hmacTimestampHeader"
	FieldHMACTolerance       = "hmacTolerance"
	FieldHMACIDHeader        = "hmacIdHeader"
	FieldJWKSURL             = "jwksUrl"
	FieldIssuer              = "issuer"
	FieldAudience            = "audience"
	FieldJWTAlgorithms       = "jwtAlgorithms"
	FieldJWTLeeway           = "jwtLeeway"
	FieldAllowCIDRs          = "allowCidrs"
	FieldTrustedProxies      = "trustedProxies"
	FieldRequireHeaders      = "requireHeaders"
	FieldReplayWindow        = "replayWindow"
	FieldReplaySize          = "replaySize"
)

// FieldError is one problem of a [Spec], naming the field it is about.
// Msg never quotes a secret; it names fields the way the caller does (the
// JSON names for [Spec.Validate], MISTBRIDGE_ variables for
// [Config.Validate]). Field is always the JSON name, so an API can answer
// {"error": Msg, "field": Field}.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return "auth: " + e.Msg }

// Spec is how one receiver authenticates, whatever configures it (the
// environment through [Config], or the receivers API). The zero value of
// an optional field means its documented default; the fields are those of
// [Config], under the names of the receivers API. A Spec prints no secret
// ([Spec.LogValue]).
type Spec struct {
	// Type is one of [Types]. Empty means "mist" when Secret is set, else
	// Validate fails.
	Type string
	// Secret holds the HMAC secrets of mist and hmac; several may be
	// active at once while a secret is rotated.
	Secret []string
	// UserName and Password are basic's credentials; both required.
	UserName, Password string
	// Token holds the tokens of bearer, header, authheader, querystring
	// and splunk (several for rotation).
	Token []string
	// Header names the header that carries header's token. Required for
	// header.
	Header string
	// QueryParam names querystring's parameter. The default is
	// [DefaultQueryParam].
	QueryParam string

	// HMACHeader is hmac's signature header. Required for hmac. The other
	// HMAC fields are those of [HMACOptions]: sha256, hex, no prefix,
	// "{body}", no timestamp, 5m and no delivery id by default.
	HMACHeader          string
	HMACAlgorithm       string
	HMACEncoding        string
	HMACPrefix          string
	HMACTemplate        string
	HMACTimestampHeader string
	HMACTolerance       time.Duration
	HMACIDHeader        string

	// JWKSURL, Issuer and Audience (any of them) are required for jwt.
	// JWTAlgorithms defaults to [DefaultJWTAlgorithms], JWTLeeway to
	// [DefaultLeeway].
	JWKSURL       string
	Issuer        string
	Audience      []string
	JWTAlgorithms []string
	JWTLeeway     time.Duration

	// AllowCIDRs, when set, is the source-IP allowlist; TrustedProxies are
	// the proxies whose X-Forwarded-For is believed (needs AllowCIDRs).
	AllowCIDRs, TrustedProxies []string
	// RequireHeaders are "Name=value" headers every request must carry.
	// The values are secrets.
	RequireHeaders []string

	// ReplayWindow and ReplaySize tune the replay protection of hmac with
	// a delivery id or timestamp: 10m (at least twice the tolerance) and
	// 100000 by default.
	ReplayWindow time.Duration
	ReplaySize   int
}

// namer renders a field's name in messages.
type namer func(field string) string

func jsonName(field string) string { return field }

// Validate checks s without building anything or touching the network.
// The error joins one [*FieldError] per problem (use errors.As, or
// [FieldErrors]); messages name the fields by their JSON names.
func (s *Spec) Validate() error {
	_, errs := s.check(jsonName)
	return joinFieldErrors(errs)
}

// FieldErrors returns every [*FieldError] that err holds (joined or
// wrapped), in order.
func FieldErrors(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if fe, ok := e.(*FieldError); ok {
			out = append(out, fe)
			return
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}

func joinFieldErrors(errs []*FieldError) error {
	if len(errs) == 0 {
		return nil
	}
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	return errors.Join(out...)
}

// EffectiveType is the scheme s names: Type in lower case, or mist when it
// is empty and a secret is set. It is "" when Type is empty and no secret
// is set.
func (s *Spec) EffectiveType() string {
	typ := strings.ToLower(strings.TrimSpace(s.Type))
	if typ == "" && len(trimAll(s.Secret)) > 0 {
		typ = "mist"
	}
	return typ
}

// check validates s and returns the effective type; n names the fields in
// messages. It is the one validation of both the environment and the API.
func (s *Spec) check(n namer) (string, []*FieldError) {
	secrets := trimAll(s.Secret)
	tokens := trimAll(s.Token)
	var errs []*FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	typ := s.EffectiveType()
	if typ == "" {
		hint := ""
		switch {
		case len(tokens) > 0:
			hint = " (" + n(FieldToken) + " is set: choose bearer, header, authheader, querystring or splunk)"
		case s.UserName != "" || s.Password != "":
			hint = " (" + n(FieldUserName) + "/" + n(FieldPassword) + " are set: choose basic)"
		}
		add(FieldType, "%s is not set and %s is empty: set the webhook's secret (as in Mist's webhook settings), or choose a %s: %s%s",
			n(FieldSecret), n(FieldType), n(FieldType), strings.Join(Types, ", "), hint)
		return "", errs
	}
	if !slices.Contains(Types, typ) {
		add(FieldType, "%s=%q is not supported: want one of %s", n(FieldType), s.Type, strings.Join(Types, ", "))
		return "", errs
	}

	// The seed's rules: each type takes its own credentials and no others.
	creds := []struct {
		field string
		set   bool
	}{
		{FieldSecret, len(secrets) > 0},
		{FieldUserName, s.UserName != ""},
		{FieldPassword, s.Password != ""},
		{FieldToken, len(tokens) > 0},
	}
	var own []string
	switch typ {
	case "mist", "hmac":
		own = []string{FieldSecret}
	case "basic":
		own = []string{FieldUserName, FieldPassword}
	case "bearer", "header", "authheader", "querystring", "splunk":
		own = []string{FieldToken}
	}
	for _, cr := range creds {
		mine := slices.Contains(own, cr.field)
		switch {
		case mine && !cr.set:
			hint := ""
			if cr.field == FieldSecret || cr.field == FieldToken {
				hint = " (comma-separated for rotation)"
			}
			add(cr.field, "%s=%s needs %s%s", n(FieldType), typ, n(cr.field), hint)
		case !mine && cr.set:
			add(cr.field, "%s=%s takes no %s: unset it (credentials of another type)", n(FieldType), typ, n(cr.field))
		}
	}

	switch typ {
	case "hmac":
		s.checkHMAC(n, secrets, add)
	case "basic":
		if strings.Contains(s.UserName, ":") {
			add(FieldUserName, "%s must not contain ':' (Basic authentication cannot carry it)", n(FieldUserName))
		}
	case "header":
		if h := strings.TrimSpace(s.Header); h == "" || strings.ContainsAny(h, " \t:") {
			add(FieldHeader, "%s=header needs %s, the header that carries the token (e.g. X-Api-Token)", n(FieldType), n(FieldHeader))
		}
	case "querystring":
		if q := strings.TrimSpace(s.QueryParam); strings.ContainsAny(q, " \t&=#") {
			add(FieldQueryParam, "%s=%q is not a query parameter name", n(FieldQueryParam), s.QueryParam)
		}
	case "jwt":
		if strings.TrimSpace(s.JWKSURL) == "" {
			add(FieldJWKSURL, "%s=jwt needs %s (the issuer's https:// JWKS, e.g. https://idp.example.com/.well-known/jwks.json)", n(FieldType), n(FieldJWKSURL))
		} else if u, err := url.Parse(strings.TrimSpace(s.JWKSURL)); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			add(FieldJWKSURL, "%s is invalid: want an absolute https:// URL (http:// is accepted with a warning)", n(FieldJWKSURL))
		}
		if strings.TrimSpace(s.Issuer) == "" {
			add(FieldIssuer, "%s=jwt needs %s (the iss every token must carry)", n(FieldType), n(FieldIssuer))
		}
		if len(trimAll(s.Audience)) == 0 {
			add(FieldAudience, "%s=jwt needs %s (the aud every token must name; comma-separated for several)", n(FieldType), n(FieldAudience))
		}
		if _, err := jwtAlgorithms(s.JWTAlgorithms); err != nil {
			add(FieldJWTAlgorithms, "%s=%q is invalid: want some of %s (never none or HS*)", n(FieldJWTAlgorithms), strings.Join(s.JWTAlgorithms, ","), strings.Join(JWTAlgorithms, ","))
		}
		if s.JWTLeeway < 0 {
			add(FieldJWTLeeway, "%s=%s is invalid: want a duration such as 60s", n(FieldJWTLeeway), s.JWTLeeway)
		}
	}

	// The wrappers, whatever the type.
	if _, err := ParsePrefixes(s.AllowCIDRs); err != nil {
		add(FieldAllowCIDRs, "%s: %v: want CIDRs or addresses, comma-separated (e.g. 10.0.0.0/8,2001:db8::/32)", n(FieldAllowCIDRs), strings.TrimPrefix(err.Error(), "auth: "))
	}
	if _, err := ParsePrefixes(s.TrustedProxies); err != nil {
		add(FieldTrustedProxies, "%s: %v: want CIDRs or addresses, comma-separated", n(FieldTrustedProxies), strings.TrimPrefix(err.Error(), "auth: "))
	}
	if len(trimAll(s.TrustedProxies)) > 0 && len(trimAll(s.AllowCIDRs)) == 0 {
		add(FieldTrustedProxies, "%s is set but %s is empty: the proxies only serve the allowlist", n(FieldTrustedProxies), n(FieldAllowCIDRs))
	}
	if _, err := ParseHeaderList(s.RequireHeaders); err != nil {
		add(FieldRequireHeaders, "%s: %v: want Name=value,Name=value", n(FieldRequireHeaders), err)
	}
	if s.ReplayWindow < 0 {
		add(FieldReplayWindow, "%s=%s is invalid: want a duration such as 10m", n(FieldReplayWindow), s.ReplayWindow)
	}
	if s.ReplaySize < 0 {
		add(FieldReplaySize, "%s=%d is invalid: want a positive number", n(FieldReplaySize), s.ReplaySize)
	}
	return typ, errs
}

func (s *Spec) checkHMAC(n namer, secrets []string, add func(field, format string, args ...any)) {
	if strings.TrimSpace(s.HMACHeader) == "" {
		add(FieldHMACHeader, "%s=hmac needs %s (the signature header, e.g. X-Hub-Signature-256)", n(FieldType), n(FieldHMACHeader))
	}
	for _, h := range []struct{ field, v string }{{FieldHMACHeader, s.HMACHeader}, {FieldHMACTimestampHeader, s.HMACTimestampHeader}, {FieldHMACIDHeader, s.HMACIDHeader}} {
		if strings.ContainsAny(strings.TrimSpace(h.v), " \t:") {
			add(h.field, "%s=%q is not a header name", n(h.field), h.v)
		}
	}
	if strings.ContainsAny(s.HMACPrefix, " \t") {
		add(FieldHMACPrefix, "%s=%q is invalid: no spaces (they separate signatures), e.g. sha256= or v1,", n(FieldHMACPrefix), s.HMACPrefix)
	}
	if a := strings.ToLower(strings.TrimSpace(s.HMACAlgorithm)); a != "" {
		if _, _, err := hashOf(a); err != nil {
			add(FieldHMACAlgorithm, "%s=%q is invalid: want sha1, sha256 or sha512", n(FieldHMACAlgorithm), s.HMACAlgorithm)
		}
	}
	if e := strings.ToLower(strings.TrimSpace(s.HMACEncoding)); e != "" && e != "hex" && e != "base64" {
		add(FieldHMACEncoding, "%s=%q is invalid: want hex or base64", n(FieldHMACEncoding), s.HMACEncoding)
	}
	if s.HMACTolerance < 0 {
		add(FieldHMACTolerance, "%s=%s is invalid: want a positive duration such as 5m", n(FieldHMACTolerance), s.HMACTolerance)
	}
	tmpl := s.HMACTemplate
	if tmpl == "" {
		tmpl = "{body}"
	}
	if parts, err := parseTemplate(tmpl); err != nil {
		add(FieldHMACTemplate, "%s=%q is invalid: want {body} once, with optional {timestamp} and {id} and literal text (e.g. v0:{timestamp}:{body})", n(FieldHMACTemplate), s.HMACTemplate)
	} else {
		ts, id := strings.TrimSpace(s.HMACTimestampHeader) != "", strings.TrimSpace(s.HMACIDHeader) != ""
		switch {
		case uses(parts, partTimestamp) && !ts:
			add(FieldHMACTimestampHeader, "%s=%q signs {timestamp} but %s is empty", n(FieldHMACTemplate), s.HMACTemplate, n(FieldHMACTimestampHeader))
		case ts && !uses(parts, partTimestamp):
			add(FieldHMACTemplate, "%s is set but %s=%q does not sign {timestamp}, so a replay could carry a fresh one: want e.g. v0:{timestamp}:{body} (Slack) or {id}.{timestamp}.{body} (Standard Webhooks)", n(FieldHMACTimestampHeader), n(FieldHMACTemplate), s.HMACTemplate)
		}
		if uses(parts, partID) && !id {
			add(FieldHMACIDHeader, "%s=%q signs {id} but %s is empty", n(FieldHMACTemplate), s.HMACTemplate, n(FieldHMACIDHeader))
		}
	}
	for i, sec := range secrets {
		if _, err := secretKey(sec); err != nil {
			add(FieldSecret, "%s: secret %d starts whsec_ but is not base64 after it (Standard Webhooks form)", n(FieldSecret), i+1)
		}
	}
}

// Ignored lists the fields that are set but that s's type does not read
// (credentials of another type are errors, in Validate; these are worth a
// warning only), by their JSON names.
func (s *Spec) Ignored() []string {
	typ := s.EffectiveType()
	opts := []struct {
		field string
		set   bool
		types []string
	}{
		{FieldHMACHeader, s.HMACHeader != "", []string{"hmac"}},
		{FieldHMACAlgorithm, !isDefault(s.HMACAlgorithm, "sha256"), []string{"hmac"}},
		{FieldHMACEncoding, !isDefault(s.HMACEncoding, "hex"), []string{"hmac"}},
		{FieldHMACPrefix, s.HMACPrefix != "", []string{"hmac"}},
		{FieldHMACTemplate, !isDefault(s.HMACTemplate, "{body}"), []string{"hmac"}},
		{FieldHMACTimestampHeader, s.HMACTimestampHeader != "", []string{"hmac"}},
		{FieldHMACIDHeader, s.HMACIDHeader != "", []string{"hmac"}},
		{FieldHeader, s.Header != "", []string{"header"}},
		{FieldQueryParam, !isDefault(s.QueryParam, DefaultQueryParam), []string{"querystring"}},
		{FieldJWKSURL, s.JWKSURL != "", []string{"jwt"}},
		{FieldIssuer, s.Issuer != "", []string{"jwt"}},
		{FieldAudience, len(trimAll(s.Audience)) > 0, []string{"jwt"}},
	}
	var out []string
	for _, o := range opts {
		if o.set && !slices.Contains(o.types, typ) {
			out = append(out, o.field)
		}
	}
	return out
}

// Verifier validates s and builds its verifier: the scheme, wrapped in
// replay protection (hmac with a delivery id or a timestamp), the required
// headers and the IP allowlist, in the order they run: allowlist, headers,
// scheme, replay. The error joins [*FieldError]s named by JSON names. It
// logs a warning for none, for an http:// JWKS and for fields the type
// ignores; never a secret. log may be nil.
//
// The verifier always implements io.Closer: a jwt verifier refreshes its
// JWKS in the background until Close is called.
func (s *Spec) Verifier(log *slog.Logger) (Verifier, error) {
	return s.build(log, jsonName, "auth: field ignored by this authType", "field")
}

// build is Verifier with the fields named by n in errors and warnings.
func (s *Spec) build(log *slog.Logger, n namer, ignoredMsg, ignoredKey string) (Verifier, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	typ, errs := s.check(n)
	if len(errs) > 0 {
		return nil, joinFieldErrors(errs)
	}
	for _, f := range s.Ignored() {
		log.Warn(ignoredMsg, "type", typ, ignoredKey, n(f))
	}
	v, err := s.scheme(typ, log, n)
	if err != nil {
		return nil, err
	}
	if h, ok := v.(*HMAC); ok && (h.idHeader != "" || h.tsHeader != "") {
		window := max(s.ReplayWindow, 2*h.tolerance)
		if v, err = NewReplay(h, h.DeliveryKey, ReplayOptions{Window: window, Size: s.ReplaySize}); err != nil {
			return nil, err
		}
	}
	if len(trimAll(s.RequireHeaders)) > 0 {
		want, _ := ParseHeaderList(s.RequireHeaders) // checked
		if v, err = NewRequireHeaders(v, want); err != nil {
			return nil, &FieldError{Field: FieldRequireHeaders, Msg: fmt.Sprintf("%s: %v", n(FieldRequireHeaders), strings.TrimPrefix(err.Error(), "auth: "))}
		}
	}
	if len(trimAll(s.AllowCIDRs)) > 0 {
		allow, _ := ParsePrefixes(s.AllowCIDRs) // checked
		trusted, _ := ParsePrefixes(s.TrustedProxies)
		if v, err = NewIPAllow(v, allow, trusted); err != nil {
			return nil, err
		}
	}
	return closer{v}, nil
}

// scheme builds the verifier of a checked type.
func (s *Spec) scheme(typ string, log *slog.Logger, n namer) (Verifier, error) {
	secrets := trimAll(s.Secret)
	tokens := trimAll(s.Token)
	failed := func(err error) error {
		return &FieldError{Field: FieldType, Msg: fmt.Sprintf("%s=%s: %v", n(FieldType), typ, strings.TrimPrefix(err.Error(), "auth: "))}
	}
	var v Verifier
	var err error
	switch typ {
	case "mist":
		v, err = NewMist(secrets)
	case "hmac":
		v, err = NewHMAC(s.hmacOptions(secrets))
	case "basic":
		v, err = NewBasic(s.UserName, s.Password)
	case "bearer":
		v, err = NewBearer(tokens)
	case "header":
		v, err = NewHeaderToken(s.Header, tokens)
	case "authheader":
		v, err = NewAuthHeader(tokens)
	case "querystring":
		v, err = NewQueryToken(s.QueryParam, tokens)
	case "splunk":
		v, err = NewSplunk(tokens)
	case "jwt":
		v, err = NewJWT(context.Background(), JWTOptions{
			JWKSURL:    s.JWKSURL,
			Issuer:     s.Issuer,
			Audience:   s.Audience,
			Algorithms: s.JWTAlgorithms,
			Leeway:     s.JWTLeeway,
			Log:        log,
		})
	default: // "none", checked
		log.Warn("auth: "+n(FieldType)+"=none: webhooks are accepted from anyone who can reach the bridge",
			"ip_allowlist", len(trimAll(s.AllowCIDRs)) > 0, "required_headers", len(trimAll(s.RequireHeaders)))
		v = NewNone()
	}
	if err != nil {
		return nil, failed(err)
	}
	return v, nil
}

func (s *Spec) hmacOptions(secrets []string) HMACOptions {
	return HMACOptions{
		Header:          s.HMACHeader,
		Algorithm:       s.HMACAlgorithm,
		Encoding:        s.HMACEncoding,
		Prefix:          s.HMACPrefix,
		Template:        s.HMACTemplate,
		TimestampHeader: s.HMACTimestampHeader,
		Tolerance:       s.HMACTolerance,
		IDHeader:        s.HMACIDHeader,
		Secrets:         secrets,
	}
}

// LogValue keeps secrets out of structured logs: it shows which are set
// and how many, never their values.
func (s Spec) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("type", s.Type),
		slog.Int("secrets", len(trimAll(s.Secret))),
		slog.Int("tokens", len(trimAll(s.Token))),
		slog.Bool("username_set", s.UserName != ""),
		slog.Bool("password_set", s.Password != ""),
	}
	str := func(k, v string) {
		if v != "" {
			attrs = append(attrs, slog.String(k, v))
		}
	}
	str("hmac_header", s.HMACHeader)
	str("hmac_algorithm", s.HMACAlgorithm)
	str("hmac_encoding", s.HMACEncoding)
	str("hmac_prefix", s.HMACPrefix)
	str("hmac_template", s.HMACTemplate)
	str("hmac_timestamp_header", s.HMACTimestampHeader)
	str("hmac_id_header", s.HMACIDHeader)
	str("header", s.Header)
	str("query_param", s.QueryParam)
	if u, err := url.Parse(strings.TrimSpace(s.JWKSURL)); err == nil && s.JWKSURL != "" {
		str("jwks_url", redactURL(u))
	}
	str("jwt_issuer", s.Issuer)
	str("jwt_audience", strings.Join(trimAll(s.Audience), ","))
	str("allow_cidrs", strings.Join(trimAll(s.AllowCIDRs), ","))
	str("trusted_proxies", strings.Join(trimAll(s.TrustedProxies), ","))
	if hs, err := ParseHeaderList(s.RequireHeaders); err == nil && len(hs) > 0 {
		names := make([]string, 0, len(hs))
		for n := range hs {
			names = append(names, n)
		}
		slices.Sort(names)
		str("require_headers", strings.Join(names, ","))
	}
	return slog.GroupValue(attrs...)
}

// String is LogValue as text, so that printing a Spec with %v, %+v or %#v
// shows no secret.
func (s Spec) String() string { return s.LogValue().String() }

// GoString is String.
func (s Spec) GoString() string { return s.String() }
