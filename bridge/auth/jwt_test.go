package auth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

const (
	testIssuer   = "https://idp.example.com/"
	testAudience = "mistbridge"
)

// jwksServer serves a JWKS whose keys a test can change, and counts fetches.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	keys    map[string]jwkset.JWK
	fetches atomic.Int32
}

func newJWKSServer(t *testing.T) *jwksServer {
	s := &jwksServer{keys: map[string]jwkset.JWK{}}
	s.Server = newJWKSHTTPServer(s)
	t.Cleanup(s.Close)
	return s
}

func newJWKSHTTPServer(s *jwksServer) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		store := jwkset.NewMemoryStorage()
		s.mu.Lock()
		for _, k := range s.keys {
			_ = store.KeyWrite(r.Context(), k)
		}
		s.mu.Unlock()
		raw, err := store.JSONPublic(r.Context())
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(raw)
	}))
}

func (s *jwksServer) add(t *testing.T, kid string, pub any, alg jwkset.ALG) {
	t.Helper()
	k, err := jwkset.NewJWKFromKey(pub, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid, ALG: alg, USE: jwkset.UseSig}})
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.keys[kid] = k
	s.mu.Unlock()
}

func (s *jwksServer) remove(kid string) {
	s.mu.Lock()
	delete(s.keys, kid)
	s.mu.Unlock()
}

var (
	keysOnce sync.Once
	rsaKey   *rsa.PrivateKey
	rsaKey2  *rsa.PrivateKey
	ecKey    *ecdsa.PrivateKey
)

func testKeys(t testing.TB) {
	keysOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			t.Fatal(err)
		}
		if rsaKey2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			t.Fatal(err)
		}
		if ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			t.Fatal(err)
		}
	})
}

// sign makes a token; kid "" leaves the header without one.
func sign(t testing.TB, m jwt.SigningMethod, key any, kid string, claims jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var jwtNow = time.Unix(1_760_000_000, 0)

func claims(f func(*jwt.RegisteredClaims)) jwt.RegisteredClaims {
	c := jwt.RegisteredClaims{
		Issuer:    testIssuer,
		Subject:   "mist-webhooks",
		Audience:  jwt.ClaimStrings{testAudience},
		ExpiresAt: jwt.NewNumericDate(jwtNow.Add(5 * time.Minute)),
		IssuedAt:  jwt.NewNumericDate(jwtNow.Add(-time.Minute)),
	}
	if f != nil {
		f(&c)
	}
	return c
}

func newTestJWT(t *testing.T, srv *jwksServer, f func(*JWTOptions)) *JWT {
	t.Helper()
	o := JWTOptions{
		JWKSURL:  srv.URL + "/.well-known/jwks.json",
		Issuer:   testIssuer,
		Audience: []string{testAudience, "other-app"},
		Now:      func() time.Time { return jwtNow },
	}
	if f != nil {
		f(&o)
	}
	j, err := NewJWT(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() })
	return j
}

