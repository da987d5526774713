package auth

import (
	"net/http"
	"testing"
)

func TestTokenSchemes(t *testing.T) {
	mk := func(v *Token, err error) *Token {
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tokens := []string{" old-token ", "new-token"}
	bearer := mk(NewBearer(tokens))
	header := mk(NewHeaderToken("x-api-token", tokens))
	authHeader := mk(NewAuthHeader([]string{"Token new-token"}))
	query := mk(NewQueryToken("", tokens))
	queryNamed := mk(NewQueryToken("apiKey", tokens))
	splunk := mk(NewSplunk(tokens))

	tests := []struct {
		name      string
		v         *Token
		target    string
		headers   []string
		want      string
		challenge string
	}{
		{"bearer", bearer, "/", []string{"Authorization: Bearer new-token"}, "", ""},
		{"bearer old token", bearer, "/", []string{"Authorization: Bearer old-token"}, "", ""},
		{"bearer scheme case", bearer, "/", []string{"Authorization: bEaReR   new-token"}, "", ""},
		{"bearer wrong", bearer, "/", []string{"Authorization: Bearer new-tokem"}, ReasonCredentialsInvalid, `Bearer realm="mistbridge", error="invalid_token"`},
		{"bearer prefix of token", bearer, "/", []string{"Authorization: Bearer new"}, ReasonCredentialsInvalid, `Bearer realm="mistbridge", error="invalid_token"`},
		{"bearer missing", bearer, "/", nil, ReasonCredentialsMissing, `Bearer realm="mistbridge"`},
		{"bearer empty", bearer, "/", []string{"Authorization: Bearer "}, ReasonCredentialsMalformed, `Bearer realm="mistbridge", error="invalid_request"`},
		{"bearer other scheme", bearer, "/", []string{"Authorization: Basic bmV3LXRva2Vu"}, ReasonCredentialsMalformed, `Bearer realm="mistbridge", error="invalid_request"`},
		{"bearer glued", bearer, "/", []string{"Authorization: Bearernew-token"}, ReasonCredentialsMalformed, `Bearer realm="mistbridge", error="invalid_request"`},
		{"bearer in query is not bearer", bearer, "/?token=new-token", nil, ReasonCredentialsMissing, `Bearer realm="mistbridge"`},

		{"header", header, "/", []string{"X-Api-Token: new-token"}, "", ""},
		{"header wrong", header, "/", []string{"X-Api-Token: nope"}, ReasonCredentialsInvalid, ""},
		{"header missing", header, "/", []string{"Authorization: Bearer new-token"}, ReasonCredentialsMissing, ""},

		{"authheader", authHeader, "/", []string{"Authorization: Token new-token"}, "", ""},
		{"authheader partial", authHeader, "/", []string{"Authorization: new-token"}, ReasonCredentialsInvalid, ""},
		{"authheader missing", authHeader, "/", nil, ReasonCredentialsMissing, ""},

		{"query", query, "/webhooks/mist?topic=x&token=new-token", nil, "", ""},
		{"query escaped", query, "/webhooks/mist?token=new%2Dtoken", nil, "", ""},
		{"query first value counts", query, "/?token=nope&token=new-token", nil, ReasonCredentialsInvalid, ""},
		{"query wrong", query, "/?token=new-token2", nil, ReasonCredentialsInvalid, ""},
		{"query missing", query, "/?topic=x", nil, ReasonCredentialsMissing, ""},
		{"query empty", query, "/?token=", nil, ReasonCredentialsMissing, ""},
		{"query named", queryNamed, "/?apiKey=old-token", nil, "", ""},
		{"query name is exact", queryNamed, "/?apikey=old-token", nil, ReasonCredentialsMissing, ""},

		{"splunk", splunk, "/", []string{"Authorization: Splunk new-token"}, "", ""},
		{"splunk wrong", splunk, "/", []string{"Authorization: Splunk x"}, ReasonCredentialsInvalid, `Splunk realm="mistbridge"`},
		{"splunk as bearer", splunk, "/", []string{"Authorization: Bearer new-token"}, ReasonCredentialsMalformed, `Splunk realm="mistbridge"`},
		{"splunk missing", splunk, "/", nil, ReasonCredentialsMissing, `Splunk realm="mistbridge"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.v.Verify(request(tt.target, tt.headers...), nil)
			checkResult(t, err, tt.want)
			if got := Challenge(err); got != tt.challenge {
				t.Errorf("Challenge = %q, want %q", got, tt.challenge)
			}
		})
	}
}

func TestTokenConstructors(t *testing.T) {
	if _, err := NewBearer([]string{" ", ""}); err == nil {
		t.Error("NewBearer with no token: nil error")
	}
	if _, err := NewHeaderToken("", []string{"t"}); err == nil {
		t.Error("NewHeaderToken with no name: nil error")
	}
	if _, err := NewHeaderToken("X Bad", []string{"t"}); err == nil {
		t.Error("NewHeaderToken with a bad name: nil error")
	}
	v, err := NewHeaderToken("authorization", []string{"t"})
	if err != nil || v.String() != "authheader(tokens=1)" {
		t.Errorf("NewHeaderToken(authorization) = %v, %v; want the authheader scheme", v, err)
	}
	q, _ := NewQueryToken(" ", []string{"a", "a", "b"})
	if got := q.String(); got != "querystring(param=token tokens=2)" {
		t.Errorf("String = %q (duplicates should be dropped)", got)
	}
}

func TestQueryValue(t *testing.T) {
	for _, tt := range []struct {
		raw, param, want string
		ok               bool
	}{
		{"token=a", "token", "a", true},
		{"x=1&token=a+b", "token", "a b", true},
		{"to%6Ben=a", "token", "a", true},
		{"token=a;b&token=c", "token", "c", true},
		{"token=%zz&token=c", "token", "c", true},
		{"token", "token", "", true},
		{"tokens=a", "token", "", false},
		{"", "token", "", false},
	} {
		got, ok := queryValue(tt.raw, tt.param)
		if got != tt.want || ok != tt.ok {
			t.Errorf("queryValue(%q, %q) = %q, %v; want %q, %v", tt.raw, tt.param, got, ok, tt.want, tt.ok)
		}
	}
}

func TestIsSplunk(t *testing.T) {
	splunk, _ := NewSplunk([]string{"t"})
	bearer, _ := NewBearer([]string{"t"})
	c := Config{Type: "splunk", Token: []string{"t"}, AllowCIDRs: []string{"192.0.2.0/24"}, RequireHeaders: []string{"X-A=b"}}
	wrapped, err := c.Verifier(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		v    Verifier
		want bool
	}{
		{splunk, true}, {wrapped, true}, {bearer, false}, {NewNone(), false},
		{VerifierFunc(func(*http.Request, []byte) error { return nil }), false},
	} {
		if got := IsSplunk(tt.v); got != tt.want {
			t.Errorf("IsSplunk(%v) = %v, want %v", tt.v, got, tt.want)
		}
	}
	if Scheme(wrapped) != Verifier(Scheme(wrapped).(*Token)) {
		t.Error("Scheme did not unwrap to the token")
	}
}
