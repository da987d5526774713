package auth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

// request builds a POST to target with the given headers ("Name: value").
func request(target string, headers ...string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, target, nil)
	for _, h := range headers {
		name, value, _ := strings.Cut(h, ":")
		r.Header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	return r
}

// checkResult fails t unless err is nil (want == "") or an *Error with the
// wanted reason that wraps ErrUnauthorized.
func checkResult(t *testing.T, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("Verify = %v, want nil", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("Verify = nil, want %s", want)
	}
	if got := Reason(err); got != want {
		t.Fatalf("Reason = %q (%v), want %q", got, err, want)
	}
	wantSentinel := ErrUnauthorized
	if want == ReasonIPNotAllowed {
		wantSentinel = ErrForbidden
	}
	if !errors.Is(err, wantSentinel) {
		t.Fatalf("error %v does not wrap %v", err, wantSentinel)
	}
}

// auditsBody is the body of the SOURCES.md vector: audits.json without
// its trailing newline.
func auditsBody(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/audits.json")
	if err != nil {
		t.Fatal(err)
	}
	b = []byte(strings.TrimSuffix(string(b), "\n"))
	if len(b) != 895 {
		t.Fatalf("audits body is %d bytes, want 895", len(b))
	}
	return b
}

const pingBody = `{"topic":"ping","events":[{"id":"487f6eca-6276-4993-bfeb-f3cbbbba4f08","name":"string","site_id":"72771e6a-6f5e-4de4-a5b9-1266c4197811","timestamp":0}]}`