func TestJWT(t *testing.T) {
	testKeys(t)
	srv := newJWKSServer(t)
	srv.add(t, "rsa1", &rsaKey.PublicKey, jwkset.AlgRS256)
	srv.add(t, "ec1", &ecKey.PublicKey, jwkset.AlgES256)
	j := newTestJWT(t, srv, nil)

	pubDER, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	rs384 := &jwt.SigningMethodRSA{Name: "RS384", Hash: jwt.SigningMethodRS384.Hash}

	tests := []struct {
		name  string
		auth  string
		want  string
		chall string
	}{
		{"RS256", "Bearer " + sign(t, jwt.SigningMethodRS256, rsaKey, "rsa1", claims(nil)), "", ""},
		{"ES256", "Bearer " + sign(t, jwt.SigningMethodES256, ecKey, "ec1", claims(nil)), "", ""},
		{"no kid: every key tried", "Bearer " + sign(t, jwt.SigningMethodES256, ecKey, "", claims(nil)), "", ""},
		{"second audience", "Bearer " + sign(t, jwt.SigningMethodRS256, rsaKey, "rsa1", claims(func(c *jwt.RegisteredClaims) { c.Audience = jwt.ClaimStrings{"x", "other-app"} })), "", ""},
		{"expired within leeway", "Bearer " + sign(t, jwt.SigningMethodRS256, rsaKey, "rsa1", claims(func(c *jwt.RegisteredClaims) { c.ExpiresAt = jwt.NewNumericDate(jwtNow.Add(-30 * time.Second)) })), "", ""},
		{"expired", "Bearer " + sign(t, jwt.SigningMethodRS256, rsaKey, "rsa1", claims(func(c *jwt.RegisteredClaims) { c.ExpiresAt = jwt.NewNumericDate(jwtNow.Add(-2 * time.Minute)) })), ReasonTokenExpired, bearerInvalid},
		{"not yet valid", "Bearer " + sign(t, jwt.SigningMethodRS256, rsaKey, "rsa1", claims(func(c *jwt.RegisteredClaims) { c.NotBefore = jwt.NewNumericDate(jwtNow.Add(2 * time.Minute)) })), ReasonTokenNotYetValid, bearerInvalid},
		{"nbf within leeway", "Bearer " + sign(t, jwt.SigningMethodRS256, rsaKey, "rsa1", claims(func(c *jwt.RegisteredClaims) { c.NotBefore = jwt.NewNumericDate(jwtNow.Add(30 * time.Second)) })), "", ""},
		{"issued in the future", "Bearer " + sign(t, jwt.SigningMethodRS256, rsaKey, "rsa1", claims(func(c *jwt.RegisteredClaims) { c.IssuedAt = jwt.NewNumericDate(jwtNow.Add(2 * time.Minute)) })), ReasonTokenNotYetValid, bearerInvalid},
		{"wrong audience", "Bearer " + sign(t, jwt.SigningMethodRS256, rsaKey, "rsa1", claims(func(c *jwt.RegisteredClaims) { c.Audience = jwt.ClaimStrings{"another-api"} })), ReasonTokenClaimsInvalid, bearerInvalid},
		{"no audience", "Bearer " + sign(t, jwt.SigningMethodRS256, rsaKey, "rsa1", claims(func(c *jwt.RegisteredClaims) { c.Audience = nil })), ReasonTokenClaimsInvalid, bearerInvalid},
		{"wrong issuer", "Bearer " + sign(t, jwt.SigningMethodRS256, rsaKey, "rsa1", claims(func(c *jwt.RegisteredClaims) { c.Issuer = "https://evil.example.com/" })), ReasonTokenClaimsInvalid, bearerInvalid},
		{"no exp", "Bearer " + sign(t, jwt.SigningMethodRS256, rsaKey, "rsa1", claims(func(c *jwt.RegisteredClaims) { c.ExpiresAt = nil })), ReasonTokenClaimsInvalid, bearerInvalid},
		{"alg none", "Bearer " + sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "rsa1", claims(nil)), ReasonTokenInvalid, bearerInvalid},
		{"HS256 keyed with the public key PEM", "Bearer " + sign(t, jwt.SigningMethodHS256, pubPEM, "rsa1", claims(nil)), ReasonTokenInvalid, bearerInvalid},
		{"HS256 keyed with the public key DER", "Bearer " + sign(t, jwt.SigningMethodHS256, pubDER, "rsa1", claims(nil)), ReasonTokenInvalid, bearerInvalid},
		{"RS384 not allowed", "Bearer " + sign(t, rs384, rsaKey, "rsa1", claims(nil)), ReasonTokenInvalid, bearerInvalid},
		{"ES256 under an RS256 kid", "Bearer " + sign(t, jwt.SigningMethodES256, ecKey, "rsa1", claims(nil)), ReasonTokenKeyUnknown, bearerInvalid},
		{"forged with another key under a known kid", "Bearer " + sign(t, jwt.SigningMethodRS256, rsaKey2, "rsa1", claims(nil)), ReasonTokenInvalid, bearerInvalid},
		{"signature cut", "Bearer " + strings.TrimRight(sign(t, jwt.SigningMethodRS256, rsaKey, "rsa1", claims(nil)), "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")[:40] + ".x.y", ReasonTokenInvalid, bearerInvalid},
		{"not a JWT", "Bearer abc.def", ReasonTokenInvalid, bearerInvalid},
		{"missing", "", ReasonCredentialsMissing, BearerChallenge},
		{"basic instead", "Basic dTpw", ReasonCredentialsMalformed, bearerBadReq},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := request("/")
			if tt.auth != "" {
				r.Header.Set("Authorization", tt.auth)
			}
			err := j.Verify(r, nil)
			checkResult(t, err, tt.want)
			if got := Challenge(err); got != tt.chall {
				t.Errorf("Challenge = %q, want %q", got, tt.chall)
			}
		})
	}
	if n := srv.fetches.Load(); n != 1 {
		t.Errorf("%d JWKS fetches, want 1 (the cache serves every known kid)", n)
	}
}

func TestJWTKeyRotation(t *testing.T) {
	testKeys(t)
	srv := newJWKSServer(t)
	srv.add(t, "k1", &rsaKey.PublicKey, jwkset.AlgRS256)
	j := newTestJWT(t, srv, func(o *JWTOptions) { o.UnknownKIDInterval = time.Hour })
	verify := func(key any, kid string) error {
		r := request("/", "Authorization: Bearer "+sign(t, jwt.SigningMethodRS256, key, kid, claims(nil)))
		return j.Verify(r, nil)
	}
	checkResult(t, verify(rsaKey, "k1"), "")
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}

	// The issuer rotates: k2 appears. The first token signed with it makes
	// the verifier fetch the JWKS again and accept it.
	srv.add(t, "k2", &rsaKey2.PublicKey, jwkset.AlgRS256)
	checkResult(t, verify(rsaKey2, "k2"), "")
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches after a new kid, want 2", n)
	}
	checkResult(t, verify(rsaKey2, "k2"), "")
	checkResult(t, verify(rsaKey, "k1"), "")

	// A made-up kid right after: the refetch is rate limited, so it is
	// refused at once without asking the issuer.
	start := time.Now()
	for range 20 {
		checkResult(t, verify(rsaKey, "ghost"), ReasonTokenKeyUnknown)
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches after unknown kids, want still 2", n)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("20 unknown kids took %s: the rate limit should refuse at once", d)
	}
}

