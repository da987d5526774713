package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// panicBody fails the test if anyone reads it: a Precheck runs without a body.
type panicBody struct{ t *testing.T }

func (p panicBody) Read([]byte) (int, error) {
	p.t.Error("Precheck read the body")
	return 0, errors.New("read")
}
func (panicBody) Close() error { return nil }

// consistent checks the contract of Precheck against Verify for one
// request: Precheck never refuses what Verify accepts, and what it refuses
// Verify refuses for the same reason and sentinel.
func consistent(t *testing.T, v Verifier, r *http.Request, body []byte) error {
	t.Helper()
	r.Body = panicBody{t}
	pre := Precheck(v, r)
	full := v.Verify(r, body)
	switch {
	case full == nil && pre != nil:
		t.Fatalf("Precheck refused (%v) what Verify accepts", pre)
	case pre != nil && Reason(pre) != Reason(full):
		t.Fatalf("Precheck reason %q, Verify reason %q", Reason(pre), Reason(full))
	case pre != nil && errors.Is(pre, ErrForbidden) != errors.Is(full, ErrForbidden):
		t.Fatalf("Precheck %v and Verify %v differ in sentinel", pre, full)
	case pre != nil && Challenge(pre) != Challenge(full):
		t.Fatalf("Precheck challenge %q, Verify challenge %q", Challenge(pre), Challenge(full))
	}
	if !NeedsBody(v) && (pre == nil) != (full == nil) {
		t.Fatalf("headers-only scheme: Precheck %v but Verify %v", pre, full)
	}
	return pre
}

