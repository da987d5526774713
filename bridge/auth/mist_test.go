package auth

import (
	"testing"
)

// The vectors of /work/shared/mist-samples/SOURCES.md (secret test-secret).
const (
	auditsV2 = "4dd15d25426dc016a15bd719be7f86e13143ceb10eb2a68dc4df8c9d4a7ae7da"
	auditsV1 = "031c5ecb5e6602dc66f07c321980e3da59666e0f"
	pingV2   = "28f7198fc2f3a8ef8695ce42ece88ff130318279ac1ab5a96291251c506786c7"
	pingV1   = "92046f8722da1d8047cf67c65d44020cec769f5e"
)

func TestMist(t *testing.T) {
	audits := auditsBody(t)
	ping := []byte(pingBody)
	tests := []struct {
		name    string
		secrets []string
		body    []byte
		headers []string
		want    string
	}{
		{"audits v2", []string{"test-secret"}, audits, []string{"X-Mist-Signature-v2: " + auditsV2}, ""},
		{"audits v1 alone", []string{"test-secret"}, audits, []string{"X-Mist-Signature: " + auditsV1}, ""},
		{"audits both", []string{"test-secret"}, audits, []string{"X-Mist-Signature-v2: " + auditsV2, "X-Mist-Signature: " + auditsV1}, ""},
		{"ping v2", []string{"test-secret"}, ping, []string{"X-Mist-Signature-v2: " + pingV2}, ""},
		{"ping v1", []string{"test-secret"}, ping, []string{"X-Mist-Signature: " + pingV1}, ""},
		{"header name case", []string{"test-secret"}, ping, []string{"x-mist-signature-V2: " + pingV2}, ""},
		{"uppercase hex", []string{"test-secret"}, ping, []string{"X-Mist-Signature-v2: 28F7198FC2F3A8EF8695CE42ECE88FF130318279AC1AB5A96291251C506786C7"}, ""},
		{"rotation: old and new", []string{"old-secret", "test-secret"}, ping, []string{"X-Mist-Signature-v2: " + pingV2}, ""},
		{"rotation: new first", []string{"test-secret", "old-secret"}, ping, []string{"X-Mist-Signature: " + pingV1}, ""},
		{"wrong secret", []string{"other"}, ping, []string{"X-Mist-Signature-v2: " + pingV2}, ReasonSignatureMismatch},
		{"other body", []string{"test-secret"}, audits, []string{"X-Mist-Signature-v2: " + pingV2}, ReasonSignatureMismatch},
		{"body changed by one byte", []string{"test-secret"}, append([]byte(pingBody[:len(pingBody)-1]), ' '), []string{"X-Mist-Signature-v2: " + pingV2}, ReasonSignatureMismatch},
		{"no downgrade: bad v2, good v1", []string{"test-secret"}, ping, []string{"X-Mist-Signature-v2: " + auditsV2, "X-Mist-Signature: " + pingV1}, ReasonSignatureMismatch},
		{"no downgrade: malformed v2, good v1", []string{"test-secret"}, ping, []string{"X-Mist-Signature-v2: xyz", "X-Mist-Signature: " + pingV1}, ReasonSignatureMalformed},
		{"v1 sent as v2", []string{"test-secret"}, ping, []string{"X-Mist-Signature-v2: " + pingV1}, ReasonSignatureMalformed},
		{"v2 sent as v1", []string{"test-secret"}, ping, []string{"X-Mist-Signature: " + pingV2}, ReasonSignatureMalformed},
		{"not hex", []string{"test-secret"}, ping, []string{"X-Mist-Signature-v2: " + pingV2[:62] + "zz"}, ReasonSignatureMalformed},
		{"prefixed", []string{"test-secret"}, ping, []string{"X-Mist-Signature-v2: sha256=" + pingV2}, ReasonSignatureMalformed},
		{"missing", []string{"test-secret"}, ping, nil, ReasonSignatureMissing},
		{"empty", []string{"test-secret"}, ping, []string{"X-Mist-Signature-v2: "}, ReasonSignatureMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := NewMist(tt.secrets)
			if err != nil {
				t.Fatal(err)
			}
			err = m.Verify(request("/webhooks/mist", tt.headers...), tt.body)
			checkResult(t, err, tt.want)
			if err != nil && Challenge(err) != "" {
				t.Errorf("Challenge = %q, want none", Challenge(err))
			}
		})
	}
}

func TestNewMistNeedsASecret(t *testing.T) {
	for _, s := range [][]string{nil, {}, {""}} {
		if _, err := NewMist(s); err == nil {
			t.Errorf("NewMist(%q) = nil error", s)
		}
	}
}

// TestMistConcurrent runs many verifications at once (with -race) to show
// the pooled MAC states are not shared between requests.
func TestMistConcurrent(t *testing.T) {
	m, err := NewMist([]string{"a", "test-secret"})
	if err != nil {
		t.Fatal(err)
	}
	audits := auditsBody(t)
	done := make(chan error)
	for i := range 16 {
		go func() {
			var err error
			for j := 0; j < 200 && err == nil; j++ {
				if (i+j)%2 == 0 {
					err = m.Verify(request("/", "X-Mist-Signature-v2: "+auditsV2), audits)
				} else {
					err = m.Verify(request("/", "X-Mist-Signature-v2: "+pingV2), []byte(pingBody))
				}
			}
			done <- err
		}()
	}
	for range 16 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
