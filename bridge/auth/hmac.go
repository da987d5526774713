package auth

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// HMACOptions configure an [HMAC] verifier. The zero value of each optional
// field means its documented default.
//
// Three common senders, for example:
//
//	GitHub:            Header "X-Hub-Signature-256", Prefix "sha256=", IDHeader "X-GitHub-Delivery"
//	Slack:             Header "X-Slack-Signature", Prefix "v0=", Template "v0:{timestamp}:{body}",
//	                   TimestampHeader "X-Slack-Request-Timestamp"
//	Standard Webhooks: Header "webhook-signature", Encoding "base64", Prefix "v1,",
//	                   Template "{id}.{timestamp}.{body}", TimestampHeader "webhook-timestamp",
//	                   IDHeader "webhook-id", secrets "whsec_..."
type HMACOptions struct {
	// Header carries the signature. Required. It may hold several
	// signatures separated by spaces (as Standard Webhooks does while the
	// sender rotates its secret); one matching is enough. At most 8 are
	// looked at.
	Header string

	// Algorithm is sha1, sha256 or sha512. The default is sha256.
	Algorithm string

	// Encoding of the signature: hex (either case) or base64 (standard
	// alphabet, padded or not). The default is hex.
	Encoding string

	// Prefix, when set, must start every signature ("sha256=", "v0=",
	// "v1,"); a signature without it is malformed. The default is none.
	Prefix string

	// Template is the signed content. {body} (required, once) stands for
	// the raw body, {timestamp} for the TimestampHeader value and {id} for
	// the IDHeader value, byte for byte as sent. The default is "{body}".
	Template string

	// TimestampHeader carries the time of sending in Unix seconds. When set,
	// a request without it, or further than Tolerance from now, fails; the
	// Template must then sign it ({timestamp}), or a replay could carry a
	// fresh one. The default is none.
	TimestampHeader string

	// Tolerance is how far the timestamp may be from now, either way. The
	// default is 5 minutes.
	Tolerance time.Duration

	// IDHeader carries the delivery id. When set, a request without it
	// fails. The id keys replay protection (see [HMAC.DeliveryKey]) and is
	// {id} in the Template. The default is none.
	IDHeader string

	// Secrets are the keys; at least one. Several may be active at once,
	// for rotation. A secret written "whsec_<base64>" is the base64-decoded
	// key, as Standard Webhooks writes its secrets.
	Secrets []string

	// Now returns the current time. The default is time.Now.
	Now func() time.Time
}

// DefaultTolerance is how far an [HMAC] timestamp may be from now by default.
const DefaultTolerance = 5 * time.Minute

// maxSignatures bounds the signatures looked at in one header.
const maxSignatures = 8

// sigBufSize holds a decoded signature of the largest hash, with room for
// base64's rounding up (a padded SHA-512 signature decodes through 66 bytes).
const sigBufSize = sha512.Size + 8

// HMAC verifies an HMAC signature of the raw body (or of a template around
// it) in a header, the way most webhook senders sign. It is safe for
// concurrent use. Build it with [NewHMAC].
type HMAC struct {
	header, prefix     string
	algorithm, enc     string
	tsHeader, idHeader string
	template           string
	tolerance          time.Duration
	size               int
	parts              []part
	macs               []*keyedMAC
	now                func() time.Time
}

