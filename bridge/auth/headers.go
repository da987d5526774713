package auth

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// RequireHeaders refuses a request that lacks one of a set of custom
// headers with its expected value (the apiToken / csrfToken style of
// Mist's custom headers), then hands the others to the next verifier.
// Every header is compared, in constant time, whatever the outcome of the
// others. Failure reasons: [ReasonHeaderMissing], [ReasonHeaderMismatch].
// It is safe for concurrent use. Build it with [NewRequireHeaders].
type RequireHeaders struct {
	next  Verifier
	names []string // canonical, sorted
	want  []digest
}

// NewRequireHeaders returns next behind the required headers (name to
// expected value). Names and values must not be empty.
func NewRequireHeaders(next Verifier, headers map[string]string) (*RequireHeaders, error) {
	if next == nil {
		return nil, errors.New("auth: headers: no verifier to wrap")
	}
	if len(headers) == 0 {
		return nil, errors.New("auth: headers: no header to require")
	}
	h := &RequireHeaders{next: next}
	for name := range headers {
		n := strings.TrimSpace(name)
		if n == "" || strings.ContainsAny(n, " \t:") {
			return nil, fmt.Errorf("auth: headers: %q is not a header name", name)
		}
		h.names = append(h.names, http.CanonicalHeaderKey(n))
	}
	slices.Sort(h.names)
	if len(slices.Compact(slices.Clone(h.names))) != len(h.names) {
		return nil, errors.New("auth: headers: a header is named twice")
	}
	h.want = make([]digest, len(h.names))
	for name, v := range headers {
		if v == "" {
			return nil, fmt.Errorf("auth: headers: %s has no expected value", http.CanonicalHeaderKey(strings.TrimSpace(name)))
		}
		i := slices.Index(h.names, http.CanonicalHeaderKey(strings.TrimSpace(name)))
		h.want[i] = digestOf(v)
	}
	return h, nil
}

// ParseHeaderList reads "Name=value" entries into a map. The error names
// the bad entry by its position and header name, never by its value.
func ParseHeaderList(list []string) (map[string]string, error) {
	out := map[string]string{}
	for i, e := range list {
		if strings.TrimSpace(e) == "" {
			continue
		}
		name, value, ok := strings.Cut(e, "=")
		name = strings.TrimSpace(name)
		switch {
		case !ok:
			// Without "=" the entry may be a bare secret: do not quote it.
			return nil, fmt.Errorf("entry %d is not Name=value", i+1)
		case name == "" || strings.TrimSpace(value) == "":
			return nil, fmt.Errorf("entry %d (%q) is not Name=value", i+1, name)
		}
		if strings.ContainsAny(name, " \t:") {
			return nil, fmt.Errorf("entry %d: %q is not a header name", i+1, name)
		}
		key := http.CanonicalHeaderKey(name)
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("entry %d: %s is named twice", i+1, key)
		}
		out[key] = strings.TrimSpace(value)
	}
	return out, nil
}

// Verify implements [Verifier].
func (h *RequireHeaders) Verify(r *http.Request, body []byte) error {
	if err := h.check(r); err != nil {
		return err
	}
	return h.next.Verify(r, body)
}

// Precheck implements [Prechecker]: the required headers, then the wrapped
// verifier's Precheck.
func (h *RequireHeaders) Precheck(r *http.Request) error {
	if err := h.check(r); err != nil {
		return err
	}
	return Precheck(h.next, r)
}

// Capabilities implements [Capable]: the wrapped verifier's.
func (h *RequireHeaders) Capabilities() Capabilities { return CapabilitiesOf(h.next) }

// Commit implements [Committer]: it passes r on to the wrapped verifier.
func (h *RequireHeaders) Commit(r *http.Request) { Commit(h.next, r) }

func (h *RequireHeaders) check(r *http.Request) error {
	missing, ok := false, true
	for i, name := range h.names {
		v := r.Header.Get(name)
		missing = missing || v == ""
		match := anyDigest(digestOf(v), h.want[i:i+1])
		ok = ok && match
	}
	switch {
	case missing:
		return Unauthorized(ReasonHeaderMissing, "")
	case !ok:
		return Unauthorized(ReasonHeaderMismatch, "")
	}
	return nil
}

func (h *RequireHeaders) unwrap() Verifier { return h.next }

// Close closes the wrapped verifier.
func (h *RequireHeaders) Close() error { return closeNext(h.next) }

// String describes h (header names only) and the verifier it wraps.
func (h *RequireHeaders) String() string {
	return fmt.Sprintf("require_headers(%s) -> %s", strings.Join(h.names, ","), describe(h.next))
}

// GoString is String.
func (h *RequireHeaders) GoString() string { return h.String() }
