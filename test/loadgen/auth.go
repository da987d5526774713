package loadgen

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Auth is how each request proves who sent it: the scheme of the receiver
// under load (the bridge's MISTBRIDGE_AUTH_* settings, seen from the sender).
// The zero value signs nothing.
type Auth struct {
	// Scheme is mist, hmac, basic, bearer, jwt, header, authheader,
	// querystring, splunk or none. The default is mist when Secret is set,
	// else none.
	Scheme string

	// Secret is the HMAC key of mist and hmac. A secret written
	// "whsec_<base64>" is the decoded key, as Standard Webhooks writes it.
	Secret string

	// MistV2Only leaves out X-Mist-Signature (HMAC-SHA1), which Mist sends
	// next to X-Mist-Signature-v2 and so, by default, does the sender.
	MistV2Only bool

	// Header is the signature header of hmac, or the token header of header.
	Header string
	// Algorithm (sha1, sha256, sha512; default sha256), Encoding (hex or
	// base64; default hex), Prefix (e.g. "sha256="), Template (the signed
	// content with {body}, {timestamp} and {id}; default "{body}"),
	// TimestampHeader (Unix seconds of sending) and IDHeader (a fresh UUID
	// per request) shape hmac's signature, as the bridge's HMACOptions do.
	Algorithm, Encoding, Prefix, Template string
	TimestampHeader, IDHeader             string

	// Token is the token of bearer, jwt (a JWT), header, authheader,
	// querystring and splunk.
	Token string
	// QueryParam names querystring's parameter. The default is "token".
	QueryParam string

	// User and Password are basic's credentials.
	User, Password string
}

// scheme returns the effective scheme.
func (a Auth) scheme() string {
	s := strings.ToLower(strings.TrimSpace(a.Scheme))
	if s == "" {
		if a.Secret != "" {
			return "mist"
		}
		return "none"
	}
	return s
}

// Validate reports every problem of a at once.
func (a Auth) Validate() error {
	var errs []error
	need := func(ok bool, what string) {
		if !ok {
			errs = append(errs, fmt.Errorf("loadgen: auth %s needs %s", a.scheme(), what))
		}
	}
	switch a.scheme() {
	case "mist":
		need(a.Secret != "", "a secret")
	case "hmac":
		need(a.Secret != "", "a secret")
		need(a.Header != "", "a signature header")
		switch strings.ToLower(a.Algorithm) {
		case "", "sha1", "sha256", "sha512":
		default:
			errs = append(errs, fmt.Errorf("loadgen: auth hmac: algorithm %q: want sha1, sha256 or sha512", a.Algorithm))
		}
		switch strings.ToLower(a.Encoding) {
		case "", "hex", "base64":
		default:
			errs = append(errs, fmt.Errorf("loadgen: auth hmac: encoding %q: want hex or base64", a.Encoding))
		}
		if tpl := a.Template; tpl != "" && strings.Count(tpl, "{body}") != 1 {
			errs = append(errs, fmt.Errorf("loadgen: auth hmac: template %q must hold {body} once", tpl))
		}
		if strings.Contains(a.Template, "{timestamp}") {
			need(a.TimestampHeader != "", "a timestamp header for {timestamp}")
		}
		if strings.Contains(a.Template, "{id}") {
			need(a.IDHeader != "", "an id header for {id}")
		}
		if strings.HasPrefix(a.Secret, "whsec_") {
			if _, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(a.Secret, "whsec_")); err != nil {
				errs = append(errs, errors.New("loadgen: auth hmac: a whsec_ secret must be base64 after the prefix"))
			}
		}
	case "basic":
		need(a.User != "" && a.Password != "", "a user and a password")
	case "bearer", "jwt", "authheader", "querystring", "splunk":
		need(a.Token != "", "a token")
	case "header":
		need(a.Token != "", "a token")
		need(a.Header != "", "a header")
	case "none":
	default:
		errs = append(errs, fmt.Errorf("loadgen: auth %q is unknown: want mist, hmac, basic, bearer, jwt, header, authheader, querystring, splunk or none", a.Scheme))
	}
	for what, v := range map[string]string{"token": a.Token, "user": a.User, "header": a.Header,
		"timestamp header": a.TimestampHeader, "id header": a.IDHeader, "prefix": a.Prefix} {
		if strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			errs = append(errs, fmt.Errorf("loadgen: auth: the %s holds a control character", what))
		}
	}
	for what, v := range map[string]string{"header": a.Header, "timestamp header": a.TimestampHeader, "id header": a.IDHeader} {
		if strings.ContainsAny(v, " :\t\"(),/;<=>?@[\\]{}") {
			errs = append(errs, fmt.Errorf("loadgen: auth: the %s %q is not a header name", what, v))
		}
	}
	return errors.Join(errs...)
}

// Headers returns the headers that sign one request with body (the auth
// headers only: no Content-Type). It is for one-off requests; [Run] signs
// with state of its own per goroutine.
func (a Auth) Headers(body []byte) (http.Header, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	h := http.Header{}
	for _, kv := range a.newSigner(rand.Uint64()).sign(body) {
		h.Add(kv.name, string(kv.value))
	}
	return h, nil
}

// URL returns raw with querystring's token added (raw itself for the other
// schemes).
func (a Auth) URL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("loadgen: URL %q: %w", raw, err)
	}
	a.applyURL(u)
	return u.String(), nil
}