// NewHMAC returns a verifier for o. It fails when o is incomplete or
// inconsistent; the error names the option, never a secret.
func NewHMAC(o HMACOptions) (*HMAC, error) {
	h := &HMAC{
		header:    strings.TrimSpace(o.Header),
		prefix:    o.Prefix,
		algorithm: strings.ToLower(strings.TrimSpace(o.Algorithm)),
		enc:       strings.ToLower(strings.TrimSpace(o.Encoding)),
		tsHeader:  strings.TrimSpace(o.TimestampHeader),
		idHeader:  strings.TrimSpace(o.IDHeader),
		template:  o.Template,
		tolerance: o.Tolerance,
		now:       o.Now,
	}
	if h.header == "" {
		return nil, errors.New("auth: hmac: the signature header is required")
	}
	for _, name := range []string{h.header, h.tsHeader, h.idHeader} {
		if strings.ContainsAny(name, " \t:") {
			return nil, fmt.Errorf("auth: hmac: %q is not a header name", name)
		}
	}
	if strings.ContainsAny(h.prefix, " \t") {
		return nil, fmt.Errorf("auth: hmac: the prefix %q must not contain spaces (they separate signatures)", h.prefix)
	}
	if h.algorithm == "" {
		h.algorithm = "sha256"
	}
	newHash, size, err := hashOf(h.algorithm)
	if err != nil {
		return nil, err
	}
	h.size = size
	switch h.enc {
	case "":
		h.enc = "hex"
	case "hex", "base64":
	default:
		return nil, fmt.Errorf("auth: hmac: encoding %q is not supported: want hex or base64", o.Encoding)
	}
	if h.template == "" {
		h.template = "{body}"
	}
	if h.parts, err = parseTemplate(h.template); err != nil {
		return nil, err
	}
	uses := map[partKind]bool{}
	for _, p := range h.parts {
		uses[p.kind] = true
	}
	if uses[partTimestamp] && h.tsHeader == "" {
		return nil, errors.New("auth: hmac: the template signs {timestamp} but no timestamp header is set")
	}
	if h.tsHeader != "" && !uses[partTimestamp] {
		return nil, errors.New("auth: hmac: a timestamp header is set but the template does not sign {timestamp} (e.g. \"v0:{timestamp}:{body}\" or \"{id}.{timestamp}.{body}\")")
	}
	if uses[partID] && h.idHeader == "" {
		return nil, errors.New("auth: hmac: the template signs {id} but no delivery id header is set")
	}
	if h.tolerance < 0 {
		return nil, errors.New("auth: hmac: the tolerance must not be negative")
	}
	if h.tolerance == 0 {
		h.tolerance = DefaultTolerance
	}
	if h.now == nil {
		h.now = time.Now
	}
	seen := map[string]bool{}
	for i, s := range o.Secrets {
		key, err := secretKey(s)
		if err != nil {
			return nil, fmt.Errorf("auth: hmac: secret %d: %w", i+1, err)
		}
		if len(key) == 0 || seen[string(key)] {
			continue
		}
		seen[string(key)] = true
		h.macs = append(h.macs, newKeyedMAC(newHash, key))
	}
	if len(h.macs) == 0 {
		return nil, errNoSecret
	}
	return h, nil
}

// Verify implements [Verifier]. Failure reasons, in the order checked:
// [ReasonSignatureMissing], [ReasonTimestampMissing],
// [ReasonTimestampMalformed], [ReasonTimestampOutOfWindow],
// [ReasonDeliveryIDMissing], [ReasonSignatureMalformed],
// [ReasonSignatureMismatch].
func (h *HMAC) Verify(r *http.Request, body []byte) error {
	var sigs signatures
	c := content{parts: h.parts, body: body}
	if err := h.headers(r, &c, &sigs); err != nil {
		return err
	}
	var cands [maxSignatures][]byte
	for i := range sigs.n {
		cands[i] = sigs.bufs[i][:sigs.lens[i]]
	}
	if !matchAny(h.macs, &c, cands[:sigs.n]) {
		return Unauthorized(ReasonSignatureMismatch, "")
	}
	return nil
}

// Precheck implements [Prechecker]: every check of Verify but the MAC
// itself (the signature, timestamp and delivery id headers are present,
// the timestamp is within the tolerance, a signature has the configured
// prefix, encoding and size).
func (h *HMAC) Precheck(r *http.Request) error {
	var sigs signatures
	var c content
	return h.headers(r, &c, &sigs)
}

// Capabilities implements [Capable]: an HMAC signs the body.
func (h *HMAC) Capabilities() Capabilities { return Capabilities{} }

// signatures are the decoded candidate signatures of one request, kept on
// the caller's stack (lengths, not slices: a struct pointing into itself
// would escape to the heap).
type signatures struct {
	bufs [maxSignatures][sigBufSize]byte
	lens [maxSignatures]int
	n    int
}

