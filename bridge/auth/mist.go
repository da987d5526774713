package auth

import (
	"crypto/sha1"
	"crypto/sha256"
	"fmt"
	"net/http"
)

// Mist's signature headers: HMAC-SHA256 (preferred) and HMAC-SHA1 of the raw
// body with the webhook's secret, as lowercase hex.
const (
	HeaderMistSignatureV2 = "X-Mist-Signature-v2"
	HeaderMistSignature   = "X-Mist-Signature"
)

// Mist verifies Mist's webhook signatures. When X-Mist-Signature-v2 is
// present it alone decides (a wrong v2 fails even if v1 matches: no
// downgrade); X-Mist-Signature alone is accepted. Several secrets may be
// active at once, for rotation. It is safe for concurrent use.
type Mist struct {
	v2, v1 []*keyedMAC
}

// NewMist returns a verifier for the given secrets, used as they are (no
// trimming, no decoding: Mist signs with the secret's bytes). It fails
// with an error wrapping nothing secret when there is no non-empty secret.
func NewMist(secrets []string) (*Mist, error) {
	m := &Mist{}
	seen := map[string]bool{}
	for _, s := range secrets {
		if s == "" || seen[s] {
			continue
		}
		seen[s] = true
		m.v2 = append(m.v2, newKeyedMAC(sha256.New, []byte(s)))
		m.v1 = append(m.v1, newKeyedMAC(sha1.New, []byte(s)))
	}
	if len(m.v2) == 0 {
		return nil, errNoSecret
	}
	return m, nil
}

// Verify implements [Verifier]. Failure reasons: [ReasonSignatureMissing],
// [ReasonSignatureMalformed], [ReasonSignatureMismatch].
func (m *Mist) Verify(r *http.Request, body []byte) error {
	if sig := r.Header.Get(HeaderMistSignatureV2); sig != "" {
		return m.check(sig, m.v2, sha256.Size, body)
	}
	if sig := r.Header.Get(HeaderMistSignature); sig != "" {
		return m.check(sig, m.v1, sha1.Size, body)
	}
	return Unauthorized(ReasonSignatureMissing, "")
}

// Precheck implements [Prechecker]: a signature header is present and is
// hex of the right length (the header that decides: v2 when present).
func (m *Mist) Precheck(r *http.Request) error {
	var buf [sha256.Size]byte
	if sig := r.Header.Get(HeaderMistSignatureV2); sig != "" {
		if !decodeHex(buf[:sha256.Size], sig) {
			return Unauthorized(ReasonSignatureMalformed, "")
		}
		return nil
	}
	if sig := r.Header.Get(HeaderMistSignature); sig != "" {
		if !decodeHex(buf[:sha1.Size], sig) {
			return Unauthorized(ReasonSignatureMalformed, "")
		}
		return nil
	}
	return Unauthorized(ReasonSignatureMissing, "")
}

// Capabilities implements [Capable]: Mist signs the body.
func (m *Mist) Capabilities() Capabilities { return Capabilities{} }

func (m *Mist) check(sigHex string, macs []*keyedMAC, size int, body []byte) error {
	var buf [sha256.Size]byte
	got := buf[:size]
	if !decodeHex(got, sigHex) {
		return Unauthorized(ReasonSignatureMalformed, "")
	}
	c := content{parts: bodyOnly, body: body}
	if !matchAny(macs, &c, [][]byte{got}) {
		return Unauthorized(ReasonSignatureMismatch, "")
	}
	return nil
}

// String describes m without its secrets.
func (m *Mist) String() string { return fmt.Sprintf("mist(secrets=%d)", len(m.v2)) }

// GoString is String, so that %#v does not print the keys.
func (m *Mist) GoString() string { return m.String() }
