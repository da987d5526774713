package auth

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzDecodeHex checks the allocation-free hex decoder against encoding/hex.
func FuzzDecodeHex(f *testing.F) {
	for _, s := range []string{"", "00", "ff", "FF", "0g", "abc", pingV1, pingV2, "zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := hex.DecodeString(s)
		if len(s)%2 != 0 {
			if decodeHex(make([]byte, len(s)/2), s) {
				t.Fatalf("decodeHex(%q) accepted an odd length", s)
			}
			return
		}
		got := make([]byte, len(s)/2)
		ok := decodeHex(got, s)
		if ok != (err == nil) {
			t.Fatalf("decodeHex(%q) = %v, encoding/hex says %v", s, ok, err)
		}
		if ok && string(got) != string(want) {
			t.Fatalf("decodeHex(%q) = %x, want %x", s, got, want)
		}
	})
}

// FuzzQueryValue checks the query scanner against url.ParseQuery.
func FuzzQueryValue(f *testing.F) {
	for _, s := range []string{"token=a", "a=1&token=b&token=c", "to%6Ben=x", "token=%zz&token=1", "token;x=1&token=2", "token", "=&&token=+", "%"} {
		f.Add(s, "token")
	}
	f.Add("apiKey=1", "apiKey")
	f.Fuzz(func(t *testing.T, raw, param string) {
		if strings.Count(raw, "&")+1 > 10000 {
			return // url.ParseQuery gives up past its parameter limit
		}
		vals, _ := url.ParseQuery(raw)
		want, wantOK := "", false
		if vs, ok := vals[param]; ok {
			want, wantOK = vs[0], true
		}
		got, ok := queryValue(raw, param)
		if got != want || ok != wantOK {
			t.Fatalf("queryValue(%q, %q) = %q, %v; url.ParseQuery gives %q, %v", raw, param, got, ok, want, wantOK)
		}
	})
}

// FuzzSchemeToken checks the Authorization parser's promises.
func FuzzSchemeToken(f *testing.F) {
	for _, s := range []string{"", "Bearer abc", "bearer  abc ", "Bearer", "Bearer ", "Bearerabc", "Basic abc", "BEARER\tx", "Splunk t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		for _, scheme := range []string{"Bearer", "Splunk"} {
			tok, reason := schemeToken(v, scheme)
			switch {
			case v == "":
				if reason != ReasonCredentialsMissing {
					t.Fatalf("%q: reason %q", v, reason)
				}
			case reason == "":
				if tok == "" || tok != strings.TrimSpace(tok) || !strings.EqualFold(v[:len(scheme)], scheme) || !strings.HasSuffix(strings.TrimSpace(v), tok) {
					t.Fatalf("schemeToken(%q, %s) = %q", v, scheme, tok)
				}
			default:
				if tok != "" || reason != ReasonCredentialsMalformed {
					t.Fatalf("schemeToken(%q, %s) = %q, %q", v, scheme, tok, reason)
				}
			}
		}
	})
}

// FuzzBasic checks that Basic accepts exactly the right credentials as
// net/http reads them, whatever the header holds.
func FuzzBasic(f *testing.F) {
	f.Add("Basic " + base64.StdEncoding.EncodeToString([]byte("mist:pw")))
	f.Add("Basic " + base64.StdEncoding.EncodeToString([]byte("mist:pw ")))
	f.Add("basic bWlzdDpwdw==")
	f.Add("Basic !!!")
	f.Add("")
	b, _ := NewBasic("mist", "pw")
	f.Fuzz(func(t *testing.T, v string) {
		r := request("/")
		r.Header["Authorization"] = []string{v}
		err := b.Verify(r, nil)
		u, p, ok := r.BasicAuth()
		if want := ok && u == "mist" && p == "pw"; want != (err == nil) {
			t.Fatalf("Authorization %q: Verify = %v, want accepted=%v", v, err, want)
		}
	})
}

// FuzzMist checks the Mist verifier against a direct computation: it
// accepts exactly when the deciding header holds the right signature (in
// either case of hex).
func FuzzMist(f *testing.F) {
	f.Add(pingV2, "", pingBody)
	f.Add("", pingV1, pingBody)
	f.Add(auditsV2, pingV1, pingBody)
	f.Add("xyz", "", "")
	m, _ := NewMist([]string{"test-secret"})
	f.Fuzz(func(t *testing.T, v2, v1, body string) {
		r := request("/")
		if v2 != "" {
			r.Header.Set(HeaderMistSignatureV2, v2)
		}
		if v1 != "" {
			r.Header.Set(HeaderMistSignature, v1)
		}
		err := m.Verify(r, []byte(body))
		var want bool
		if v2 != "" {
			want = strings.EqualFold(v2, hex.EncodeToString(reference(sha256.New, "test-secret", body)))
		} else if v1 != "" {
			want = strings.EqualFold(v1, hex.EncodeToString(reference(sha1.New, "test-secret", body)))
		}
		if want != (err == nil) {
			t.Fatalf("v2=%q v1=%q: Verify = %v, want accepted=%v", v2, v1, err, want)
		}
	})
}

