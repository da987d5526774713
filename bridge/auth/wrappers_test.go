package auth

import (
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// okVerifier accepts everything and counts calls.
type okVerifier struct {
	mu    sync.Mutex
	calls int
}

func (o *okVerifier) Verify(*http.Request, []byte) error {
	o.mu.Lock()
	o.calls++
	o.mu.Unlock()
	return nil
}

func prefixes(t *testing.T, s ...string) []netip.Prefix {
	t.Helper()
	p, err := ParsePrefixes(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestIPAllow(t *testing.T) {
	allow := prefixes(t, "192.0.2.0/24", "2001:db8::/32", "198.51.100.7")
	trusted := prefixes(t, "10.0.0.0/8", "fd00::1")
	a, err := NewIPAllow(NewNone(), allow, trusted)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		remote string
		xff    []string
		want   string
		client string
	}{
		{"allowed peer", "192.0.2.10:5555", nil, "", "192.0.2.10"},
		{"allowed single host", "198.51.100.7:1", nil, "", "198.51.100.7"},
		{"other single host", "198.51.100.8:1", nil, ReasonIPNotAllowed, "198.51.100.8"},
		{"allowed v6 peer", "[2001:db8::1]:443", nil, "", "2001:db8::1"},
		{"v4-mapped v6 peer", "[::ffff:192.0.2.10]:443", nil, "", "192.0.2.10"},
		{"zoned peer", "[2001:db8::1%eth0]:443", nil, "", "2001:db8::1"},
		{"denied peer", "203.0.113.5:5555", nil, ReasonIPNotAllowed, "203.0.113.5"},
		{"untrusted peer's XFF ignored", "203.0.113.5:5555", []string{"192.0.2.10"}, ReasonIPNotAllowed, "203.0.113.5"},
		{"trusted proxy, allowed client", "10.1.2.3:5555", []string{"192.0.2.10"}, "", "192.0.2.10"},
		{"trusted proxy, denied client", "10.1.2.3:5555", []string{"203.0.113.5"}, ReasonIPNotAllowed, "203.0.113.5"},
		{"forged leftmost entry", "10.1.2.3:5555", []string{"192.0.2.10, 203.0.113.5"}, ReasonIPNotAllowed, "203.0.113.5"},
		{"chain of trusted proxies", "10.1.2.3:5555", []string{"203.0.113.9, 192.0.2.10, 10.9.9.9"}, "", "192.0.2.10"},
		{"several header lines", "10.1.2.3:5555", []string{"203.0.113.9", "192.0.2.10", "10.9.9.9"}, "", "192.0.2.10"},
		{"v6 trusted proxy", "[fd00::1]:80", []string{"2001:db8::5"}, "", "2001:db8::5"},
		{"hop with port", "10.1.2.3:5555", []string{"192.0.2.10:1234"}, "", "192.0.2.10"},
		{"bracketed v6 hop", "10.1.2.3:5555", []string{"[2001:db8::5]"}, "", "2001:db8::5"},
		{"garbage hop", "10.1.2.3:5555", []string{"unknown"}, ReasonIPNotAllowed, ""},
		{"all hops trusted", "10.1.2.3:5555", []string{"10.0.0.1, 10.0.0.2"}, ReasonIPNotAllowed, "10.0.0.1"},
		{"trusted proxy without XFF", "10.1.2.3:5555", nil, ReasonIPNotAllowed, "10.1.2.3"},
		{"empty entries", "10.1.2.3:5555", []string{" , 192.0.2.10 ,"}, "", "192.0.2.10"},
		{"bad peer", "nonsense", nil, ReasonIPNotAllowed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := request("/")
			r.RemoteAddr = tt.remote
			for _, x := range tt.xff {
				r.Header.Add("X-Forwarded-For", x)
			}
			err := a.Verify(r, nil)
			checkResult(t, err, tt.want)
			if err != nil && !errors.Is(err, ErrForbidden) {
				t.Errorf("%v is not ErrForbidden", err)
			}
			ip, ok := a.ClientIP(r)
			got := ""
			if ok {
				got = ip.String()
			}
			if got != tt.client {
				t.Errorf("ClientIP = %q, want %q", got, tt.client)
			}
		})
	}
}

func TestIPAllowRunsNextOnlyWhenAllowed(t *testing.T) {
	next := &okVerifier{}
	a, _ := NewIPAllow(next, prefixes(t, "192.0.2.0/24"), nil)
	r := request("/")
	r.RemoteAddr = "203.0.113.1:1"
	_ = a.Verify(r, nil)
	r.RemoteAddr = "192.0.2.1:1"
	_ = a.Verify(r, nil)
	if next.calls != 1 {
		t.Fatalf("next called %d times, want 1", next.calls)
	}
	mist, _ := NewMist([]string{"test-secret"})
	a, _ = NewIPAllow(mist, prefixes(t, "192.0.2.0/24"), nil)
	checkResult(t, a.Verify(r, []byte(pingBody)), ReasonSignatureMissing)
}

func TestParsePrefixes(t *testing.T) {
	p, err := ParsePrefixes([]string{" 10.0.0.0/8", "", "192.0.2.1", "::1", "2001:db8::/32 "})
	if err != nil || len(p) != 4 || p[1].Bits() != 32 || p[2].Bits() != 128 {
		t.Fatalf("ParsePrefixes = %v, %v", p, err)
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "fe80::1%eth0", "10.0.0"} {
		if _, err := ParsePrefixes([]string{bad}); err == nil {
			t.Errorf("ParsePrefixes(%q) = nil error", bad)
		}
	}
	if _, err := NewIPAllow(NewNone(), nil, nil); err == nil {
		t.Error("NewIPAllow with an empty allowlist: nil error")
	}
}

func TestRequireHeaders(t *testing.T) {
	h, err := NewRequireHeaders(NewNone(), map[string]string{"x-api-token": "abc", "X-Csrf-Token": "def"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		headers []string
		want    string
	}{
		{"both", []string{"X-Api-Token: abc", "x-csrf-token: def"}, ""},
		{"one missing", []string{"X-Api-Token: abc"}, ReasonHeaderMissing},
		{"one missing, one wrong", []string{"X-Api-Token: abd"}, ReasonHeaderMissing},
		{"one wrong", []string{"X-Api-Token: abc", "X-Csrf-Token: de"}, ReasonHeaderMismatch},
		{"case of the value counts", []string{"X-Api-Token: ABC", "X-Csrf-Token: def"}, ReasonHeaderMismatch},
		{"none", nil, ReasonHeaderMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkResult(t, h.Verify(request("/", tt.headers...), nil), tt.want)
		})
	}
	if got := h.String(); got != "require_headers(X-Api-Token,X-Csrf-Token) -> none" {
		t.Errorf("String = %q", got)
	}
	for _, bad := range []map[string]string{nil, {"": "x"}, {"X-A": ""}, {"X A": "v"}, {"x-a": "1", "X-A": "2"}} {
		if _, err := NewRequireHeaders(NewNone(), bad); err == nil {
			t.Errorf("NewRequireHeaders(%v) = nil error", bad)
		}
	}
}

func TestParseHeaderList(t *testing.T) {
	m, err := ParseHeaderList([]string{"x-api-token=a=b", " X-Other = v ", ""})
	if err != nil || len(m) != 2 || m["X-Api-Token"] != "a=b" || m["X-Other"] != "v" {
		t.Fatalf("ParseHeaderList = %v, %v", m, err)
	}
	for _, bad := range [][]string{{"justasecret"}, {"=v"}, {"X-A="}, {"X A=v"}, {"X-A=1", "x-a=2"}} {
		_, err := ParseHeaderList(bad)
		if err == nil {
			t.Errorf("ParseHeaderList(%q) = nil error", bad)
			continue
		}
		if bad[0] == "justasecret" && containsAny(err.Error(), "justasecret") {
			t.Errorf("error quotes the entry: %v", err)
		}
	}
}

func TestReplay(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	next := &okVerifier{}
	p, err := NewReplay(next, func(r *http.Request) (string, bool) {
		id := r.Header.Get("Id")
		return id, id != ""
	}, ReplayOptions{Window: time.Minute, Size: 3, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	// verify is what the handler does for a request answered 2xx: Verify,
	// then Commit.
	verify := func(id string) error {
		r := request("/")
		if id != "" {
			r = request("/", "Id: "+id)
		}
		err := p.Verify(r, nil)
		if err == nil {
			Commit(p, r)
		}
		return err
	}
	checkResult(t, verify("a"), "")
	checkResult(t, verify("a"), ReasonReplayed)
	checkResult(t, verify("b"), "")
	checkResult(t, verify(""), "")
	checkResult(t, verify(""), "") // no key: nothing to compare

	now = now.Add(59 * time.Second)
	checkResult(t, verify("a"), ReasonReplayed)
	now = now.Add(time.Second)
	checkResult(t, verify("a"), "") // the window is over
	if got := p.Len(); got != 1 {
		t.Errorf("Len = %d after expiry, want 1", got)
	}

	// Bounded: a fourth id pushes the oldest out.
	checkResult(t, verify("c"), "")
	checkResult(t, verify("d"), "")
	checkResult(t, verify("e"), "")
	if got := p.Len(); got != 3 {
		t.Errorf("Len = %d, want 3 (the size)", got)
	}
	checkResult(t, verify("a"), "") // forgotten: the cost of a bound
	checkResult(t, verify("e"), ReasonReplayed)
}

func TestReplayRecordsOnlyAccepted(t *testing.T) {
	mist, _ := NewMist([]string{"test-secret"})
	p, err := NewReplay(mist, func(r *http.Request) (string, bool) { return r.Header.Get("Id"), true }, ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A forger sends id 1 first with a bad signature: it must not block
	// the real delivery.
	forged := request("/", "Id: 1", "X-Mist-Signature-v2: "+auditsV2)
	checkResult(t, p.Verify(forged, []byte(pingBody)), ReasonSignatureMismatch)
	real := func() *http.Request { return request("/", "Id: 1", "X-Mist-Signature-v2: "+pingV2) }
	checkResult(t, p.Verify(real(), []byte(pingBody)), "")
	Commit(p, real())
	checkResult(t, p.Verify(real(), []byte(pingBody)), ReasonReplayed)
}

// TestReplayForgetsFailedDeliveries: a delivery verified but not answered
// 2xx (the broker was down) is not remembered, so the sender's retry with
// the same id goes through.
func TestReplayForgetsFailedDeliveries(t *testing.T) {
	p, _ := NewReplay(NewNone(), func(r *http.Request) (string, bool) { return r.Header.Get("Id"), true }, ReplayOptions{})
	r := func() *http.Request { return request("/", "Id: gh-delivery-1") }
	checkResult(t, p.Verify(r(), nil), "") // then the bridge answers 503: no Commit
	checkResult(t, p.Verify(r(), nil), "") // the retry
	Commit(p, r())                         // answered 200
	checkResult(t, p.Verify(r(), nil), ReasonReplayed)
	if p.Len() != 1 {
		t.Errorf("Len = %d, want 1", p.Len())
	}
}

func TestReplayWithHMAC(t *testing.T) {
	h, err := NewHMAC(with(swOpts, func(o *HMACOptions) { o.Now = at(swTS, 0) }))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := NewReplay(h, h.DeliveryKey, ReplayOptions{Now: at(swTS, 0)})
	req := func() *http.Request {
		return request("/", "webhook-signature: "+swSig, "webhook-timestamp: "+swTS, "webhook-id: "+swID)
	}
	checkResult(t, p.Verify(req(), []byte(swBody)), "")
	Commit(p, req())
	checkResult(t, p.Verify(req(), []byte(swBody)), ReasonReplayed)
}

// TestReplayConcurrent runs the handler's Verify-then-Commit from many
// goroutines: once every goroutine is done, every id is remembered and
// refused, and the memory stays within its size. (Copies in flight at the
// same moment may both pass: their events share ids, so brokers drop one.)
func TestReplayConcurrent(t *testing.T) {
	p, _ := NewReplay(NewNone(), func(r *http.Request) (string, bool) { return r.Header.Get("Id"), true }, ReplayOptions{Size: 50})
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := map[string]int{}
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				id := string(rune('a' + (i+g)%26))
				r := request("/", "Id: "+id)
				if p.Verify(r, nil) == nil {
					Commit(p, r)
					mu.Lock()
					accepted[id]++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if len(accepted) != 26 {
		t.Errorf("%d ids accepted, want 26", len(accepted))
	}
	for id, n := range accepted {
		if n > 8 {
			t.Errorf("id %s accepted %d times: more than one per goroutine, so a committed id passed again", id, n)
		}
		checkResult(t, p.Verify(request("/", "Id: "+id), nil), ReasonReplayed)
	}
	if p.Len() > 50 {
		t.Errorf("Len = %d, above the size 50", p.Len())
	}
}

func TestNone(t *testing.T) {
	checkResult(t, NewNone().Verify(request("/"), nil), "")
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if sub != "" && strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
