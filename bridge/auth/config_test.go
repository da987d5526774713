package auth

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/golang-jwt/jwt/v5"

	"github.com/MicahParks/jwkset"
)

// parseEnv parses vars (without the MISTBRIDGE_ prefix) the way cmd/ does.
func parseEnv(t *testing.T, vars map[string]string) Config {
	t.Helper()
	environ := map[string]string{}
	for k, v := range vars {
		environ["MISTBRIDGE_"+k] = v
	}
	var c Config
	if err := env.ParseWithOptions(&c, env.Options{Prefix: "MISTBRIDGE_", Environment: environ}); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConfigDefaults(t *testing.T) {
	c := parseEnv(t, nil)
	if c.HMACAlgorithm != "sha256" || c.HMACEncoding != "hex" || c.QueryParam != "token" ||
		strings.Join(c.JWTAlgorithms, ",") != "RS256,ES256" || c.JWTLeeway.String() != "1m0s" ||
		c.HMACTolerance.String() != "5m0s" || c.HMACTemplate != "{body}" || c.ReplaySize != 100000 {
		t.Fatalf("defaults: %#v", c)
	}
}

func TestConfigVerifier(t *testing.T) {
	testKeys(t)
	srv := newJWKSServer(t)
	srv.add(t, "k1", &rsaKey.PublicKey, jwkset.AlgRS256)

	tests := []struct {
		name     string
		vars     map[string]string
		errs     []string // substrings of the error; nil: no error
		desc     string   // String of the verifier
		warnings []string
	}{
		{"nothing", nil, []string{"MISTBRIDGE_WEBHOOK_SECRET is not set", "MISTBRIDGE_AUTH_TYPE is empty", "mist, hmac, basic"}, "", nil},
		{"only a token", map[string]string{"AUTH_TOKEN": "t"}, []string{"MISTBRIDGE_AUTH_TOKEN is set: choose bearer"}, "", nil},
		{"secret alone means mist", map[string]string{"WEBHOOK_SECRET": " a , b ,"}, nil, "mist(secrets=2)", nil},
		{"mist in capitals", map[string]string{"AUTH_TYPE": " Mist ", "WEBHOOK_SECRET": "a"}, nil, "mist(secrets=1)", nil},
		{"mist without secret", map[string]string{"AUTH_TYPE": "mist"}, []string{"MISTBRIDGE_AUTH_TYPE=mist needs MISTBRIDGE_WEBHOOK_SECRET"}, "", nil},
		{"mist with a token", map[string]string{"WEBHOOK_SECRET": "a", "AUTH_TOKEN": "t"}, []string{"MISTBRIDGE_AUTH_TYPE=mist takes no MISTBRIDGE_AUTH_TOKEN"}, "", nil},
		{"mist ignores a header", map[string]string{"WEBHOOK_SECRET": "a", "AUTH_HEADER": "X-A"}, nil, "mist(secrets=1)", []string{"MISTBRIDGE_AUTH_HEADER"}},
		{"unknown type", map[string]string{"AUTH_TYPE": "oauth2", "WEBHOOK_SECRET": "a"}, []string{`MISTBRIDGE_AUTH_TYPE="oauth2" is not supported`, "mist, hmac, basic, bearer, jwt, header, authheader, querystring, splunk, none"}, "", nil},

		{"none", map[string]string{"AUTH_TYPE": "none"}, nil, "none", []string{"MISTBRIDGE_AUTH_TYPE=none"}},
		{"none with a token", map[string]string{"AUTH_TYPE": "none", "AUTH_TOKEN": "t"}, []string{"MISTBRIDGE_AUTH_TYPE=none takes no MISTBRIDGE_AUTH_TOKEN"}, "", nil},
		{"none with everything", map[string]string{"AUTH_TYPE": "none", "AUTH_USERNAME": "u", "AUTH_PASSWORD": "p", "WEBHOOK_SECRET": "s"}, []string{"takes no MISTBRIDGE_WEBHOOK_SECRET", "takes no MISTBRIDGE_AUTH_USERNAME", "takes no MISTBRIDGE_AUTH_PASSWORD"}, "", nil},
		{"none behind an allowlist", map[string]string{"AUTH_TYPE": "none", "AUTH_ALLOW_CIDRS": "192.0.2.0/24"}, nil, "ipallow(allow=[192.0.2.0/24] trusted_proxies=[]) -> none", []string{"MISTBRIDGE_AUTH_TYPE=none"}},

		{"basic", map[string]string{"AUTH_TYPE": "basic", "AUTH_USERNAME": "u", "AUTH_PASSWORD": "p"}, nil, "basic(user=*** password=***)", nil},
		{"basic without password", map[string]string{"AUTH_TYPE": "basic", "AUTH_USERNAME": "u"}, []string{"MISTBRIDGE_AUTH_TYPE=basic needs MISTBRIDGE_AUTH_PASSWORD"}, "", nil},
		{"basic with a token and no user", map[string]string{"AUTH_TYPE": "basic", "AUTH_PASSWORD": "p", "AUTH_TOKEN": "t"}, []string{"needs MISTBRIDGE_AUTH_USERNAME", "takes no MISTBRIDGE_AUTH_TOKEN"}, "", nil},
		{"basic user with colon", map[string]string{"AUTH_TYPE": "basic", "AUTH_USERNAME": "u:x", "AUTH_PASSWORD": "p"}, []string{"MISTBRIDGE_AUTH_USERNAME must not contain ':'"}, "", nil},

		{"bearer", map[string]string{"AUTH_TYPE": "bearer", "AUTH_TOKEN": "a, b"}, nil, "bearer(tokens=2)", nil},
		{"bearer without token", map[string]string{"AUTH_TYPE": "bearer"}, []string{"MISTBRIDGE_AUTH_TYPE=bearer needs MISTBRIDGE_AUTH_TOKEN"}, "", nil},
		{"bearer with a password", map[string]string{"AUTH_TYPE": "bearer", "AUTH_TOKEN": "t", "AUTH_PASSWORD": "p"}, []string{"MISTBRIDGE_AUTH_TYPE=bearer takes no MISTBRIDGE_AUTH_PASSWORD"}, "", nil},
		{"header", map[string]string{"AUTH_TYPE": "header", "AUTH_TOKEN": "t", "AUTH_HEADER": "x-api-token"}, nil, "header(name=X-Api-Token tokens=1)", nil},
		{"header without name", map[string]string{"AUTH_TYPE": "header", "AUTH_TOKEN": "t"}, []string{"MISTBRIDGE_AUTH_TYPE=header needs MISTBRIDGE_AUTH_HEADER"}, "", nil},
		{"authheader", map[string]string{"AUTH_TYPE": "authheader", "AUTH_TOKEN": "t"}, nil, "authheader(tokens=1)", nil},
		{"querystring", map[string]string{"AUTH_TYPE": "querystring", "AUTH_TOKEN": "t"}, nil, "querystring(param=token tokens=1)", nil},
		{"querystring named", map[string]string{"AUTH_TYPE": "querystring", "AUTH_TOKEN": "t", "AUTH_QUERY_PARAM": "key"}, nil, "querystring(param=key tokens=1)", nil},
		{"splunk", map[string]string{"AUTH_TYPE": "splunk", "AUTH_TOKEN": "t"}, nil, "splunk(tokens=1)", nil},
		{"splunk without token", map[string]string{"AUTH_TYPE": "splunk", "WEBHOOK_SECRET": "s"}, []string{"needs MISTBRIDGE_AUTH_TOKEN", "takes no MISTBRIDGE_WEBHOOK_SECRET"}, "", nil},

		{"hmac", map[string]string{"AUTH_TYPE": "hmac", "WEBHOOK_SECRET": "s", "AUTH_HMAC_HEADER": "X-Hub-Signature-256", "AUTH_HMAC_PREFIX": "sha256="}, nil,
			`hmac(header=X-Hub-Signature-256 algorithm=sha256 encoding=hex prefix="sha256=" template="{body}" timestamp_header= tolerance=5m0s id_header= secrets=1)`, nil},
		{"hmac without header", map[string]string{"AUTH_TYPE": "hmac", "WEBHOOK_SECRET": "s"}, []string{"MISTBRIDGE_AUTH_TYPE=hmac needs MISTBRIDGE_AUTH_HMAC_HEADER"}, "", nil},
		{"hmac bad algorithm and encoding", map[string]string{"AUTH_TYPE": "hmac", "WEBHOOK_SECRET": "s", "AUTH_HMAC_HEADER": "X-S", "AUTH_HMAC_ALGORITHM": "md5", "AUTH_HMAC_ENCODING": "base32"},
			[]string{`MISTBRIDGE_AUTH_HMAC_ALGORITHM="md5" is invalid: want sha1, sha256 or sha512`, `MISTBRIDGE_AUTH_HMAC_ENCODING="base32" is invalid: want hex or base64`}, "", nil},
		{"hmac timestamp not signed", map[string]string{"AUTH_TYPE": "hmac", "WEBHOOK_SECRET": "s", "AUTH_HMAC_HEADER": "X-S", "AUTH_HMAC_TIMESTAMP_HEADER": "X-T"},
			[]string{"MISTBRIDGE_AUTH_HMAC_TIMESTAMP_HEADER is set but MISTBRIDGE_AUTH_HMAC_TEMPLATE"}, "", nil},
		{"hmac template bad", map[string]string{"AUTH_TYPE": "hmac", "WEBHOOK_SECRET": "s", "AUTH_HMAC_HEADER": "X-S", "AUTH_HMAC_TEMPLATE": "{ts}:{body}"},
			[]string{`MISTBRIDGE_AUTH_HMAC_TEMPLATE="{ts}:{body}" is invalid`}, "", nil},
		{"hmac id not configured", map[string]string{"AUTH_TYPE": "hmac", "WEBHOOK_SECRET": "s", "AUTH_HMAC_HEADER": "X-S", "AUTH_HMAC_TEMPLATE": "{id}.{body}"},
			[]string{"signs {id} but MISTBRIDGE_AUTH_HMAC_ID_HEADER is empty"}, "", nil},
		{"hmac bad whsec", map[string]string{"AUTH_TYPE": "hmac", "WEBHOOK_SECRET": "whsec_***", "AUTH_HMAC_HEADER": "X-S"},
			[]string{"MISTBRIDGE_WEBHOOK_SECRET: secret 1 starts whsec_"}, "", nil},
		{"slack style with replay", map[string]string{"AUTH_TYPE": "hmac", "WEBHOOK_SECRET": "s", "AUTH_HMAC_HEADER": "X-Slack-Signature", "AUTH_HMAC_PREFIX": "v0=",
			"AUTH_HMAC_TEMPLATE": "v0:{timestamp}:{body}", "AUTH_HMAC_TIMESTAMP_HEADER": "X-Slack-Request-Timestamp", "AUTH_HMAC_TOLERANCE": "10m"}, nil,
			`replay(window=20m0s size=100000) -> hmac(header=X-Slack-Signature algorithm=sha256 encoding=hex prefix="v0=" template="v0:{timestamp}:{body}" timestamp_header=X-Slack-Request-Timestamp tolerance=10m0s id_header= secrets=1)`, nil},
		{"github style with replay", map[string]string{"AUTH_TYPE": "hmac", "WEBHOOK_SECRET": "s", "AUTH_HMAC_HEADER": "X-Hub-Signature-256", "AUTH_HMAC_PREFIX": "sha256=",
			"AUTH_HMAC_ID_HEADER": "X-GitHub-Delivery", "AUTH_REPLAY_WINDOW": "1h", "AUTH_REPLAY_SIZE": "10"}, nil,
			`replay(window=1h0m0s size=10) -> hmac(header=X-Hub-Signature-256 algorithm=sha256 encoding=hex prefix="sha256=" template="{body}" timestamp_header= tolerance=5m0s id_header=X-GitHub-Delivery secrets=1)`, nil},

		{"jwt", map[string]string{"AUTH_TYPE": "jwt", "AUTH_JWKS_URL": srv.URL, "AUTH_JWT_ISSUER": testIssuer, "AUTH_JWT_AUDIENCE": "a,b"}, nil,
			"jwt(jwks=" + srv.URL + " issuer=" + testIssuer + " audience=a,b algorithms=RS256,ES256 leeway=1m0s)", []string{"http://"}},
		{"jwt incomplete", map[string]string{"AUTH_TYPE": "jwt"}, []string{"needs MISTBRIDGE_AUTH_JWKS_URL", "needs MISTBRIDGE_AUTH_JWT_ISSUER", "needs MISTBRIDGE_AUTH_JWT_AUDIENCE"}, "", nil},
		{"jwt alg none", map[string]string{"AUTH_TYPE": "jwt", "AUTH_JWKS_URL": srv.URL, "AUTH_JWT_ISSUER": "i", "AUTH_JWT_AUDIENCE": "a", "AUTH_JWT_ALGORITHMS": "RS256,none"},
			[]string{`MISTBRIDGE_AUTH_JWT_ALGORITHMS="RS256,none" is invalid`, "never none or HS*"}, "", nil},
		{"jwt HS256", map[string]string{"AUTH_TYPE": "jwt", "AUTH_JWKS_URL": srv.URL, "AUTH_JWT_ISSUER": "i", "AUTH_JWT_AUDIENCE": "a", "AUTH_JWT_ALGORITHMS": "HS256"},
			[]string{"MISTBRIDGE_AUTH_JWT_ALGORITHMS"}, "", nil},
		{"jwt bad url", map[string]string{"AUTH_TYPE": "jwt", "AUTH_JWKS_URL": "idp.example.com/jwks", "AUTH_JWT_ISSUER": "i", "AUTH_JWT_AUDIENCE": "a"},
			[]string{"MISTBRIDGE_AUTH_JWKS_URL is invalid"}, "", nil},
		{"jwt with a token", map[string]string{"AUTH_TYPE": "jwt", "AUTH_JWKS_URL": srv.URL, "AUTH_JWT_ISSUER": "i", "AUTH_JWT_AUDIENCE": "a", "AUTH_TOKEN": "t"},
			[]string{"MISTBRIDGE_AUTH_TYPE=jwt takes no MISTBRIDGE_AUTH_TOKEN"}, "", nil},

		{"all wrappers", map[string]string{"WEBHOOK_SECRET": "s", "AUTH_ALLOW_CIDRS": "192.0.2.0/24, 2001:db8::/32", "AUTH_TRUSTED_PROXIES": "10.0.0.1", "AUTH_REQUIRE_HEADERS": "X-Api-Token=abc,x-csrf-token=d=e"}, nil,
			"ipallow(allow=[192.0.2.0/24 2001:db8::/32] trusted_proxies=[10.0.0.1/32]) -> require_headers(X-Api-Token,X-Csrf-Token) -> mist(secrets=1)", nil},
		{"bad cidr", map[string]string{"WEBHOOK_SECRET": "s", "AUTH_ALLOW_CIDRS": "192.0.2.0/33"}, []string{`MISTBRIDGE_AUTH_ALLOW_CIDRS: "192.0.2.0/33" is neither`}, "", nil},
		{"proxies without allowlist", map[string]string{"WEBHOOK_SECRET": "s", "AUTH_TRUSTED_PROXIES": "10.0.0.1"}, []string{"MISTBRIDGE_AUTH_TRUSTED_PROXIES is set but MISTBRIDGE_AUTH_ALLOW_CIDRS is empty"}, "", nil},
		{"bad required header", map[string]string{"WEBHOOK_SECRET": "s", "AUTH_REQUIRE_HEADERS": "X-A"}, []string{"MISTBRIDGE_AUTH_REQUIRE_HEADERS: entry 1 is not Name=value"}, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := parseEnv(t, tt.vars)
			var logs bytes.Buffer
			v, err := c.Verifier(slog.New(slog.NewTextHandler(&logs, nil)))
			if verr := c.Validate(); (verr == nil) != (err == nil) {
				t.Errorf("Validate = %v but Verifier = %v", verr, err)
			}
			if tt.errs != nil {
				if err == nil {
					t.Fatalf("Verifier = %v, want an error", v)
				}
				for _, want := range tt.errs {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q\ndoes not contain %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer v.(io.Closer).Close()
			if got := v.(interface{ String() string }).String(); got != tt.desc {
				t.Errorf("verifier = %s\nwant       %s", got, tt.desc)
			}
			for _, w := range tt.warnings {
				if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), w) {
					t.Errorf("no warning with %q in %q", w, logs.String())
				}
			}
			if tt.warnings == nil && logs.Len() > 0 {
				t.Errorf("unexpected logs: %s", logs.String())
			}
		})
	}
}