// FuzzHMACHeaders throws arbitrary signature, timestamp and id headers at
// a Standard Webhooks verifier: it must never panic, and accept only when
// one of the signatures is the right one for that id and timestamp.
func FuzzHMACHeaders(f *testing.F) {
	f.Add(swSig, swTS, swID)
	f.Add("v1,"+swSig[3:]+" v1,AAAA", swTS, swID)
	f.Add("v1,", "", "")
	f.Add(strings.Repeat("v1,x ", 20)+swSig, swTS, swID)
	f.Add(swSig, "+1614265330", swID)
	h, _ := NewHMAC(with(swOpts, func(o *HMACOptions) { o.Now = at(swTS, 0) }))
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(swSecret, "whsec_"))
	f.Fuzz(func(t *testing.T, sig, ts, id string) {
		r := request("/")
		r.Header["Webhook-Signature"] = []string{sig}
		r.Header["Webhook-Timestamp"] = []string{ts}
		r.Header["Webhook-Id"] = []string{id}
		err := h.Verify(r, []byte(swBody))
		if err == nil {
			right := base64.StdEncoding.EncodeToString(reference(sha256.New, string(key), id+"."+ts+"."+swBody))
			if !strings.Contains(sig, right[:40]) {
				t.Fatalf("accepted sig=%q ts=%q id=%q", sig, ts, id)
			}
		} else if Reason(err) == ReasonUnauthorized {
			t.Fatalf("not an *Error: %v", err)
		}
	})
}

// FuzzClientIP checks that the client address is always the peer or one of
// the forwarded hops, and that an untrusted peer is never overridden.
func FuzzClientIP(f *testing.F) {
	f.Add("10.0.0.1:1", "192.0.2.1, 10.0.0.2")
	f.Add("203.0.113.1:1", "192.0.2.1")
	f.Add("[fd00::1]:1", "unknown")
	f.Add("10.0.0.1:1", ",,,[2001:db8::1]:80")
	a, _ := NewIPAllow(NewNone(), []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")})
	f.Fuzz(func(t *testing.T, remote, xff string) {
		r := request("/")
		r.RemoteAddr = remote
		r.Header["X-Forwarded-For"] = []string{xff}
		ip, ok := a.ClientIP(r)
		err := a.Verify(r, nil)
		if (err == nil) != (ok && netip.MustParsePrefix("192.0.2.0/24").Contains(ip)) {
			t.Fatalf("Verify = %v for client %v, %v", err, ip, ok)
		}
		if !ok {
			return
		}
		peer, _ := parseAddr(remote)
		if !netip.MustParsePrefix("10.0.0.0/8").Contains(peer) && !netip.MustParsePrefix("fd00::/8").Contains(peer) {
			if ip != peer {
				t.Fatalf("untrusted peer %v overridden by %v", peer, ip)
			}
			return
		}
		if ip == peer {
			return
		}
		for _, hop := range strings.Split(xff, ",") {
			if h, ok := parseAddr(strings.TrimSpace(hop)); ok && h == ip {
				return
			}
		}
		t.Fatalf("client %v is neither the peer nor a hop of %q", ip, xff)
	})
}

// FuzzTemplate checks that a template that parses renders back to itself.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{"{body}", "v0:{timestamp}:{body}", "{id}.{timestamp}.{body}", "{", "}{body}{", "{bod}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tmpl string) {
		parts, err := parseTemplate(tmpl)
		if err != nil {
			return
		}
		var b strings.Builder
		for _, p := range parts {
			switch p.kind {
			case partLiteral:
				b.Write(p.lit)
			case partBody:
				b.WriteString("{body}")
			case partTimestamp:
				b.WriteString("{timestamp}")
			case partID:
				b.WriteString("{id}")
			}
		}
		if b.String() != tmpl {
			t.Fatalf("parseTemplate(%q) renders %q", tmpl, b.String())
		}
	})
}

// FuzzTimestampWindow checks within against time arithmetic.
func FuzzTimestampWindow(f *testing.F) {
	f.Add(int64(1_700_000_000), int64(1_700_000_300))
	f.Add(int64(0), int64(-1<<63))
	f.Add(int64(1<<62), int64(1<<63-1))
	f.Fuzz(func(t *testing.T, now, sec int64) {
		if now < 0 || now > 1<<40 {
			return // a clock this machine could show
		}
		got := within(time.Unix(now, 0), sec, 5*time.Minute)
		want := sec >= now-300 && sec <= now+300 // no overflow: now is small
		if got != want {
			t.Fatalf("within(%d, %d) = %v, want %v", now, sec, got, want)
		}
	})
}