// applyURL adds querystring's token to u.
func (a Auth) applyURL(u *url.URL) {
	if a.scheme() != "querystring" {
		return
	}
	p := a.QueryParam
	if p == "" {
		p = "token"
	}
	q := u.Query()
	q.Set(p, a.Token)
	u.RawQuery = q.Encode()
}

// header is one request header; values are rewritten per request in place.
type header struct {
	name  string
	value []byte
}

// signer writes the headers of one request. Each goroutine has its own: it
// keeps its hash states and buffers. Not safe for concurrent use.
type signer struct {
	static []header // the same on every request
	kind   string
	v2, v1 hash.Hash
	mac    hash.Hash
	enc    string
	prefix string
	tpl    [3]string // before {body}, after {body}: split on the template
	tsName string
	idName string
	sigHdr string
	rng    *rand.Rand
	out    []header
	buf    []byte
	now    func() time.Time
}

// newSigner prepares a's signing. a must be valid.
func (a Auth) newSigner(seed uint64) *signer {
	s := &signer{kind: a.scheme(), rng: rand.New(rand.NewPCG(seed, 0x61757468)), now: time.Now}
	switch s.kind {
	case "mist":
		s.v2 = hmac.New(sha256.New, []byte(a.Secret))
		if !a.MistV2Only {
			s.v1 = hmac.New(sha1.New, []byte(a.Secret))
		}
	case "hmac":
		key := []byte(a.Secret)
		if b64, ok := strings.CutPrefix(a.Secret, "whsec_"); ok {
			key, _ = base64.StdEncoding.DecodeString(b64)
		}
		newHash := sha256.New
		switch strings.ToLower(a.Algorithm) {
		case "sha1":
			newHash = sha1.New
		case "sha512":
			newHash = sha512.New
		}
		s.mac = hmac.New(newHash, key)
		s.enc = strings.ToLower(a.Encoding)
		s.prefix, s.sigHdr = a.Prefix, a.Header
		s.tsName, s.idName = a.TimestampHeader, a.IDHeader
		tpl := a.Template
		if tpl == "" {
			tpl = "{body}"
		}
		s.tpl[0], s.tpl[1], _ = strings.Cut(tpl, "{body}")
	case "basic":
		s.static = append(s.static, header{"Authorization", []byte("Basic " + base64.StdEncoding.EncodeToString([]byte(a.User+":"+a.Password)))})
	case "bearer", "jwt":
		s.static = append(s.static, header{"Authorization", []byte("Bearer " + a.Token)})
	case "authheader":
		s.static = append(s.static, header{"Authorization", []byte(a.Token)})
	case "splunk":
		s.static = append(s.static, header{"Authorization", []byte("Splunk " + a.Token)})
	case "header":
		s.static = append(s.static, header{a.Header, []byte(a.Token)})
	}
	return s
}

// sign returns the auth headers of a request with body. The returned slice
// and its values are valid until the next call.
func (s *signer) sign(body []byte) []header {
	s.out = append(s.out[:0], s.static...)
	s.buf = s.buf[:0]
	switch s.kind {
	case "mist":
		s.out = append(s.out, s.hexMAC("X-Mist-Signature-v2", s.v2, body))
		if s.v1 != nil {
			s.out = append(s.out, s.hexMAC("X-Mist-Signature", s.v1, body))
		}
	case "hmac":
		var ts, id []byte
		if s.tsName != "" {
			start := len(s.buf)
			s.buf = strconv.AppendInt(s.buf, s.now().Unix(), 10)
			ts = s.buf[start:]
		}
		if s.idName != "" {
			start := len(s.buf)
			s.buf = appendUUID(s.buf, s.rng)
			id = s.buf[start:]
		}
		s.mac.Reset()
		s.writeTemplate(s.tpl[0], ts, id)
		s.mac.Write(body)
		s.writeTemplate(s.tpl[1], ts, id)
		start := len(s.buf)
		s.buf = append(s.buf, s.prefix...)
		var sum [sha512.Size]byte
		mac := s.mac.Sum(sum[:0])
		if s.enc == "base64" {
			s.buf = base64.StdEncoding.AppendEncode(s.buf, mac)
		} else {
			s.buf = hex.AppendEncode(s.buf, mac)
		}
		s.out = append(s.out, header{s.sigHdr, s.buf[start:]})
		if ts != nil {
			s.out = append(s.out, header{s.tsName, ts})
		}
		if id != nil {
			s.out = append(s.out, header{s.idName, id})
		}
	}
	return s.out
}

func (s *signer) hexMAC(name string, h hash.Hash, body []byte) header {
	h.Reset()
	h.Write(body)
	var sum [sha256.Size]byte
	start := len(s.buf)
	s.buf = hex.AppendEncode(s.buf, h.Sum(sum[:0]))
	return header{name, s.buf[start:]}
}

// writeTemplate writes a part of the template around {body}, with its
// {timestamp} and {id} replaced.
func (s *signer) writeTemplate(t string, ts, id []byte) {
	for t != "" {
		i := strings.IndexByte(t, '{')
		if i < 0 {
			s.mac.Write([]byte(t))
			return
		}
		s.mac.Write([]byte(t[:i]))
		t = t[i:]
		switch {
		case strings.HasPrefix(t, "{timestamp}"):
			s.mac.Write(ts)
			t = t[len("{timestamp}"):]
		case strings.HasPrefix(t, "{id}"):
			s.mac.Write(id)
			t = t[len("{id}"):]
		default:
			s.mac.Write([]byte{'{'})
			t = t[1:]
		}
	}
}