func TestJWTBackgroundRefreshAndClose(t *testing.T) {
	testKeys(t)
	srv := newJWKSServer(t)
	srv.add(t, "k1", &rsaKey.PublicKey, jwkset.AlgRS256)
	srv.add(t, "k2", &rsaKey2.PublicKey, jwkset.AlgRS256)
	j := newTestJWT(t, srv, func(o *JWTOptions) {
		o.RefreshInterval = 20 * time.Millisecond
		o.UnknownKIDInterval = time.Hour
	})
	tok := "Bearer " + sign(t, jwt.SigningMethodRS256, rsaKey, "k1", claims(nil))
	checkResult(t, j.Verify(request("/", "Authorization: "+tok), nil), "")

	// The issuer revokes k1: the background refresh drops it.
	srv.remove("k1")
	deadline := time.Now().Add(5 * time.Second)
	for j.Verify(request("/", "Authorization: "+tok), nil) == nil {
		if time.Now().After(deadline) {
			t.Fatal("a revoked key is still accepted after 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	checkResult(t, j.Verify(request("/", "Authorization: "+tok), nil), ReasonTokenKeyUnknown)

	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	_ = j.Close() // twice is fine
	time.Sleep(50 * time.Millisecond)
	n := srv.fetches.Load()
	time.Sleep(100 * time.Millisecond)
	if m := srv.fetches.Load(); m != n {
		t.Fatalf("%d fetches after Close, want none", m-n)
	}
}

func TestJWTIssuerDownAtStart(t *testing.T) {
	testKeys(t)
	srv := newJWKSServer(t)
	up := atomic.Bool{}
	inner := srv.Config.Handler
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		inner.ServeHTTP(w, r)
	})
	srv.add(t, "k1", &rsaKey.PublicKey, jwkset.AlgRS256)
	var logs bytes.Buffer
	j := newTestJWT(t, srv, func(o *JWTOptions) { o.Log = slog.New(slog.NewTextHandler(&logs, nil)) })
	if !strings.Contains(logs.String(), "fetching the JWKS failed") {
		t.Errorf("no warning for the failed first fetch; logs: %s", logs.String())
	}
	if !strings.Contains(logs.String(), "http://") {
		t.Errorf("no warning for an http:// JWKS; logs: %s", logs.String())
	}
	up.Store(true)
	// The first token finds no key and fetches again: the issuer is up now.
	checkResult(t, j.Verify(request("/", "Authorization: Bearer "+sign(t, jwt.SigningMethodRS256, rsaKey, "k1", claims(nil))), nil), "")
}

func TestNewJWTErrors(t *testing.T) {
	base := JWTOptions{JWKSURL: "https://idp.example.com/jwks", Issuer: testIssuer, Audience: []string{testAudience}}
	tests := []struct {
		name string
		f    func(*JWTOptions)
		want string
	}{
		{"no url", func(o *JWTOptions) { o.JWKSURL = "" }, "JWKS URL is required"},
		{"relative url", func(o *JWTOptions) { o.JWKSURL = "/jwks" }, "absolute"},
		{"file url", func(o *JWTOptions) { o.JWKSURL = "file:///etc/jwks.json" }, "absolute"},
		{"no issuer", func(o *JWTOptions) { o.Issuer = " " }, "issuer"},
		{"no audience", func(o *JWTOptions) { o.Audience = []string{""} }, "audience"},
		{"none", func(o *JWTOptions) { o.Algorithms = []string{"RS256", "none"} }, "never allowed"},
		{"HS256", func(o *JWTOptions) { o.Algorithms = []string{"HS256"} }, "never allowed"},
		{"unknown", func(o *JWTOptions) { o.Algorithms = []string{"XS999"} }, "not supported"},
		{"negative leeway", func(o *JWTOptions) { o.Leeway = -time.Second }, "leeway"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base
			tt.f(&o)
			j, err := NewJWT(context.Background(), o)
			if err == nil {
				_ = j.Close()
				t.Fatalf("NewJWT = nil error, want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewJWT = %v, want %q", err, tt.want)
			}
		})
	}
	algs, err := jwtAlgorithms([]string{" es256", "RS256", "ES256", ""})
	if err != nil || strings.Join(algs, ",") != "ES256,RS256" {
		t.Errorf("jwtAlgorithms = %v, %v", algs, err)
	}
}
