package auth

import (
	"errors"
	"strings"
	"testing"
)

// TestSpecFieldErrors checks that one validation serves both transports:
// the Spec names JSON fields, the Config names variables, for the same
// problem.
func TestSpecFieldErrors(t *testing.T) {
	tests := []struct {
		name   string
		spec   Spec
		fields []string
		json   string // a substring of the first message as the API shows it
		env    string // the same problem as Config.Validate says it
	}{
		{"none with a token", Spec{Type: "none", Token: []string{"t"}}, []string{FieldToken}, "authType=none takes no token", "MISTBRIDGE_AUTH_TYPE=none takes no MISTBRIDGE_AUTH_TOKEN"},
		{"basic without both", Spec{Type: "basic"}, []string{FieldUserName, FieldPassword}, "authType=basic needs userName", "MISTBRIDGE_AUTH_TYPE=basic needs MISTBRIDGE_AUTH_USERNAME"},
		{"token type without token", Spec{Type: "querystring"}, []string{FieldToken}, "authType=querystring needs token", "needs MISTBRIDGE_AUTH_TOKEN"},
		{"user and token", Spec{Type: "bearer", Token: []string{"t"}, UserName: "u", Password: "p"}, []string{FieldUserName, FieldPassword}, "takes no userName", "takes no MISTBRIDGE_AUTH_USERNAME"},
		{"hmac without secret", Spec{Type: "hmac", HMACHeader: "X-S"}, []string{FieldSecret}, "authType=hmac needs secret", "needs MISTBRIDGE_WEBHOOK_SECRET"},
		{"unknown type", Spec{Type: "oauth2"}, []string{FieldType}, `authType="oauth2" is not supported`, `MISTBRIDGE_AUTH_TYPE="oauth2" is not supported`},
		{"nothing", Spec{}, []string{FieldType}, "secret is not set and authType is empty", "MISTBRIDGE_WEBHOOK_SECRET is not set and MISTBRIDGE_AUTH_TYPE is empty"},
		{"hmac bad algorithm", Spec{Type: "hmac", Secret: []string{"s"}, HMACHeader: "X", HMACAlgorithm: "md5"}, []string{FieldHMACAlgorithm}, `hmacAlgorithm="md5" is invalid`, `MISTBRIDGE_AUTH_HMAC_ALGORITHM="md5"`},
		{"jwt incomplete", Spec{Type: "jwt"}, []string{FieldJWKSURL, FieldIssuer, FieldAudience}, "authType=jwt needs jwksUrl", "needs MISTBRIDGE_AUTH_JWKS_URL"},
		{"bad cidr", Spec{Type: "none", AllowCIDRs: []string{"x"}}, []string{FieldAllowCIDRs}, "allowCidrs:", "MISTBRIDGE_AUTH_ALLOW_CIDRS:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.Validate()
			fes := FieldErrors(err)
			if len(fes) != len(tt.fields) {
				t.Fatalf("errors %v, want fields %v", err, tt.fields)
			}
			for i, f := range tt.fields {
				if fes[i].Field != f {
					t.Errorf("field %d = %q, want %q", i, fes[i].Field, f)
				}
				if strings.Contains(fes[i].Msg, "MISTBRIDGE_") {
					t.Errorf("the API message names a variable: %s", fes[i].Msg)
				}
			}
			if !strings.Contains(fes[0].Msg, tt.json) {
				t.Errorf("message %q, want %q", fes[0].Msg, tt.json)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || !strings.HasPrefix(err.Error(), "auth: ") {
				t.Errorf("error %v is not a prefixed *FieldError", err)
			}
			c := Config{Type: tt.spec.Type, WebhookSecret: tt.spec.Secret, Username: tt.spec.UserName, Password: tt.spec.Password,
				Token: tt.spec.Token, HMACHeader: tt.spec.HMACHeader, HMACAlgorithm: tt.spec.HMACAlgorithm, AllowCIDRs: tt.spec.AllowCIDRs}
			cerr := c.Validate()
			if cerr == nil || !strings.Contains(cerr.Error(), tt.env) {
				t.Errorf("Config.Validate = %v, want %q", cerr, tt.env)
			}
			if cf := FieldErrors(cerr); len(cf) != len(fes) || cf[0].Field != fes[0].Field {
				t.Errorf("Config fields %v differ from Spec fields %v", cf, fes)
			}
		})
	}
	if v := VariableOf(FieldSecret); v != "MISTBRIDGE_WEBHOOK_SECRET" {
		t.Errorf("VariableOf(secret) = %q", v)
	}
}

func TestSpecVerifierNoSecretInOutput(t *testing.T) {
	s := Spec{Type: "basic", UserName: "u", Password: "hunter2-pw", RequireHeaders: []string{"X-K=hdr-secret"}}
	v, err := s.Verifier(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{s.String(), s.GoString(), describe(v)} {
		if strings.Contains(out, "hunter2-pw") || strings.Contains(out, "hdr-secret") {
			t.Errorf("secret in %q", out)
		}
	}
	if NeedsBody(v) || CapabilitiesOf(v) != (Capabilities{HeadersOnly: true}) {
		t.Errorf("capabilities of a wrapped basic: %+v", CapabilitiesOf(v))
	}
}