// TestConfigEndToEnd drives requests through verifiers built from the
// environment, wrappers included.
func TestConfigEndToEnd(t *testing.T) {
	c := parseEnv(t, map[string]string{
		"WEBHOOK_SECRET":       "old, test-secret",
		"AUTH_ALLOW_CIDRS":     "192.0.2.0/24",
		"AUTH_TRUSTED_PROXIES": "10.0.0.0/8",
		"AUTH_REQUIRE_HEADERS": "X-Api-Token=abc",
	})
	v, err := c.Verifier(nil)
	if err != nil {
		t.Fatal(err)
	}
	req := func(remote, xff, token, sig string) *http.Request {
		r := request("/webhooks/mist", "X-Mist-Signature-v2: "+sig)
		r.RemoteAddr = remote
		if xff != "" {
			r.Header.Set("X-Forwarded-For", xff)
		}
		if token != "" {
			r.Header.Set("X-Api-Token", token)
		}
		return r
	}
	body := []byte(pingBody)
	checkResult(t, v.Verify(req("192.0.2.1:1", "", "abc", pingV2), body), "")
	checkResult(t, v.Verify(req("10.0.0.1:1", "192.0.2.1", "abc", pingV2), body), "")
	checkResult(t, v.Verify(req("203.0.113.1:1", "", "abc", pingV2), body), ReasonIPNotAllowed)
	checkResult(t, v.Verify(req("203.0.113.1:1", "192.0.2.1", "abc", pingV2), body), ReasonIPNotAllowed)
	checkResult(t, v.Verify(req("192.0.2.1:1", "", "abd", pingV2), body), ReasonHeaderMismatch)
	checkResult(t, v.Verify(req("192.0.2.1:1", "", "abc", auditsV2), body), ReasonSignatureMismatch)

	// Standard Webhooks from the environment, replay included.
	c = parseEnv(t, map[string]string{
		"AUTH_TYPE": "hmac", "WEBHOOK_SECRET": swSecret, "AUTH_HMAC_HEADER": "webhook-signature",
		"AUTH_HMAC_ENCODING": "base64", "AUTH_HMAC_PREFIX": "v1,", "AUTH_HMAC_TEMPLATE": "{id}.{timestamp}.{body}",
		"AUTH_HMAC_TIMESTAMP_HEADER": "webhook-timestamp", "AUTH_HMAC_ID_HEADER": "webhook-id",
		"AUTH_HMAC_TOLERANCE": "876000h", // the vector is from 2021
	})
	v, err = c.Verifier(nil)
	if err != nil {
		t.Fatal(err)
	}
	sw := func() *http.Request {
		return request("/", "webhook-signature: "+swSig, "webhook-timestamp: "+swTS, "webhook-id: "+swID)
	}
	checkResult(t, v.Verify(sw(), []byte(swBody)), "")
	Commit(v, sw())
	checkResult(t, v.Verify(sw(), []byte(swBody)), ReasonReplayed)

	// querystring and jwt through Config too.
	c = parseEnv(t, map[string]string{"AUTH_TYPE": "querystring", "AUTH_TOKEN": "q1,q2"})
	v, _ = c.Verifier(nil)
	checkResult(t, v.Verify(request("/webhooks/mist?token=q2"), nil), "")
	checkResult(t, v.Verify(request("/webhooks/mist?token=q3"), nil), ReasonCredentialsInvalid)

	testKeys(t)
	srv := newJWKSServer(t)
	srv.add(t, "k1", &ecKey.PublicKey, jwkset.AlgES256)
	c = parseEnv(t, map[string]string{"AUTH_TYPE": "jwt", "AUTH_JWKS_URL": srv.URL, "AUTH_JWT_ISSUER": testIssuer, "AUTH_JWT_AUDIENCE": testAudience})
	v, err = c.Verifier(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v.(io.Closer).Close()
	tok := sign(t, jwt.SigningMethodES256, ecKey, "k1", jwt.RegisteredClaims{
		Issuer: testIssuer, Audience: jwt.ClaimStrings{testAudience},
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Minute)),
	})
	checkResult(t, v.Verify(request("/", "Authorization: Bearer "+tok), nil), "")
}

func TestConfigZeroValueDefaults(t *testing.T) {
	c := Config{Type: "hmac", WebhookSecret: []string{ghSecret}, HMACHeader: "X-Hub-Signature-256", HMACPrefix: "sha256="}
	v, err := c.Verifier(nil)
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, v.Verify(request("/", "X-Hub-Signature-256: "+ghSig), []byte(ghBody)), "")
}
