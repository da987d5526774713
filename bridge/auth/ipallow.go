package auth

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// IPAllow refuses (403, [ReasonIPNotAllowed]) a request whose client
// address is outside an allowlist, then hands the others to the next
// verifier. The client address is the TCP peer, unless the peer is a
// trusted proxy: then X-Forwarded-For is read from the right, skipping
// trusted proxies, and the first address that is not one is the client
// (the leftmost when all are). A sender cannot forge its way in by writing
// X-Forwarded-For itself: only what trusted proxies appended is believed.
// It is safe for concurrent use. Build it with [NewIPAllow].
type IPAllow struct {
	next    Verifier
	allow   []netip.Prefix
	trusted []netip.Prefix
}

// NewIPAllow returns next behind an allowlist. allow must not be empty;
// trusted lists the proxies whose X-Forwarded-For is believed (none means
// the header is ignored).
func NewIPAllow(next Verifier, allow, trusted []netip.Prefix) (*IPAllow, error) {
	if next == nil {
		return nil, errors.New("auth: ipallow: no verifier to wrap")
	}
	if len(allow) == 0 {
		return nil, errors.New("auth: ipallow: the allowlist is empty")
	}
	return &IPAllow{next: next, allow: masked(allow), trusted: masked(trusted)}, nil
}

// ParsePrefixes parses CIDRs ("10.0.0.0/8", "2001:db8::/32") and bare
// addresses (a single host). The error quotes the first bad entry.
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p)
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("auth: %q is neither a CIDR nor an IP address", s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// Verify implements [Verifier].
func (a *IPAllow) Verify(r *http.Request, body []byte) error {
	ip, ok := a.ClientIP(r)
	if !ok || !contains(a.allow, ip) {
		return Forbidden(ReasonIPNotAllowed)
	}
	return a.next.Verify(r, body)
}

// ClientIP returns the client address of r as Verify judges it; ok is
// false when it cannot be told (an unparsable peer or forwarded hop).
func (a *IPAllow) ClientIP(r *http.Request) (ip netip.Addr, ok bool) {
	peer, ok := parseAddr(r.RemoteAddr)
	if !ok {
		return netip.Addr{}, false
	}
	if !contains(a.trusted, peer) {
		return peer, true
	}
	client := peer
	xff := r.Header.Values("X-Forwarded-For")
	for i := len(xff) - 1; i >= 0; i-- {
		for v := xff[i]; v != ""; {
			var hop string
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				hop, v = v[j+1:], v[:j]
			} else {
				hop, v = v, ""
			}
			if hop = strings.TrimSpace(hop); hop == "" {
				continue
			}
			addr, ok := parseAddr(hop)
			if !ok {
				// Appended by a trusted proxy, yet not an address ("unknown"):
				// the client cannot be told.
				return netip.Addr{}, false
			}
			client = addr
			if !contains(a.trusted, addr) {
				return addr, true
			}
		}
	}
	return client, true
}

// Precheck implements [Prechecker]: the allowlist, then the wrapped
// verifier's Precheck.
func (a *IPAllow) Precheck(r *http.Request) error {
	if ip, ok := a.ClientIP(r); !ok || !contains(a.allow, ip) {
		return Forbidden(ReasonIPNotAllowed)
	}
	return Precheck(a.next, r)
}

// Capabilities implements [Capable]: the wrapped verifier's.
func (a *IPAllow) Capabilities() Capabilities { return CapabilitiesOf(a.next) }

// Commit implements [Committer]: it passes r on to the wrapped verifier.
func (a *IPAllow) Commit(r *http.Request) { Commit(a.next, r) }

func (a *IPAllow) unwrap() Verifier { return a.next }

// Close closes the wrapped verifier.
func (a *IPAllow) Close() error { return closeNext(a.next) }

// String describes a and the verifier it wraps.
func (a *IPAllow) String() string {
	return fmt.Sprintf("ipallow(allow=%v trusted_proxies=%v) -> %s", a.allow, a.trusted, describe(a.next))
}

// GoString is String.
func (a *IPAllow) GoString() string { return a.String() }

// parseAddr reads "ip", "ip:port", "[ip]:port" or "[ip]", unmapping
// IPv4-in-IPv6 and dropping any zone.
func parseAddr(s string) (netip.Addr, bool) {
	// Pick the parser by shape: a failed parse allocates its error.
	if strings.HasPrefix(s, "[") && strings.Contains(s, "]:") || strings.Count(s, ":") == 1 {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			return ap.Addr().Unmap().WithZone(""), true
		}
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

func contains(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// masked normalises prefixes: host bits cleared, IPv4-in-IPv6 unmapped.
func masked(in []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(in))
	for _, p := range in {
		a := p.Addr()
		bits := p.Bits()
		if a.Is4In6() {
			a, bits = a.Unmap(), max(bits-96, 0)
		}
		out = append(out, netip.PrefixFrom(a.WithZone(""), bits).Masked())
	}
	return out
}
