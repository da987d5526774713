package bridge_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
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
		{name: "mist", vars: map[string]string{"WEBHOOK_SECRET": "mist-s3cret-a1"},
			good: func(b []byte) req {
				return req{headers: map[string]string{"X-Mist-Signature-v2": loadgen.Sign("mist-s3cret-a1", b)}}
			},
			bad: func(b []byte) req {
				return req{headers: map[string]string{"X-Mist-Signature-v2": loadgen.Sign("mist-s3cret-b2", b)}}
			},
			badCode: 401},
		{name: "mist rotation", vars: map[string]string{"WEBHOOK_SECRET": "new-s3cret-c3, old-s3cret-d4"},
			good: func(b []byte) req {
				return req{headers: map[string]string{"X-Mist-Signature-v2": loadgen.Sign("old-s3cret-d4", b)}}
			},
			bad: func(b []byte) req {
				return req{headers: map[string]string{"X-Mist-Signature-v2": loadgen.Sign("older-s3cret-e5", b)}}
			},
			badCode: 401},
		{name: "hmac github", vars: map[string]string{"AUTH_TYPE": "hmac", "WEBHOOK_SECRET": "gh-s3cret-f6", "AUTH_HMAC_HEADER": "X-Hub-Signature-256", "AUTH_HMAC_PREFIX": "sha256="},
			good: func(b []byte) req {
				return req{headers: map[string]string{"X-Hub-Signature-256": "sha256=" + hmacHex("gh-s3cret-f6", string(b))}}
			},
			bad: func(b []byte) req {
				return req{headers: map[string]string{"X-Hub-Signature-256": hmacHex("gh-s3cret-f6", string(b))}}
			},
			badCode: 401},
		{name: "hmac slack with timestamp", vars: map[string]string{"AUTH_TYPE": "hmac", "WEBHOOK_SECRET": "sl-s3cret-g7", "AUTH_HMAC_HEADER": "X-Slack-Signature", "AUTH_HMAC_PREFIX": "v0=", "AUTH_HMAC_TEMPLATE": "v0:{timestamp}:{body}", "AUTH_HMAC_TIMESTAMP_HEADER": "X-Slack-Request-Timestamp"},
			good: func(b []byte) req {
				ts := strconv.FormatInt(time.Now().Unix(), 10)
				return req{headers: map[string]string{"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": "v0=" + hmacHex("sl-s3cret-g7", "v0:"+ts+":"+string(b))}}
			},
			bad: func(b []byte) req {
				ts := strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)
				return req{headers: map[string]string{"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": "v0=" + hmacHex("sl-s3cret-g7", "v0:"+ts+":"+string(b))}}
			},
			badCode: 401},
		{name: "basic", vars: map[string]string{"AUTH_TYPE": "basic", "AUTH_USERNAME": "mist", "AUTH_PASSWORD": "pw-s3cret-h8"},
			good: func([]byte) req {
				return req{headers: map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("mist:pw-s3cret-h8"))}}
			},
			bad: func([]byte) req {
				return req{headers: map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("mist:nope-s3cret-i9"))}}
			},
			badCode: 401, badWWW: "Basic"},
		{name: "bearer", vars: map[string]string{"AUTH_TYPE": "bearer", "AUTH_TOKEN": "bearer-t0ken-j1"},
			good:    func([]byte) req { return req{headers: map[string]string{"Authorization": "Bearer bearer-t0ken-j1"}} },
			bad:     func([]byte) req { return req{headers: map[string]string{"Authorization": "Bearer bearer-t0ken-k2"}} },
			badCode: 401, badWWW: "Bearer"},
		{name: "header", vars: map[string]string{"AUTH_TYPE": "header", "AUTH_TOKEN": "header-t0ken-l3", "AUTH_HEADER": "X-Api-Token"},
			good:    func([]byte) req { return req{headers: map[string]string{"X-Api-Token": "header-t0ken-l3"}} },
			bad:     func([]byte) req { return req{headers: map[string]string{"X-Api-Token": "header-t0ken-m4"}} },
			badCode: 401},
		{name: "authheader", vars: map[string]string{"AUTH_TYPE": "authheader", "AUTH_TOKEN": "raw-t0ken-n5"},
			good:    func([]byte) req { return req{headers: map[string]string{"Authorization": "raw-t0ken-n5"}} },
			bad:     func([]byte) req { return req{headers: map[string]string{"Authorization": "Bearer raw-t0ken-n5"}} },
			badCode: 401},
		{name: "querystring", vars: map[string]string{"AUTH_TYPE": "querystring", "AUTH_TOKEN": "query-t0ken-o6"},
			good:    func([]byte) req { return req{path: "?token=query-t0ken-o6"} },
			bad:     func([]byte) req { return req{path: "?token=query-t0ken-p7"} },
			badCode: 401},
		{name: "splunk", vars: map[string]string{"AUTH_TYPE": "splunk", "AUTH_TOKEN": "hec-t0ken-q8"},
			good:    func([]byte) req { return req{headers: map[string]string{"Authorization": "Splunk hec-t0ken-q8"}} },
			bad:     func([]byte) req { return req{headers: map[string]string{"Authorization": "Splunk hec-t0ken-r9"}} },
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
		{name: "ip allowlist", vars: map[string]string{"WEBHOOK_SECRET": "mist-s3cret-a1", "AUTH_ALLOW_CIDRS": "10.0.0.0/8"},
			good: nil, // the test client is 127.0.0.1: only the refusal can be shown here
			bad: func(b []byte) req {
				return req{headers: map[string]string{"X-Mist-Signature-v2": loadgen.Sign("mist-s3cret-a1", b)}}
			},
			badCode: 403},
		{name: "ip allowlist admits loopback", vars: map[string]string{"WEBHOOK_SECRET": "mist-s3cret-a1", "AUTH_ALLOW_CIDRS": "127.0.0.0/8,::1/128"},
			good: func(b []byte) req {
				return req{headers: map[string]string{"X-Mist-Signature-v2": loadgen.Sign("mist-s3cret-a1", b)}}
			}},
		{name: "required header", vars: map[string]string{"WEBHOOK_SECRET": "mist-s3cret-a1", "AUTH_REQUIRE_HEADERS": "X-Tenant=acme"},
			good: func(b []byte) req {
				return req{headers: map[string]string{"X-Mist-Signature-v2": loadgen.Sign("mist-s3cret-a1", b), "X-Tenant": "acme"}}
			},
			bad: func(b []byte) req {
				return req{headers: map[string]string{"X-Mist-Signature-v2": loadgen.Sign("mist-s3cret-a1", b), "X-Tenant": "evil"}}
			},
			badCode: 401},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &lockedBuffer{}
			log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			cfg := defaults[auth.Config](t, tt.vars)
			v, err := cfg.Verifier(log)
			if err != nil {
				t.Fatalf("config %v: %v", tt.vars, err)
			}
			r := newRig(t, rigOptions{noKafka: true, verifier: v, log: log})
			// Every credential of the test: none may appear in any log line.
			var secrets []string
			for _, k := range []string{"WEBHOOK_SECRET", "AUTH_TOKEN", "AUTH_PASSWORD"} {
				for _, v := range strings.Split(tt.vars[k], ",") {
					if v = strings.TrimSpace(v); v != "" {
						secrets = append(secrets, v)
					}
				}
			}
			sent := func(q req) {
				if tok, ok := strings.CutPrefix(q.path, "?token="); ok {
					secrets = append(secrets, tok)
				}
				for k, v := range q.headers {
					if k == "Authorization" || strings.Contains(k, "Signature") || strings.Contains(k, "Token") {
						secrets = append(secrets, v)
					}
				}
			}
			defer func() { checkLogs(t, logs.String(), secrets) }()
			topic := "auth-" + strconv.Itoa(i)
			landed := 0
			if tt.good != nil {
				body := loadgen.Body(topic, 0, 2)
				g := tt.good(body)
				sent(g)
				if a := post(t, r.url+"/webhooks/mist"+g.path, body, g.headers); a.code != 200 {
					t.Fatalf("good request: %d %v", a.code, a.body)
				}
				landed = 2
			}
			if tt.bad != nil {
				body := loadgen.Body(topic, 10, 3)
				b := tt.bad(body)
				sent(b)
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

// lockedBuffer is a log destination safe for the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// checkLogs fails when a log line carries a credential or a webhook's
// body, or when a request's lines lack its request id: every line about a
// webhook request names the request it belongs to.
func checkLogs(t *testing.T, logs string, secrets []string) {
	t.Helper()
	summaries := 0
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if line == "" {
			continue
		}
		for _, sec := range secrets {
			if strings.Contains(line, sec) {
				t.Errorf("a log line carries a credential (%d chars): %s", len(sec), line)
			}
		}
		if strings.Contains(line, `"device_name"`) || strings.Contains(line, "e2e-ap-") || strings.Contains(line, `\"events\"`) {
			t.Errorf("a log line carries a webhook body: %s", line)
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("log line is not JSON: %s", line)
			continue
		}
		if rec["msg"] == "webhook" || strings.HasPrefix(fmt.Sprint(rec["msg"]), "webhook ") {
			if id, _ := rec["request_id"].(string); id == "" {
				t.Errorf("a request's log line has no request_id: %s", line)
			}
		}
		if rec["msg"] == "webhook" {
			summaries++
			for _, k := range []string{"receiver", "topic", "events", "status", "duration"} {
				if _, ok := rec[k]; !ok {
					t.Errorf("the request's summary line lacks %s: %s", k, line)
				}
			}
		}
	}
	if summaries == 0 {
		t.Errorf("no request summary line (msg=webhook) in the log:\n%s", logs)
	}
}