// headers runs the checks of Verify that read only headers, filling c's
// timestamp and id and sigs' candidates.
func (h *HMAC) headers(r *http.Request, c *content, sigs *signatures) error {
	sig := r.Header.Get(h.header)
	if sig == "" {
		return Unauthorized(ReasonSignatureMissing, "")
	}
	if h.tsHeader != "" {
		ts := r.Header.Get(h.tsHeader)
		if ts == "" {
			return Unauthorized(ReasonTimestampMissing, "")
		}
		sec, err := strconv.ParseInt(ts, 10, 64)
		if err != nil {
			return Unauthorized(ReasonTimestampMalformed, "")
		}
		if !within(h.now(), sec, h.tolerance) {
			return Unauthorized(ReasonTimestampOutOfWindow, "")
		}
		c.ts = ts
	}
	if h.idHeader != "" {
		if c.id = r.Header.Get(h.idHeader); c.id == "" {
			return Unauthorized(ReasonDeliveryIDMissing, "")
		}
	}
	for rest := sig; rest != "" && sigs.n < maxSignatures; {
		var tok string
		tok, rest = nextField(rest)
		if tok == "" {
			continue
		}
		if d, ok := h.decode(tok, sigs.bufs[sigs.n][:]); ok {
			sigs.lens[sigs.n] = len(d)
			sigs.n++
		}
	}
	if sigs.n == 0 {
		return Unauthorized(ReasonSignatureMalformed, "")
	}
	return nil
}

// DeliveryKey identifies the delivery r carries, for [Replay]: the delivery
// id, joined with the timestamp when both are configured (a sender that
// retries signs the retry anew with a fresh timestamp, and that retry is no
// replay), else the timestamp with the signature. ok is false when the
// scheme carries neither a delivery id nor a timestamp. Call it only on a
// request that [HMAC.Verify] accepted.
func (h *HMAC) DeliveryKey(r *http.Request) (key string, ok bool) {
	switch {
	case h.idHeader != "" && h.tsHeader != "":
		return r.Header.Get(h.idHeader) + "\x00" + r.Header.Get(h.tsHeader), true
	case h.idHeader != "":
		return r.Header.Get(h.idHeader), true
	case h.tsHeader != "":
		return r.Header.Get(h.tsHeader) + "\x00" + r.Header.Get(h.header), true
	}
	return "", false
}

// decode strips the prefix from one signature and decodes it into buf. It
// returns the decoded signature and whether it has the configured form.
func (h *HMAC) decode(sig string, buf []byte) ([]byte, bool) {
	if h.prefix != "" {
		if len(sig) < len(h.prefix) || !strings.EqualFold(sig[:len(h.prefix)], h.prefix) {
			return nil, false
		}
		sig = sig[len(h.prefix):]
	}
	switch h.enc {
	case "hex":
		if len(sig) != 2*h.size || !decodeHex(buf[:h.size], sig) {
			return nil, false
		}
		return buf[:h.size], true
	default:
		enc := base64.StdEncoding
		if !strings.HasSuffix(sig, "=") {
			enc = base64.RawStdEncoding
		}
		if enc.DecodedLen(len(sig)) < h.size || enc.DecodedLen(len(sig)) > len(buf) {
			return nil, false
		}
		n, err := enc.Decode(buf, []byte(sig))
		if err != nil || n != h.size {
			return nil, false
		}
		return buf[:n], true
	}
}

// String describes h without its secrets.
func (h *HMAC) String() string {
	return fmt.Sprintf("hmac(header=%s algorithm=%s encoding=%s prefix=%q template=%q timestamp_header=%s tolerance=%s id_header=%s secrets=%d)",
		h.header, h.algorithm, h.enc, h.prefix, h.template, h.tsHeader, h.tolerance, h.idHeader, len(h.macs))
}

// GoString is String, so that %#v does not print the keys.
func (h *HMAC) GoString() string { return h.String() }

// within reports whether the Unix time sec is at most tol away from now.
func within(now time.Time, sec int64, tol time.Duration) bool {
	d := now.Unix() - sec // wraps for absurd sec; the checks below still refuse it
	if d < 0 {
		d = -d
	}
	return d >= 0 && d <= int64(tol/time.Second)
}

// hashOf returns the hash for an algorithm name and its size.
func hashOf(alg string) (func() hash.Hash, int, error) {
	switch alg {
	case "sha1":
		return sha1.New, sha1.Size, nil
	case "sha256":
		return sha256.New, sha256.Size, nil
	case "sha512":
		return sha512.New, sha512.Size, nil
	}
	return nil, 0, fmt.Errorf("auth: hmac: algorithm %q is not supported: want sha1, sha256 or sha512", alg)
}