func TestPrecheck(t *testing.T) {
	testKeys(t)
	jwks := newJWKSServer(t)
	jwks.add(t, "k1", &rsaKey.PublicKey, jwkset.AlgRS256)
	goodJWT := sign(t, jwt.SigningMethodRS256, rsaKey, "k1", claims(nil))

	mist, _ := NewMist([]string{"test-secret"})
	gh, _ := NewHMAC(githubOpts)
	slack, _ := NewHMAC(with(slackOpts, func(o *HMACOptions) { o.Now = at(slackTS, 0) }))
	sw, _ := NewHMAC(with(swOpts, func(o *HMACOptions) { o.Now = at(swTS, 0) }))
	basic, _ := NewBasic("user", "pass")
	bearer, _ := NewBearer([]string{"tok"})
	header, _ := NewHeaderToken("X-Api-Token", []string{"tok"})
	authheader, _ := NewAuthHeader([]string{"tok"})
	query, _ := NewQueryToken("", []string{"tok"})
	splunk, _ := NewSplunk([]string{"tok"})
	j := newTestJWT(t, jwks, nil)
	allow := prefixes(t, "192.0.2.0/24")
	ipMist, _ := NewIPAllow(mist, allow, nil)
	ipBearer, _ := NewIPAllow(bearer, allow, nil)
	hdrMist, _ := NewRequireHeaders(mist, map[string]string{"X-Custom": "v"})
	ghReplay, _ := NewReplay(gh, gh.DeliveryKey, ReplayOptions{})
	ghID, _ := NewHMAC(with(githubOpts, func(o *HMACOptions) { o.IDHeader = "X-GitHub-Delivery" }))
	ghIDReplay, _ := NewReplay(ghID, ghID.DeliveryKey, ReplayOptions{})
	cfgMist, err := (&Config{WebhookSecret: []string{"test-secret"}, AllowCIDRs: []string{"192.0.2.0/24"}}).Verifier(nil)
	if err != nil {
		t.Fatal(err)
	}

	wrongSig := strings.Repeat("0", 64)
	const peer, stranger = "192.0.2.9:1234", "203.0.113.9:1234"
	tests := []struct {
		name    string
		v       Verifier
		remote  string
		target  string
		headers []string
		body    string
		want    string // Precheck's reason, "" for nil
	}{
		{"mist ok", mist, "", "/", []string{"X-Mist-Signature-v2: " + pingV2}, pingBody, ""},
		{"mist v1 ok", mist, "", "/", []string{"X-Mist-Signature: " + pingV1}, pingBody, ""},
		{"mist missing", mist, "", "/", nil, pingBody, ReasonSignatureMissing},
		{"mist malformed v2", mist, "", "/", []string{"X-Mist-Signature-v2: xyz", "X-Mist-Signature: " + pingV1}, pingBody, ReasonSignatureMalformed},
		{"mist v1 as v2", mist, "", "/", []string{"X-Mist-Signature-v2: " + pingV1}, pingBody, ReasonSignatureMalformed},
		{"mist wrong but well formed: left to Verify", mist, "", "/", []string{"X-Mist-Signature-v2: " + wrongSig}, pingBody, ""},

		{"github ok", gh, "", "/", []string{"X-Hub-Signature-256: " + ghSig}, ghBody, ""},
		{"github missing", gh, "", "/", nil, ghBody, ReasonSignatureMissing},
		{"github no prefix", gh, "", "/", []string{"X-Hub-Signature-256: " + strings.TrimPrefix(ghSig, "sha256=")}, ghBody, ReasonSignatureMalformed},
		{"github short hex", gh, "", "/", []string{"X-Hub-Signature-256: sha256=abcd"}, ghBody, ReasonSignatureMalformed},
		{"github replay wrapper", ghReplay, "", "/", []string{"X-Hub-Signature-256: sha256=zz"}, ghBody, ReasonSignatureMalformed},
		{"github id missing", ghIDReplay, "", "/", []string{"X-Hub-Signature-256: " + ghSig}, ghBody, ReasonDeliveryIDMissing},
		{"slack ok", slack, "", "/", []string{"X-Slack-Signature: " + slackSig, "X-Slack-Request-Timestamp: " + slackTS}, slackBody, ""},
		{"slack no timestamp", slack, "", "/", []string{"X-Slack-Signature: " + slackSig}, slackBody, ReasonTimestampMissing},
		{"slack bad timestamp", slack, "", "/", []string{"X-Slack-Signature: " + slackSig, "X-Slack-Request-Timestamp: soon"}, slackBody, ReasonTimestampMalformed},
		{"slack old timestamp", slack, "", "/", []string{"X-Slack-Signature: " + slackSig, "X-Slack-Request-Timestamp: 1000"}, slackBody, ReasonTimestampOutOfWindow},
		{"standard webhooks ok", sw, "", "/", []string{"webhook-signature: " + swSig, "webhook-timestamp: " + swTS, "webhook-id: " + swID}, swBody, ""},
		{"standard webhooks not base64", sw, "", "/", []string{"webhook-signature: v1,!!!", "webhook-timestamp: " + swTS, "webhook-id: " + swID}, swBody, ReasonSignatureMalformed},

		{"basic ok", basic, "", "/", []string{"Authorization: Basic dXNlcjpwYXNz"}, pingBody, ""},
		{"basic wrong", basic, "", "/", []string{"Authorization: Basic dXNlcjp4"}, pingBody, ReasonCredentialsInvalid},
		{"basic missing", basic, "", "/", nil, pingBody, ReasonCredentialsMissing},
		{"bearer ok", bearer, "", "/", []string{"Authorization: Bearer tok"}, pingBody, ""},
		{"bearer wrong", bearer, "", "/", []string{"Authorization: Bearer nope"}, pingBody, ReasonCredentialsInvalid},
		{"bearer other scheme", bearer, "", "/", []string{"Authorization: Basic dXNlcjpwYXNz"}, pingBody, ReasonCredentialsMalformed},
		{"header ok", header, "", "/", []string{"X-Api-Token: tok"}, pingBody, ""},
		{"header missing", header, "", "/", nil, pingBody, ReasonCredentialsMissing},
		{"authheader ok", authheader, "", "/", []string{"Authorization: tok"}, pingBody, ""},
		{"authheader wrong", authheader, "", "/", []string{"Authorization: Bearer tok"}, pingBody, ReasonCredentialsInvalid},
		{"querystring ok", query, "", "/?token=tok", nil, pingBody, ""},
		{"querystring wrong", query, "", "/?token=x", nil, pingBody, ReasonCredentialsInvalid},
		{"splunk ok", splunk, "", "/", []string{"Authorization: Splunk tok"}, pingBody, ""},
		{"splunk wrong", splunk, "", "/", []string{"Authorization: Splunk x"}, pingBody, ReasonCredentialsInvalid},
		{"jwt ok", j, "", "/", []string{"Authorization: Bearer " + goodJWT}, pingBody, ""},
		{"jwt garbage", j, "", "/", []string{"Authorization: Bearer a.b.c"}, pingBody, ReasonTokenInvalid},
		{"jwt missing", j, "", "/", nil, pingBody, ReasonCredentialsMissing},
		{"none", NewNone(), "", "/", nil, pingBody, ""},

		{"ip allowed, mist ok", ipMist, peer, "/", []string{"X-Mist-Signature-v2: " + pingV2}, pingBody, ""},
		{"ip refused before the signature", ipMist, stranger, "/", []string{"X-Mist-Signature-v2: " + pingV2}, pingBody, ReasonIPNotAllowed},
		{"ip allowed, signature missing", ipMist, peer, "/", nil, pingBody, ReasonSignatureMissing},
		{"ip refused, bearer", ipBearer, stranger, "/", []string{"Authorization: Bearer tok"}, pingBody, ReasonIPNotAllowed},
		{"ip allowed, bearer wrong", ipBearer, peer, "/", []string{"Authorization: Bearer x"}, pingBody, ReasonCredentialsInvalid},
		{"required header missing", hdrMist, "", "/", []string{"X-Mist-Signature-v2: " + pingV2}, pingBody, ReasonHeaderMissing},
		{"required header wrong", hdrMist, "", "/", []string{"X-Custom: w", "X-Mist-Signature-v2: " + pingV2}, pingBody, ReasonHeaderMismatch},
		{"required header ok", hdrMist, "", "/", []string{"X-Custom: v", "X-Mist-Signature-v2: " + pingV2}, pingBody, ""},
		{"config chain refuses a stranger", cfgMist, stranger, "/", []string{"X-Mist-Signature-v2: " + pingV2}, pingBody, ReasonIPNotAllowed},
		{"config chain, signature missing", cfgMist, peer, "/", nil, pingBody, ReasonSignatureMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := request(tt.target, tt.headers...)
			if tt.remote != "" {
				r.RemoteAddr = tt.remote
			}
			err := consistent(t, tt.v, r, []byte(tt.body))
			checkResult(t, err, tt.want)
		})
	}
}

