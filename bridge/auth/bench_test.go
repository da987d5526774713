package auth

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// Each benchmark verifies one accepted request: the cost a scheme adds to
// every webhook. Run: go test -run '^$' -bench . -benchmem ./bridge/auth/

func benchVerify(b *testing.B, v Verifier, r *http.Request, body []byte) {
	b.Helper()
	if err := v.Verify(r, body); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if err := v.Verify(r, body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMist(b *testing.B) {
	audits := auditsBody(b)
	m, _ := NewMist([]string{"test-secret"})
	m2, _ := NewMist([]string{"old-secret", "test-secret"})
	b.Run("v2", func(b *testing.B) { benchVerify(b, m, request("/", "X-Mist-Signature-v2: "+auditsV2), audits) })
	b.Run("v1", func(b *testing.B) { benchVerify(b, m, request("/", "X-Mist-Signature: "+auditsV1), audits) })
	b.Run("v2-two-secrets", func(b *testing.B) { benchVerify(b, m2, request("/", "X-Mist-Signature-v2: "+auditsV2), audits) })
}

func BenchmarkHMAC(b *testing.B) {
	gh, _ := NewHMAC(githubOpts)
	sl, _ := NewHMAC(with(slackOpts, func(o *HMACOptions) { o.Now = at(slackTS, 0) }))
	sw, _ := NewHMAC(with(swOpts, func(o *HMACOptions) { o.Now = at(swTS, 0) }))
	b.Run("github", func(b *testing.B) { benchVerify(b, gh, request("/", "X-Hub-Signature-256: "+ghSig), []byte(ghBody)) })
	b.Run("slack", func(b *testing.B) {
		benchVerify(b, sl, request("/", "X-Slack-Signature: "+slackSig, "X-Slack-Request-Timestamp: "+slackTS), []byte(slackBody))
	})
	b.Run("standard-webhooks", func(b *testing.B) {
		benchVerify(b, sw, request("/", "webhook-signature: "+swSig, "webhook-timestamp: "+swTS, "webhook-id: "+swID), []byte(swBody))
	})
}

func BenchmarkBasic(b *testing.B) {
	v, _ := NewBasic("mist", "a-long-enough-password")
	benchVerify(b, v, request("/", basicHeader("mist", "a-long-enough-password")), []byte(pingBody))
}

func BenchmarkBearer(b *testing.B) {
	v, _ := NewBearer([]string{"tok-1", "tok-2-a-longer-one"})
	benchVerify(b, v, request("/", "Authorization: Bearer tok-2-a-longer-one"), []byte(pingBody))
}

func BenchmarkHeader(b *testing.B) {
	v, _ := NewHeaderToken("X-Api-Token", []string{"tok-2-a-longer-one"})
	benchVerify(b, v, request("/", "X-Api-Token: tok-2-a-longer-one"), []byte(pingBody))
}

func BenchmarkAuthHeader(b *testing.B) {
	v, _ := NewAuthHeader([]string{"Token tok-2-a-longer-one"})
	benchVerify(b, v, request("/", "Authorization: Token tok-2-a-longer-one"), []byte(pingBody))
}

func BenchmarkQueryString(b *testing.B) {
	v, _ := NewQueryToken("", []string{"tok-2-a-longer-one"})
	benchVerify(b, v, request("/webhooks/mist?topic=audits&token=tok-2-a-longer-one"), []byte(pingBody))
}

func BenchmarkSplunk(b *testing.B) {
	v, _ := NewSplunk([]string{"tok-2-a-longer-one"})
	benchVerify(b, v, request("/", "Authorization: Splunk tok-2-a-longer-one"), []byte(pingBody))
}

func BenchmarkJWT(b *testing.B) {
	testKeys(b)
	srv := newJWKSServerB(b)
	pub := map[string]any{"rsa": &rsaKey.PublicKey, "ec": &ecKey.PublicKey}
	for kid, k := range pub {
		alg := jwkset.AlgRS256
		if kid == "ec" {
			alg = jwkset.AlgES256
		}
		jk, _ := jwkset.NewJWKFromKey(k, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid, ALG: alg}})
		srv.keys[kid] = jk
	}
	j, err := NewJWT(context.Background(), JWTOptions{JWKSURL: srv.URL, Issuer: testIssuer, Audience: []string{testAudience}})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	c := jwt.RegisteredClaims{Issuer: testIssuer, Audience: jwt.ClaimStrings{testAudience}, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}
	b.Run("RS256", func(b *testing.B) {
		benchVerify(b, j, request("/", "Authorization: Bearer "+sign(b, jwt.SigningMethodRS256, rsaKey, "rsa", c)), []byte(pingBody))
	})
	b.Run("ES256", func(b *testing.B) {
		benchVerify(b, j, request("/", "Authorization: Bearer "+sign(b, jwt.SigningMethodES256, ecKey, "ec", c)), []byte(pingBody))
	})
}

func newJWKSServerB(b *testing.B) *jwksServer {
	s := &jwksServer{keys: map[string]jwkset.JWK{}}
	s.Server = newJWKSHTTPServer(s)
	b.Cleanup(s.Close)
	return s
}

func BenchmarkNone(b *testing.B) {
	benchVerify(b, NewNone(), request("/"), []byte(pingBody))
}

func BenchmarkIPAllow(b *testing.B) {
	a, _ := NewIPAllow(NewNone(), []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")}, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	b.Run("peer", func(b *testing.B) {
		r := request("/")
		r.RemoteAddr = "192.0.2.1:4242"
		benchVerify(b, a, r, []byte(pingBody))
	})
	b.Run("forwarded", func(b *testing.B) {
		r := request("/", "X-Forwarded-For: 203.0.113.9, 192.0.2.1, 10.0.0.2")
		r.RemoteAddr = "10.0.0.1:4242"
		benchVerify(b, a, r, []byte(pingBody))
	})
}

func BenchmarkRequireHeaders(b *testing.B) {
	h, _ := NewRequireHeaders(NewNone(), map[string]string{"X-Api-Token": "abc", "X-Csrf-Token": "def"})
	benchVerify(b, h, request("/", "X-Api-Token: abc", "X-Csrf-Token: def"), []byte(pingBody))
}

func BenchmarkReplay(b *testing.B) {
	ids := make([]string, 1<<16)
	for i := range ids {
		ids[i] = "msg_" + strconv.Itoa(i)
	}
	n := 0
	p, _ := NewReplay(NewNone(), func(*http.Request) (string, bool) {
		n++
		return ids[n%len(ids)] + base64.RawStdEncoding.EncodeToString([]byte{byte(n >> 16), byte(n >> 24)}), true
	}, ReplayOptions{Size: 10_000})
	benchVerify(b, p, request("/"), []byte(pingBody))
}
