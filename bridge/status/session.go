package status

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"strconv"
	"strings"
	"time"
)

// CookieName is the session cookie the login form sets.
const CookieName = "mistbridge_status"

// sessionVersion starts every session value, so the format can change.
const sessionVersion = "v1"

// keys hold what the handler checks credentials with: the SHA-256 of each
// admin token (compared in constant time, whatever the lengths) and a
// session key derived from each. No token is kept as it was given.
type keys struct {
	tokens   [][32]byte
	sessions [][]byte
}

func newKeys(tokens []string) keys {
	var k keys
	for _, t := range tokens {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		k.tokens = append(k.tokens, sha256.Sum256([]byte(t)))
		m := hmac.New(sha256.New, []byte(t))
		m.Write([]byte("mistbridge status session key"))
		k.sessions = append(k.sessions, m.Sum(nil))
	}
	return k
}

func (k keys) enabled() bool { return len(k.tokens) > 0 }

// index returns which token t is, or -1.
func (k keys) index(t string) int {
	got := sha256.Sum256([]byte(strings.TrimSpace(t)))
	idx := -1
	for i := range k.tokens {
		if subtle.ConstantTimeCompare(got[:], k.tokens[i][:]) == 1 {
			idx = i
		}
	}
	return idx
}

// session returns a session value made with token i that expires at exp:
// "v1.<exp unix seconds>.<base64url HMAC-SHA256 of the version and exp>".
func (k keys) session(i int, exp time.Time) string {
	e := strconv.FormatInt(exp.Unix(), 10)
	return sessionVersion + "." + e + "." + base64.RawURLEncoding.EncodeToString(k.mac(i, e))
}

func (k keys) mac(i int, exp string) []byte {
	m := hmac.New(sha256.New, k.sessions[i])
	m.Write([]byte(sessionVersion + "\x00" + exp))
	return m.Sum(nil)
}

// validSession reports whether v is a session made with one of the tokens
// that has not expired at now and expires within ttl of it. Every token's
// MAC is compared, in constant time.
func (k keys) validSession(v string, now time.Time, ttl time.Duration) bool {
	ver, rest, ok1 := strings.Cut(v, ".")
	e, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || ver != sessionVersion || len(e) > 12 {
		return false
	}
	exp, err := strconv.ParseInt(e, 10, 64)
	if err != nil || strconv.FormatInt(exp, 10) != e {
		return false
	}
	if t := time.Unix(exp, 0); !t.After(now) || t.Sub(now) > ttl+time.Minute {
		return false
	}
	got, err := base64.RawURLEncoding.Strict().DecodeString(sig)
	if err != nil || len(got) != sha256.Size {
		return false
	}
	ok := 0
	for i := range k.sessions {
		ok |= subtle.ConstantTimeCompare(got, k.mac(i, e))
	}
	return ok == 1
}
