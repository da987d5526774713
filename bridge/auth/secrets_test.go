package auth

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// Every secret in these tests contains this marker; no output may.
const marker = "SEKRIT"

var (
	hmacSecret = "hmac-" + marker + "-8c1e"
	userSecret = "user-" + marker + "-2b7f"
	passSecret = "pass-" + marker + "-51aa"
	tokSecret  = "token-" + marker + "-9d0c"
	hdrSecret  = "hdr-" + marker + "-77e1"
)

// TestSecretsNeverShown builds every scheme (and broken configurations)
// from secrets carrying a marker, then checks that no error, log line,
// String, GoString, %v, %+v, %#v or LogValue shows it.
func TestSecretsNeverShown(t *testing.T) {
	testKeys(t)
	srv := newJWKSServer(t)
	configs := map[string]Config{
		"mist":          {WebhookSecret: []string{hmacSecret, "b" + marker}},
		"hmac":          {Type: "hmac", WebhookSecret: []string{hmacSecret}, HMACHeader: "X-S", HMACIDHeader: "X-Id"},
		"basic":         {Type: "basic", Username: userSecret, Password: passSecret},
		"bearer":        {Type: "bearer", Token: []string{tokSecret}},
		"header":        {Type: "header", Token: []string{tokSecret}, Header: "X-Token"},
		"authheader":    {Type: "authheader", Token: []string{tokSecret}},
		"querystring":   {Type: "querystring", Token: []string{tokSecret}, QueryParam: "t"},
		"splunk":        {Type: "splunk", Token: []string{tokSecret}},
		"jwt":           {Type: "jwt", JWKSURL: "http://u:" + passSecret + "@" + strings.TrimPrefix(srv.URL, "http://") + "/jwks?key=" + tokSecret, JWTIssuer: "i", JWTAudience: []string{"a"}},
		"none+wrappers": {Type: "none", AllowCIDRs: []string{"192.0.2.0/24"}, RequireHeaders: []string{"X-Api-Token=" + hdrSecret}},
		// Broken ones: their errors must not quote the secrets either.
		"basic with a token":   {Type: "basic", Username: userSecret, Password: passSecret, Token: []string{tokSecret}},
		"none with everything": {Type: "none", Username: userSecret, Password: passSecret, Token: []string{tokSecret}, WebhookSecret: []string{hmacSecret}},
		"no type, a token":     {Token: []string{tokSecret}, Password: passSecret},
		"bad type":             {Type: "oauth", WebhookSecret: []string{hmacSecret}},
		"user with colon":      {Type: "basic", Username: userSecret + ":x", Password: passSecret},
		"bad whsec":            {Type: "hmac", WebhookSecret: []string{"whsec_" + marker + "!!"}, HMACHeader: "X-S"},
		"header list no =":     {WebhookSecret: []string{hmacSecret}, RequireHeaders: []string{hdrSecret}},
		"header list empty":    {WebhookSecret: []string{hmacSecret}, RequireHeaders: []string{"=" + hdrSecret}},
	}
	for name, c := range configs {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			log := slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
			log.Info("config", "auth", c)
			fmt.Fprintf(&out, "%v %+v %#v %s\n", c, c, c, c.String())
			fmt.Fprintf(&out, "%v %+v %#v\n", &c, &c, &c)
			if err := c.Validate(); err != nil {
				fmt.Fprintln(&out, err)
			}
			v, err := c.Verifier(log)
			if err != nil {
				fmt.Fprintln(&out, err)
			} else {
				defer v.(io.Closer).Close()
				fmt.Fprintf(&out, "%v %+v %#v %s\n", v, v, v, v)
				for _, r := range hostileRequests() {
					if err := v.Verify(r, []byte(pingBody)); err != nil {
						fmt.Fprintln(&out, err, Reason(err), Challenge(err))
					}
				}
			}
			if strings.Contains(out.String(), marker) {
				t.Fatalf("a secret shows:\n%s", out.String())
			}
			if enc := base64.StdEncoding.EncodeToString([]byte(userSecret + ":" + passSecret)); strings.Contains(out.String(), enc) {
				t.Fatal("basic credentials show, base64-encoded")
			}
		})
	}
}

// hostileRequests carry the secrets in the wrong places and wrong forms,
// so an error that echoed its input would show them.
func hostileRequests() []*http.Request {
	wrong := "x" + tokSecret
	return []*http.Request{
		request("/"),
		request("/?t="+wrong+"&token="+wrong, "Authorization: Bearer "+wrong, "X-Token: "+wrong, "X-Api-Token: "+wrong+hdrSecret),
		request("/", "Authorization: Splunk "+wrong, "X-Mist-Signature-v2: "+hmacSecret, "X-S: "+hmacSecret),
		request("/", "Authorization: Basic "+base64.StdEncoding.EncodeToString([]byte(userSecret+":x"+passSecret))),
		request("/", "Authorization: "+tokSecret+"x", "X-Mist-Signature: "+strings.Repeat(marker, 8)),
		request("/", "Authorization: Bearer "+marker+".e30."+marker),
	}
}
