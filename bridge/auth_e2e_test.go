package bridge_test

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mistbridge/mistbridge/bridge/auth"
	"github.com/mistbridge/mistbridge/test/loadgen"
)

// jwks serves one RSA key as a JWKS and signs tokens with it.
type jwks struct {
	key *rsa.PrivateKey
	url string
}

func newJWKS(t *testing.T) *jwks {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	doc, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256",
		"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes()),
	}}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	}))
	t.Cleanup(srv.Close)
	return &jwks{key: key, url: srv.URL}
}

func (j *jwks) token(t *testing.T, aud string, exp time.Time) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": "https://idp.example", "aud": aud, "sub": "mist", "iat": time.Now().Unix(), "exp": exp.Unix(),
	})
	tok.Header["kid"] = "k1"
	s, err := tok.SignedString(j.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func hmacHex(secret, msg string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

// TestEverySchemeThroughHandler configures the receiver from the same
// variables a user sets, posts a good and a bad request through the
// handler into a real JetStream, and checks that only the good one lands.
func TestEverySchemeThroughHandler(t *testing.T) {
	idp := newJWKS(t)
	type req struct {
		path    string
		headers map[string]string
	}
	tests := []struct {
		name    string
		vars    map[string]string
		good    func(body []byte) req
		bad     func(body []byte) req // nil: the scheme accepts anything
		badCode int
		badWWW  string // expected WWW-Authenticate prefix, if any
	}{
		{name: "mist", vars: map[string]string{"WEBHOOK_SECRET": "s1"},
			good: func(b []byte) req {
				return req{headers: map[string]string{"X-Mist-Signature-v2": loadgen.Sign("s1", b)}}
			},
			bad: func(b []byte) req {
				return req{headers: map[string]string{"X-Mist-Signature-v2": loadgen.Sign("s2", b)}}
			},
			badCode: 401},
		{name: "mist rotation", vars: map[string]string{"WEBHOOK_SECRET": "new, old"},
			good: func(b []byte) req {
				return req{headers: map[string]string{"X-Mist-Signature-v2": loadgen.Sign("old", b)}}
			},
			bad: func(b []byte) req {
				return req{headers: map[string]string{"X-Mist-Signature-v2": loadgen.Sign("older", b)}}
			},
			badCode: 401},
		{name: "hmac github", vars: map[string]string{"AUTH_TYPE": "hmac", "WEBHOOK_SECRET": "gh", "AUTH_HMAC_HEADER": "X-Hub-Signature-256", "AUTH_HMAC_PREFIX": "sha256="},
			good: func(b []byte) req {
				return req{headers: map[string]string{"X-Hub-Signature-256": "sha256=" + hmacHex("gh", string(b))}}
			},
			bad: func(b []byte) req {
				return req{headers: map[string]string{"X-Hub-Signature-256": hmacHex("gh", string(b))}}
			},
			badCode: 401},
		{name: "hmac slack with timestamp", vars: map[string]string{"AUTH_TYPE": "hmac", "WEBHOOK_SECRET": "sl", "AUTH_HMAC_HEADER": "X-Slack-Signature", "AUTH_HMAC_PREFIX": "v0=", "AUTH_HMAC_TEMPLATE": "v0:{timestamp}:{body}", "AUTH_HMAC_TIMESTAMP_HEADER": "X-Slack-Request-Timestamp"},
			good: func(b []byte) req {
				ts := strconv.FormatInt(time.Now().Unix(), 10)
				return req{headers: map[string]string{"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": "v0=" + hmacHex("sl", "v0:"+ts+":"+string(b))}}
			},
			bad: func(b []byte) req {
				ts := strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)
				return req{headers: map[string]string{"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": "v0=" + hmacHex("sl", "v0:"+ts+":"+string(b))}}
			},
			badCode: 401},
		{name: "basic", vars: map[string]string{"AUTH_TYPE": "basic", "AUTH_USERNAME": "mist", "AUTH_PASSWORD": "pw"},
			good: func([]byte) req {
				return req{headers: map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("mist:pw"))}}
			},
			bad: func([]byte) req {
				return req{headers: map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("mist:nope"))}}
			},
			badCode: 401, badWWW: "Basic"},
		{name: "bearer", vars: map[string]string{"AUTH_TYPE": "bearer", "AUTH_TOKEN": "t0k"},
			good:    func([]byte) req { return req{headers: map[string]string{"Authorization": "Bearer t0k"}} },
			bad:     func([]byte) req { return req{headers: map[string]string{"Authorization": "Bearer t0x"}} },
			badCode: 401, badWWW: "Bearer"},
		{name: "header", vars: map[string]string{"AUTH_TYPE": "header", "AUTH_TOKEN": "t1", "AUTH_HEADER": "X-Api-Token"},
			good:    func([]byte) req { return req{headers: map[string]string{"X-Api-Token": "t1"}} },
			bad:     func([]byte) req { return req{headers: map[string]string{"X-Api-Token": "t2"}} },
			badCode: 401},
		{name: "authheader", vars: map[string]string{"AUTH_TYPE": "authheader", "AUTH_TOKEN": "raw-value"},
			good:    func([]byte) req { return req{headers: map[string]string{"Authorization": "raw-value"}} },
			bad:     func([]byte) req { return req{headers: map[string]string{"Authorization": "Bearer raw-value"}} },
			badCode: 401},
		{name: "querystring", vars: map[string]string{"AUTH_TYPE": "querystring", "AUTH_TOKEN": "q1"},
			good:    func([]byte) req { return req{path: "?token=q1"} },
			bad:     func([]byte) req { return req{path: "?token=q2"} },
			badCode: 401},
		{name: "splunk", vars: map[string]string{"AUTH_TYPE": "splunk", "AUTH_TOKEN": "hec"},
			good:    func([]byte) req { return req{headers: map[string]string{"Authorization": "Splunk hec"}} },
			bad:     func([]byte) req { return req{headers: map[string]string{"Authorization": "Splunk other"}} },
			badCode: 401, badWWW: "Splunk"},
		{name: "jwt", vars: map[string]string{"AUTH_TYPE": "jwt", "AUTH_JWKS_URL": idp.url, "AUTH_JWT_ISSUER": "https://idp.example", "AUTH_JWT_AUDIENCE": "mistbridge"},
			good: func([]byte) req {
				return req{headers: map[string]string{"Authorization": "Bearer " + idp.token(t, "mistbridge", time.Now().Add(time.Hour))}}
			},
			bad: func([]byte) req {
				return req{headers: map[string]string{"Authorization": "Bearer " + idp.token(t, "someone-else", time.Now().Add(time.Hour))}}
			},
			badCode: 401, badWWW: "Bearer"},
		{name: "jwt expired", vars: map[string]string{"AUTH_TYPE": "jwt", "AUTH_JWKS_URL": idp.url, "AUTH_JWT_ISSUER": "https://idp.example", "AUTH_JWT_AUDIENCE": "mistbridge"},
			good: func([]byte) req {
				return req{headers: map[string]string{"Authorization": "Bearer " + idp.token(t, "mistbridge", time.Now().Add(time.Minute))}}
			},
			bad: func([]byte) req {
				return req{headers: map[string]string{"Authorization": "Bearer " + idp.token(t, "mistbridge", time.Now().Add(-time.Hour))}}
			},
			badCode: 401, badWWW: "Bearer"},
		{name: "none", vars: map[string]string{"AUTH_TYPE": "none"},
			good: func([]byte) req { return req{} }},
		{name: "ip allowlist", vars: map[string]string{"WEBHOOK_SECRET": "s1", "AUTH_ALLOW_CIDRS": "10.0.0.0/8"},
			good: nil, // the test client is 127.0.0.1: only the refusal can be shown here
			bad: func(b []byte) req {
				return req{headers: map[string]string{"X-Mist-Signature-v2": loadgen.Sign("s1", b)}}
			},
			badCode: 403},
		{name: "ip allowlist admits loopback", vars: map[string]string{"WEBHOOK_SECRET": "s1", "AUTH_ALLOW_CIDRS": "127.0.0.0/8,::1/128"},
			good: func(b []byte) req {
				return req{headers: map[string]string{"X-Mist-Signature-v2": loadgen.Sign("s1", b)}}
			}},
		{name: "required header", vars: map[string]string{"WEBHOOK_SECRET": "s1", "AUTH_REQUIRE_HEADERS": "X-Tenant=acme"},
			good: func(b []byte) req {
				return req{headers: map[string]string{"X-Mist-Signature-v2": loadgen.Sign("s1", b), "X-Tenant": "acme"}}
			},
			bad: func(b []byte) req {
				return req{headers: map[string]string{"X-Mist-Signature-v2": loadgen.Sign("s1", b), "X-Tenant": "evil"}}
			},
			badCode: 401},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := defaults[auth.Config](t, tt.vars)
			v, err := cfg.Verifier(nil)
			if err != nil {
				t.Fatalf("config %v: %v", tt.vars, err)
			}
			r := newRig(t, rigOptions{noKafka: true, verifier: v})
			topic := "auth-" + strconv.Itoa(i)
			landed := 0
			if tt.good != nil {
				body := loadgen.Body(topic, 0, 2)
				g := tt.good(body)
				if a := post(t, r.url+"/webhooks/mist"+g.path, body, g.headers); a.code != 200 {
					t.Fatalf("good request: %d %v", a.code, a.body)
				}
				landed = 2
			}
			if tt.bad != nil {
				body := loadgen.Body(topic, 10, 3)
				b := tt.bad(body)
				a := post(t, r.url+"/webhooks/mist"+b.path, body, b.headers)
				if a.code != tt.badCode {
					t.Fatalf("bad request: %d %v, want %d", a.code, a.body, tt.badCode)
				}
				if got := a.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, tt.badWWW) || (tt.badWWW != "" && got == "") {
					t.Errorf("WWW-Authenticate %q, want %q...", got, tt.badWWW)
				}
				// The answer is the fixed reason and nothing else: no credential
				// or signature can leak through it.
				reason, _ := a.body["reason"].(string)
				if e := a.body["error"]; e != "unauthorized: "+reason && e != "forbidden: "+reason {
					t.Errorf("answer %v is more than the safe reason", a.body)
				}
			}
			if msgs := natsMessages(t, r.nats.ClientURL(), "mist."+topic+".>", landed); len(msgs) != landed {
				t.Fatalf("%d messages landed, want %d (only the good request's)", len(msgs), landed)
			}
		})
	}
}
