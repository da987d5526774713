package loadgen

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mistbridge/mistbridge/bridge/auth"
)

// TestAuthAgainstTheBridge signs with every scheme and checks the request
// with the bridge's own verifier for that scheme (the oracle): once through
// Auth.Headers, once through a whole run on the raw client; and that the
// verifier refuses what the sender signs with other credentials.
func TestAuthAgainstTheBridge(t *testing.T) {
	must := func(v auth.Verifier, err error) auth.Verifier {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	whsec := "whsec_" + base64.StdEncoding.EncodeToString([]byte("standard webhooks key"))
	tests := []struct {
		name  string
		a     Auth
		wrong Auth
		v     auth.Verifier
	}{
		{"mist", Auth{Secret: "s3cret"}, Auth{Secret: "other"}, must(auth.NewMist([]string{"s3cret"}))},
		{"mist v2 only", Auth{Scheme: "mist", Secret: "s3cret", MistV2Only: true}, Auth{Scheme: "mist", Secret: "x"}, must(auth.NewMist([]string{"s3cret"}))},
		{"hmac github", Auth{Scheme: "hmac", Secret: "gh", Header: "X-Hub-Signature-256", Prefix: "sha256=", IDHeader: "X-GitHub-Delivery"},
			Auth{Scheme: "hmac", Secret: "gh", Header: "X-Hub-Signature-256", Prefix: "sha1=", IDHeader: "X-GitHub-Delivery"},
			must(auth.NewHMAC(auth.HMACOptions{Header: "X-Hub-Signature-256", Prefix: "sha256=", IDHeader: "X-GitHub-Delivery", Secrets: []string{"gh"}}))},
		{"hmac slack", Auth{Scheme: "hmac", Secret: "sl", Header: "X-Slack-Signature", Prefix: "v0=", Template: "v0:{timestamp}:{body}", TimestampHeader: "X-Slack-Request-Timestamp"},
			Auth{Scheme: "hmac", Secret: "sl", Header: "X-Slack-Signature", Prefix: "v0=", Template: "v1:{timestamp}:{body}", TimestampHeader: "X-Slack-Request-Timestamp"},
			must(auth.NewHMAC(auth.HMACOptions{Header: "X-Slack-Signature", Prefix: "v0=", Template: "v0:{timestamp}:{body}", TimestampHeader: "X-Slack-Request-Timestamp", Secrets: []string{"sl"}}))},
		{"hmac standard webhooks", Auth{Scheme: "hmac", Secret: whsec, Header: "webhook-signature", Encoding: "base64", Prefix: "v1,", Template: "{id}.{timestamp}.{body}", TimestampHeader: "webhook-timestamp", IDHeader: "webhook-id"},
			Auth{Scheme: "hmac", Secret: "whsec_b3RoZXI=", Header: "webhook-signature", Encoding: "base64", Prefix: "v1,", Template: "{id}.{timestamp}.{body}", TimestampHeader: "webhook-timestamp", IDHeader: "webhook-id"},
			must(auth.NewHMAC(auth.HMACOptions{Header: "webhook-signature", Encoding: "base64", Prefix: "v1,", Template: "{id}.{timestamp}.{body}", TimestampHeader: "webhook-timestamp", IDHeader: "webhook-id", Secrets: []string{whsec}}))},
		{"hmac sha512", Auth{Scheme: "hmac", Secret: "k", Header: "X-Sig", Algorithm: "sha512"}, Auth{Scheme: "hmac", Secret: "k", Header: "X-Sig", Algorithm: "sha256"},
			must(auth.NewHMAC(auth.HMACOptions{Header: "X-Sig", Algorithm: "sha512", Secrets: []string{"k"}}))},
		{"basic", Auth{Scheme: "basic", User: "mist", Password: "pw"}, Auth{Scheme: "basic", User: "mist", Password: "no"}, must(auth.NewBasic("mist", "pw"))},
		{"bearer", Auth{Scheme: "bearer", Token: "tok"}, Auth{Scheme: "bearer", Token: "bad"}, must(auth.NewBearer([]string{"tok"}))},
		{"authheader", Auth{Scheme: "authheader", Token: "Token tok"}, Auth{Scheme: "authheader", Token: "tok"}, must(auth.NewAuthHeader([]string{"Token tok"}))},
		{"header", Auth{Scheme: "header", Header: "X-Api-Token", Token: "tok"}, Auth{Scheme: "header", Header: "X-Other", Token: "tok"}, must(auth.NewHeaderToken("X-Api-Token", []string{"tok"}))},
		{"querystring", Auth{Scheme: "querystring", Token: "t/k&n"}, Auth{Scheme: "querystring", QueryParam: "key", Token: "t/k&n"}, must(auth.NewQueryToken("", []string{"t/k&n"}))},
		{"splunk", Auth{Scheme: "splunk", Token: "hec"}, Auth{Scheme: "bearer", Token: "hec"}, must(auth.NewSplunk([]string{"hec"}))},
	}
	body := Body("device-events", 0, 2)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check := func(a Auth) error {
				h, err := a.Headers(body)
				if err != nil {
					t.Fatal(err)
				}
				u, err := a.URL("http://bridge/webhooks/mist")
				if err != nil {
					t.Fatal(err)
				}
				r := httptest.NewRequest(http.MethodPost, u, strings.NewReader(string(body)))
				for k, v := range h {
					r.Header[k] = v
				}
				return tt.v.Verify(r, body)
			}
			if err := check(tt.a); err != nil {
				t.Errorf("the bridge refuses the signed request: %v", err)
			}
			if err := check(tt.wrong); err == nil {
				t.Errorf("the bridge accepts a request signed with other credentials")
			}
			if tt.a.Scheme == "" { // Mist's SHA-1 signature alone must pass too
				h, _ := tt.a.Headers(body)
				r := httptest.NewRequest(http.MethodPost, "/", nil)
				r.Header.Set("X-Mist-Signature", h.Get("X-Mist-Signature"))
				if err := tt.v.Verify(r, body); err != nil {
					t.Errorf("X-Mist-Signature alone: %v", err)
				}
			}

			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				if err := tt.v.Verify(r, b); err != nil {
					w.WriteHeader(http.StatusUnauthorized)
					_, _ = io.WriteString(w, auth.Reason(err))
				}
			}))
			defer srv.Close()
			res, err := Run(context.Background(), Config{URL: srv.URL + "/webhooks/mist", Auth: tt.a, Concurrency: 1, Duration: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if res.Requests == 0 || res.Codes[200] != res.Requests {
				t.Errorf("run: %s %v", res.CodeList(), res.Answers)
			}
		})
	}
}
