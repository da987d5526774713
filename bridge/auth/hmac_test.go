package auth

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"strings"
	"testing"
	"time"
)

// Published vectors:
//   - GitHub's "Validating webhook deliveries" (secret, payload, X-Hub-Signature-256),
//   - Slack's "Verifying requests from Slack" (signing secret, timestamp, body, X-Slack-Signature),
//   - Standard Webhooks / Svix reference tests (whsec_ secret, id, timestamp, payload, signature).
const (
	ghSecret = "It's a Secret to Everybody"
	ghBody   = "Hello, World!"
	ghSig    = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

	slackSecret = "8f742231b10e8888abcd99yyyzzz85a5"
	slackTS     = "1531420618"
	slackBody   = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
	slackSig    = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"

	swSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	swID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	swTS     = "1614265330"
	swBody   = `{"test": 2432232314}`
	swSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

var (
	githubOpts = HMACOptions{Header: "X-Hub-Signature-256", Prefix: "sha256=", Secrets: []string{ghSecret}}
	slackOpts  = HMACOptions{
		Header: "X-Slack-Signature", Prefix: "v0=", Template: "v0:{timestamp}:{body}",
		TimestampHeader: "X-Slack-Request-Timestamp", Secrets: []string{slackSecret},
	}
	swOpts = HMACOptions{
		Header: "webhook-signature", Encoding: "base64", Prefix: "v1,", Template: "{id}.{timestamp}.{body}",
		TimestampHeader: "webhook-timestamp", IDHeader: "webhook-id", Secrets: []string{swSecret},
	}
)

// reference computes an HMAC with the standard library alone.
func reference(h func() hash.Hash, key, content string) []byte {
	m := hmac.New(h, []byte(key))
	m.Write([]byte(content))
	return m.Sum(nil)
}

func at(unix string, skew time.Duration) func() time.Time {
	return func() time.Time {
		var sec int64
		for _, c := range unix {
			sec = sec*10 + int64(c-'0')
		}
		return time.Unix(sec, 0).Add(skew)
	}
}

func with(o HMACOptions, f func(*HMACOptions)) HMACOptions {
	o.Secrets = append([]string(nil), o.Secrets...)
	f(&o)
	return o
}

func TestHMAC(t *testing.T) {
	slackAt := func(skew time.Duration) HMACOptions {
		return with(slackOpts, func(o *HMACOptions) { o.Now = at(slackTS, skew) })
	}
	swAt := with(swOpts, func(o *HMACOptions) { o.Now = at(swTS, time.Minute) })
	swSigRaw := strings.TrimSuffix(swSig, "=")
	sha512Key := "k512"
	sha512Sig := base64.StdEncoding.EncodeToString(reference(sha512.New, sha512Key, ghBody))
	sha1Sig := "sha1=" + hex.EncodeToString(reference(sha1.New, ghSecret, ghBody))

	tests := []struct {
		name    string
		opts    HMACOptions
		body    string
		headers []string
		want    string
	}{
		// GitHub.
		{"github", githubOpts, ghBody, []string{"X-Hub-Signature-256: " + ghSig}, ""},
		{"github prefix in capitals", githubOpts, ghBody, []string{"X-Hub-Signature-256: SHA256=" + ghSig[7:]}, ""},
		{"github rotation", with(githubOpts, func(o *HMACOptions) { o.Secrets = []string{"new", ghSecret} }), ghBody, []string{"X-Hub-Signature-256: " + ghSig}, ""},
		{"github wrong secret", with(githubOpts, func(o *HMACOptions) { o.Secrets = []string{"nope"} }), ghBody, []string{"X-Hub-Signature-256: " + ghSig}, ReasonSignatureMismatch},
		{"github other body", githubOpts, ghBody + "!", []string{"X-Hub-Signature-256: " + ghSig}, ReasonSignatureMismatch},
		{"github prefix required", githubOpts, ghBody, []string{"X-Hub-Signature-256: " + ghSig[7:]}, ReasonSignatureMalformed},
		{"github short", githubOpts, ghBody, []string{"X-Hub-Signature-256: " + ghSig[:len(ghSig)-2]}, ReasonSignatureMalformed},
		{"github missing", githubOpts, ghBody, nil, ReasonSignatureMissing},
		{"github delivery id required", with(githubOpts, func(o *HMACOptions) { o.IDHeader = "X-GitHub-Delivery" }), ghBody, []string{"X-Hub-Signature-256: " + ghSig}, ReasonDeliveryIDMissing},
		{"github delivery id", with(githubOpts, func(o *HMACOptions) { o.IDHeader = "X-GitHub-Delivery" }), ghBody, []string{"X-Hub-Signature-256: " + ghSig, "X-GitHub-Delivery: 72d3162e-cc78-11e3-81ab-4c9367dc0958"}, ""},
		{"github sha1", HMACOptions{Header: "X-Hub-Signature", Algorithm: "sha1", Prefix: "sha1=", Secrets: []string{ghSecret}}, ghBody, []string{"X-Hub-Signature: " + sha1Sig}, ""},
		{"sha256 signature to sha1 verifier", HMACOptions{Header: "X-Hub-Signature", Algorithm: "sha1", Prefix: "sha256=", Secrets: []string{ghSecret}}, ghBody, []string{"X-Hub-Signature: " + ghSig}, ReasonSignatureMalformed},
		{"sha512 base64", HMACOptions{Header: "X-Sig", Algorithm: "SHA512", Encoding: "base64", Secrets: []string{sha512Key}}, ghBody, []string{"X-Sig: " + sha512Sig}, ""},
		{"sha512 base64 unpadded", HMACOptions{Header: "X-Sig", Algorithm: "sha512", Encoding: "base64", Secrets: []string{sha512Key}}, ghBody, []string{"X-Sig: " + strings.TrimRight(sha512Sig, "=")}, ""},
		{"hex where base64 expected", HMACOptions{Header: "X-Sig", Encoding: "base64", Secrets: []string{ghSecret}}, ghBody, []string{"X-Sig: " + ghSig[7:]}, ReasonSignatureMalformed},

		// Slack.
		{"slack", slackAt(30 * time.Second), slackBody, []string{"X-Slack-Signature: " + slackSig, "X-Slack-Request-Timestamp: " + slackTS}, ""},
		{"slack at the edge", slackAt(5 * time.Minute), slackBody, []string{"X-Slack-Signature: " + slackSig, "X-Slack-Request-Timestamp: " + slackTS}, ""},
		{"slack too old", slackAt(5*time.Minute + time.Second), slackBody, []string{"X-Slack-Signature: " + slackSig, "X-Slack-Request-Timestamp: " + slackTS}, ReasonTimestampOutOfWindow},
		{"slack from the future", slackAt(-6 * time.Minute), slackBody, []string{"X-Slack-Signature: " + slackSig, "X-Slack-Request-Timestamp: " + slackTS}, ReasonTimestampOutOfWindow},
		{"slack wider tolerance", with(slackAt(time.Hour), func(o *HMACOptions) { o.Tolerance = 2 * time.Hour }), slackBody, []string{"X-Slack-Signature: " + slackSig, "X-Slack-Request-Timestamp: " + slackTS}, ""},
		{"slack timestamp is signed", slackAt(0), slackBody, []string{"X-Slack-Signature: " + slackSig, "X-Slack-Request-Timestamp: 1531420619"}, ReasonSignatureMismatch},
		{"slack timestamp missing", slackAt(0), slackBody, []string{"X-Slack-Signature: " + slackSig}, ReasonTimestampMissing},
		{"slack timestamp fractional", slackAt(0), slackBody, []string{"X-Slack-Signature: " + slackSig, "X-Slack-Request-Timestamp: 1531420618.5"}, ReasonTimestampMalformed},
		{"slack timestamp huge", slackAt(0), slackBody, []string{"X-Slack-Signature: " + slackSig, "X-Slack-Request-Timestamp: -9223372036854775808"}, ReasonTimestampOutOfWindow},

		// Standard Webhooks.
		{"standard webhooks", swAt, swBody, []string{"webhook-signature: " + swSig, "webhook-timestamp: " + swTS, "webhook-id: " + swID}, ""},
		{"standard webhooks unpadded", swAt, swBody, []string{"webhook-signature: " + swSigRaw, "webhook-timestamp: " + swTS, "webhook-id: " + swID}, ""},
		{"standard webhooks several signatures", swAt, swBody, []string{"webhook-signature: v1,Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE= v2,xyz " + swSig, "webhook-timestamp: " + swTS, "webhook-id: " + swID}, ""},
		{"standard webhooks all wrong", swAt, swBody, []string{"webhook-signature: v1,Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE= v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "webhook-timestamp: " + swTS, "webhook-id: " + swID}, ReasonSignatureMismatch},
		{"standard webhooks id is signed", swAt, swBody, []string{"webhook-signature: " + swSig, "webhook-timestamp: " + swTS, "webhook-id: msg_other"}, ReasonSignatureMismatch},
		{"standard webhooks id missing", swAt, swBody, []string{"webhook-signature: " + swSig, "webhook-timestamp: " + swTS}, ReasonDeliveryIDMissing},
		{"standard webhooks wrong version", swAt, swBody, []string{"webhook-signature: v1a," + swSig[3:], "webhook-timestamp: " + swTS, "webhook-id: " + swID}, ReasonSignatureMalformed},
		{"standard webhooks secret not decoded", with(swAt, func(o *HMACOptions) { o.Secrets = []string{strings.TrimPrefix(swSecret, "whsec_")} }), swBody, []string{"webhook-signature: " + swSig, "webhook-timestamp: " + swTS, "webhook-id: " + swID}, ReasonSignatureMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := NewHMAC(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			checkResult(t, h.Verify(request("/", tt.headers...), []byte(tt.body)), tt.want)
		})
	}
}

func TestHMACDefaults(t *testing.T) {
	h, err := NewHMAC(HMACOptions{Header: "X-Sig", Secrets: []string{"k"}})
	if err != nil {
		t.Fatal(err)
	}
	sig := hex.EncodeToString(reference(sha256.New, "k", "body"))
	checkResult(t, h.Verify(request("/", "X-Sig: "+sig), []byte("body")), "")
	if got, want := h.String(), `hmac(header=X-Sig algorithm=sha256 encoding=hex prefix="" template="{body}" timestamp_header= tolerance=5m0s id_header= secrets=1)`; got != want {
		t.Errorf("String = %s, want %s", got, want)
	}
}

func TestNewHMACErrors(t *testing.T) {
	base := HMACOptions{Header: "X-Sig", Secrets: []string{"k"}}
	tests := []struct {
		name string
		f    func(*HMACOptions)
		want string
	}{
		{"no header", func(o *HMACOptions) { o.Header = " " }, "header is required"},
		{"md5", func(o *HMACOptions) { o.Algorithm = "md5" }, "want sha1, sha256 or sha512"},
		{"base32", func(o *HMACOptions) { o.Encoding = "base32" }, "want hex or base64"},
		{"no body", func(o *HMACOptions) { o.Template = "{timestamp}"; o.TimestampHeader = "X-T" }, "{body} exactly once"},
		{"two bodies", func(o *HMACOptions) { o.Template = "{body}{body}" }, "{body} exactly once"},
		{"unknown placeholder", func(o *HMACOptions) { o.Template = "{ts}.{body}" }, "unknown placeholder"},
		{"timestamp without header", func(o *HMACOptions) { o.Template = "{timestamp}.{body}" }, "no timestamp header"},
		{"header without timestamp", func(o *HMACOptions) { o.TimestampHeader = "X-T" }, "does not sign {timestamp}"},
		{"id without header", func(o *HMACOptions) { o.Template = "{id}.{body}" }, "no delivery id header"},
		{"negative tolerance", func(o *HMACOptions) { o.Tolerance = -time.Second }, "negative"},
		{"no secret", func(o *HMACOptions) { o.Secrets = []string{" ", ""} }, "no secret"},
		{"bad whsec", func(o *HMACOptions) { o.Secrets = []string{"whsec_!!not-base64-SECRETVALUE"} }, "base64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := with(base, tt.f)
			_, err := NewHMAC(o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewHMAC = %v, want an error containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "SECRETVALUE") {
				t.Fatalf("error quotes the secret: %v", err)
			}
		})
	}
}

func TestHMACDeliveryKey(t *testing.T) {
	sw, _ := NewHMAC(swOpts)
	gh, _ := NewHMAC(with(githubOpts, func(o *HMACOptions) { o.IDHeader = "X-GitHub-Delivery" }))
	sl, _ := NewHMAC(slackOpts)
	plain, _ := NewHMAC(githubOpts)
	r := request("/", "webhook-id: a", "webhook-timestamp: 1", "X-GitHub-Delivery: d", "X-Slack-Request-Timestamp: 2", "X-Slack-Signature: v0=s")
	for _, tt := range []struct {
		h    *HMAC
		key  string
		keyd bool
	}{
		{sw, "a\x001", true},
		{gh, "d", true},
		{sl, "2\x00v0=s", true},
		{plain, "", false},
	} {
		if k, ok := tt.h.DeliveryKey(r); k != tt.key || ok != tt.keyd {
			t.Errorf("%s: DeliveryKey = %q, %v; want %q, %v", tt.h, k, ok, tt.key, tt.keyd)
		}
	}
}