// secretKey returns the key a configured secret stands for.
func secretKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if b64, ok := strings.CutPrefix(s, "whsec_"); ok {
		key, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			// The error of the decoder quotes a byte of the secret: drop it.
			return nil, errors.New(`a secret starting "whsec_" must be base64 after it`)
		}
		return key, nil
	}
	return []byte(s), nil
}

// nextField returns the text before the first space or tab of s and the rest.
func nextField(s string) (field, rest string) {
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		return s[:i], s[i+1:]
	}
	return s, ""
}

// decodeHex decodes the hex string s into dst, which must be len(s)/2 long.
// It reads a string without converting it to a byte slice, which saves an
// allocation per request; FuzzDecodeHex checks it against encoding/hex.
func decodeHex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, ok1 := fromHexChar(s[2*i])
		lo, ok2 := fromHexChar(s[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func fromHexChar(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// keyedMAC hands out HMAC states keyed with one secret. Reset brings a
// state back to just after keying, so a request pays no key schedule and
// no allocation for it.
type keyedMAC struct{ pool sync.Pool }

func newKeyedMAC(newHash func() hash.Hash, key []byte) *keyedMAC {
	key = append([]byte(nil), key...)
	k := &keyedMAC{}
	k.pool.New = func() any { return hmac.New(newHash, key) }
	return k
}

func (k *keyedMAC) get() hash.Hash {
	m := k.pool.Get().(hash.Hash)
	m.Reset()
	return m
}

func (k *keyedMAC) put(m hash.Hash) { k.pool.Put(m) }

// matchAny reports whether the MAC of c under any of macs equals any of
// the candidate signatures. It computes and compares every combination, so
// its time does not depend on which secret matched.
func matchAny(macs []*keyedMAC, c *content, cands [][]byte) bool {
	var sum []byte
	ok := 0
	for _, k := range macs {
		m := k.get()
		c.writeTo(m)
		sum = m.Sum(sum[:0])
		k.put(m)
		for _, cand := range cands {
			ok |= subtle.ConstantTimeCompare(sum, cand)
		}
	}
	return ok == 1
}

// partKind is what one piece of a signed-content template stands for.
type partKind uint8

const (
	partLiteral partKind = iota
	partBody
	partTimestamp
	partID
)

type part struct {
	kind partKind
	lit  []byte
}

// content is what one request signs: the template filled in.
type content struct {
	parts  []part
	ts, id string
	body   []byte
}

func (c *content) writeTo(h hash.Hash) {
	for _, p := range c.parts {
		switch p.kind {
		case partLiteral:
			h.Write(p.lit)
		case partBody:
			h.Write(c.body)
		case partTimestamp:
			h.Write([]byte(c.ts))
		case partID:
			h.Write([]byte(c.id))
		}
	}
}

// bodyOnly is the template "{body}", Mist's.
var bodyOnly = []part{{kind: partBody}}

// parseTemplate splits a signed-content template into its parts.
func parseTemplate(template string) ([]part, error) {
	var parts []part
	t := template
	bodies := 0
	for t != "" {
		i := strings.IndexByte(t, '{')
		if i < 0 {
			parts = append(parts, part{kind: partLiteral, lit: []byte(t)})
			break
		}
		if i > 0 {
			parts = append(parts, part{kind: partLiteral, lit: []byte(t[:i])})
		}
		t = t[i:]
		var k partKind
		switch {
		case strings.HasPrefix(t, "{body}"):
			k, t = partBody, t[len("{body}"):]
			bodies++
		case strings.HasPrefix(t, "{timestamp}"):
			k, t = partTimestamp, t[len("{timestamp}"):]
		case strings.HasPrefix(t, "{id}"):
			k, t = partID, t[len("{id}"):]
		default:
			return nil, fmt.Errorf("auth: hmac: template %q: unknown placeholder at %q: want {body}, {timestamp} or {id}", template, t)
		}
		parts = append(parts, part{kind: k})
	}
	if bodies != 1 {
		return nil, fmt.Errorf("auth: hmac: template %q: it must contain {body} exactly once", template)
	}
	return parts, nil
}
