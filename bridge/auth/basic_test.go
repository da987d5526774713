package auth

import (
	"encoding/base64"
	"testing"
)

func basicHeader(user, password string) string {
	return "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

func TestBasic(t *testing.T) {
	b, err := NewBasic("mist", "pa:ss word")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		headers []string
		want    string
	}{
		{"right", []string{basicHeader("mist", "pa:ss word")}, ""},
		{"scheme in lowercase", []string{"Authorization: basic " + base64.StdEncoding.EncodeToString([]byte("mist:pa:ss word"))}, ""},
		{"wrong password", []string{basicHeader("mist", "pa:ss")}, ReasonCredentialsInvalid},
		{"wrong user", []string{basicHeader("mistx", "pa:ss word")}, ReasonCredentialsInvalid},
		{"both wrong", []string{basicHeader("a", "b")}, ReasonCredentialsInvalid},
		{"empty password", []string{basicHeader("mist", "")}, ReasonCredentialsInvalid},
		{"prefix of the password", []string{basicHeader("mist", "pa:ss wor")}, ReasonCredentialsInvalid},
		{"missing", nil, ReasonCredentialsMissing},
		{"bearer", []string{"Authorization: Bearer abc"}, ReasonCredentialsMalformed},
		{"not base64", []string{"Authorization: Basic !!!"}, ReasonCredentialsMalformed},
		{"no colon", []string{"Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("mist"))}, ReasonCredentialsMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := b.Verify(request("/", tt.headers...), nil)
			checkResult(t, err, tt.want)
			if err != nil && Challenge(err) != `Basic realm="mistbridge"` {
				t.Errorf("Challenge = %q", Challenge(err))
			}
		})
	}
}

func TestNewBasicErrors(t *testing.T) {
	for _, c := range [][2]string{{"", "p"}, {"u", ""}, {"u:x", "p"}} {
		if _, err := NewBasic(c[0], c[1]); err == nil {
			t.Errorf("NewBasic(%q, %q) = nil error", c[0], c[1])
		}
	}
}