func TestCapabilities(t *testing.T) {
	mist, _ := NewMist([]string{"s"})
	splunk, _ := NewSplunk([]string{"t"})
	bearer, _ := NewBearer([]string{"t"})
	ipSplunk, _ := NewIPAllow(splunk, prefixes(t, "192.0.2.0/24"), nil)
	fn := VerifierFunc(func(*http.Request, []byte) error { return nil })
	tests := []struct {
		name                string
		v                   Verifier
		needsBody, isSplunk bool
	}{
		{"mist", mist, true, false},
		{"bearer", bearer, false, false},
		{"splunk", splunk, false, true},
		{"wrapped splunk", ipSplunk, false, true},
		{"none", NewNone(), false, false},
		{"unknown verifier: careful defaults", fn, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NeedsBody(tt.v); got != tt.needsBody {
				t.Errorf("NeedsBody = %v, want %v", got, tt.needsBody)
			}
			if got := IsSplunk(tt.v); got != tt.isSplunk {
				t.Errorf("IsSplunk = %v, want %v", got, tt.isSplunk)
			}
		})
	}
	// An unknown verifier has nothing checked early; Verify still runs.
	refuse := VerifierFunc(func(*http.Request, []byte) error { return Unauthorized(ReasonCredentialsInvalid, "") })
	if err := Precheck(refuse, request("/")); err != nil {
		t.Errorf("Precheck of an unknown body verifier = %v, want nil", err)
	}
}

// FuzzPrecheck checks Precheck against Verify on arbitrary signature
// headers: Precheck never refuses what Verify accepts, and agrees with
// Verify's reason whenever it refuses.
func FuzzPrecheck(f *testing.F) {
	f.Add(pingV2, pingV1, swSig, swTS, swID)
	f.Add("", pingV1, "v1,", "", "")
	f.Add("xyz", "", "v1,AAAA v1,"+swSig[3:], swTS, swID)
	f.Add(strings.ToUpper(pingV2), "", strings.Repeat("v1,x ", 20), "+1614265330", "")
	mist, _ := NewMist([]string{"test-secret"})
	sw, _ := NewHMAC(with(swOpts, func(o *HMACOptions) { o.Now = at(swTS, 0) }))
	hx, _ := NewHMAC(HMACOptions{Header: "X-Sig", Prefix: "sha256=", Secrets: []string{"k"}})
	sum := sha256.Sum256([]byte(pingBody))
	f.Add(hex.EncodeToString(sum[:]), "", "", "", "")
	f.Fuzz(func(t *testing.T, v2, v1, sig, ts, id string) {
		r := request("/")
		r.Header["X-Mist-Signature-V2"] = []string{v2}
		r.Header["X-Mist-Signature"] = []string{v1}
		consistent(t, mist, r, []byte(pingBody))

		r = request("/")
		r.Header["Webhook-Signature"] = []string{sig}
		r.Header["Webhook-Timestamp"] = []string{ts}
		r.Header["Webhook-Id"] = []string{id}
		consistent(t, sw, r, []byte(swBody))

		r = request("/")
		r.Header["X-Sig"] = []string{sig}
		consistent(t, hx, r, []byte(pingBody))
	})
}
