package receivers_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mistbridge/mistbridge/bridge/receivers"
)

func TestCRUD(t *testing.T) {
	r := newRig(t, rigOptions{})

	a := r.api(t, "POST", "/api/v1/receivers", map[string]any{"name": "hooks", "authType": "bearer", "token": "tok-1", "topics": []string{"device-*"}})
	if a.code != 201 {
		t.Fatalf("create: %d %s", a.code, a.raw)
	}
	id := a.str("id")
	if loc := a.header.Get("Location"); loc != "/api/v1/receivers/"+id || id == "" {
		t.Fatalf("Location %q, id %q", loc, id)
	}
	if a.str("token") != receivers.Mask || a.body["enabled"] != true || a.str("url") != r.url+"/webhooks/hooks" {
		t.Fatalf("created: %s", a.raw)
	}
	created := a.body["createdTime"].(float64)
	if created == 0 || a.body["modifiedTime"].(float64) != created {
		t.Fatalf("times: %s", a.raw)
	}

	a = r.api(t, "GET", "/api/v1/receivers", nil)
	if list := a.body["receivers"].([]any); a.code != 200 || len(list) != 1 || list[0].(map[string]any)["id"] != id {
		t.Fatalf("list: %d %s", a.code, a.raw)
	}
	if a = r.api(t, "GET", "/api/v1/receivers/"+id, nil); a.code != 200 || a.str("name") != "hooks" {
		t.Fatalf("get: %d %s", a.code, a.raw)
	}

	// PUT replaces: what a GET showed, sent back, keeps the masked token.
	put := a.body
	put["topics"] = []string{"alarms"}
	if a = r.api(t, "PUT", "/api/v1/receivers/"+id, put); a.code != 200 || a.body["topics"].([]any)[0] != "alarms" {
		t.Fatalf("put: %d %s", a.code, a.raw)
	}
	if a.body["createdTime"].(float64) != created {
		t.Fatalf("createdTime changed: %s", a.raw)
	}
	if code := r.webhook(t, "hooks", event("alarms"), bearer("tok-1")); code != 200 {
		t.Fatalf("webhook after PUT with the mask: %d", code)
	}
	// PUT without the credential: validated like a create.
	if a = r.api(t, "PUT", "/api/v1/receivers/"+id, map[string]any{"name": "hooks", "authType": "bearer"}); a.code != 400 || a.str("field") != "token" {
		t.Fatalf("put without token: %d %s", a.code, a.raw)
	}

	// PATCH merges: the omitted token is kept.
	if a = r.api(t, "PATCH", "/api/v1/receivers/"+id, map[string]any{"topics": []string{}}); a.code != 200 || len(a.body["topics"].([]any)) != 0 {
		t.Fatalf("patch: %d %s", a.code, a.raw)
	}
	if code := r.webhook(t, "hooks", event("device-events"), bearer("tok-1")); code != 200 {
		t.Fatalf("webhook after PATCH: %d", code)
	}
	// Switching type drops the old type's credential unless it is given.
	if a = r.api(t, "PATCH", "/api/v1/receivers/"+id, map[string]any{"authType": "basic", "userName": "u", "password": "p"}); a.code != 200 || a.body["token"] != nil || a.str("password") != receivers.Mask {
		t.Fatalf("patch to basic: %d %s", a.code, a.raw)
	}
	if a = r.api(t, "PATCH", "/api/v1/receivers/"+id, map[string]any{"authType": "bearer"}); a.code != 400 || a.str("field") != "token" {
		t.Fatalf("patch to bearer without a token: %d %s", a.code, a.raw)
	}

	if a = r.api(t, "DELETE", "/api/v1/receivers/"+id, nil); a.code != 204 || len(a.raw) != 0 {
		t.Fatalf("delete: %d %s", a.code, a.raw)
	}
	for _, m := range []string{"GET", "DELETE"} {
		if a = r.api(t, m, "/api/v1/receivers/"+id, nil); a.code != 404 {
			t.Fatalf("%s after delete: %d %s", m, a.code, a.raw)
		}
	}
	for _, m := range []string{"PUT", "PATCH"} {
		if a = r.api(t, m, "/api/v1/receivers/"+id, map[string]any{"name": "x", "authType": "none"}); a.code != 404 {
			t.Fatalf("%s after delete: %d %s", m, a.code, a.raw)
		}
	}
	if a = r.api(t, "GET", "/api/v1/receivers", nil); a.code != 200 || string(a.raw) != "{\"receivers\":[]}\n" {
		t.Fatalf("empty list: %d %q", a.code, a.raw)
	}
}

func TestConflicts(t *testing.T) {
	r := newRig(t, rigOptions{})
	if a := r.api(t, "POST", "/api/v1/receivers", map[string]any{"name": "a", "authType": "none"}); a.code != 201 {
		t.Fatalf("%d %s", a.code, a.raw)
	}
	b := r.api(t, "POST", "/api/v1/receivers", map[string]any{"name": "b", "authType": "none"})
	if a := r.api(t, "POST", "/api/v1/receivers", map[string]any{"name": "a", "authType": "none"}); a.code != 409 || a.str("field") != "name" {
		t.Fatalf("duplicate: %d %s", a.code, a.raw)
	}
	if a := r.api(t, "PATCH", "/api/v1/receivers/"+b.str("id"), map[string]any{"name": "a"}); a.code != 409 {
		t.Fatalf("rename onto another: %d %s", a.code, a.raw)
	}
	a := r.api(t, "POST", "/api/v1/receivers", map[string]any{"name": "mist", "authType": "none"})
	if a.code != 409 || a.str("field") != "name" || !strings.Contains(a.str("error"), `"mist"`) || !strings.Contains(a.str("error"), "start-up") {
		t.Fatalf("environment's name: %d %s", a.code, a.raw)
	}
	if a := r.api(t, "PATCH", "/api/v1/receivers/"+b.str("id"), map[string]any{"name": "mist"}); a.code != 409 {
		t.Fatalf("rename onto the environment's: %d %s", a.code, a.raw)
	}
	// The environment's receiver is untouched.
	body := event("audits")
	if code := r.webhook(t, "mist", body, mistSigned(envSecret, body)); code != 200 {
		t.Fatalf("env receiver: %d", code)
	}
}

// TestValidation checks every rule of the seed (and ours) answers 400
// naming the field.
func TestValidation(t *testing.T) {
	r := newRig(t, rigOptions{})
	tests := []struct {
		name  string
		body  any
		field string
		msg   string // a substring of error
	}{
		{"none with a token", map[string]any{"name": "x", "authType": "none", "token": "t"}, "token", "authType=none takes no token"},
		{"none with a password", map[string]any{"name": "x", "authType": "none", "password": "p"}, "password", "takes no password"},
		{"none with a secret", map[string]any{"name": "x", "authType": "none", "secret": "s"}, "secret", "takes no secret"},
		{"basic without userName", map[string]any{"name": "x", "authType": "basic", "password": "p"}, "userName", "authType=basic needs userName"},
		{"basic without password", map[string]any{"name": "x", "authType": "basic", "userName": "u"}, "password", "authType=basic needs password"},
		{"basic with ':' in the user", map[string]any{"name": "x", "authType": "basic", "userName": "a:b", "password": "p"}, "userName", "must not contain ':'"},
		{"bearer without token", map[string]any{"name": "x", "authType": "bearer"}, "token", "authType=bearer needs token"},
		{"querystring without token", map[string]any{"name": "x", "authType": "querystring"}, "token", "needs token"},
		{"authheader without token", map[string]any{"name": "x", "authType": "authheader"}, "token", "needs token"},
		{"header without token", map[string]any{"name": "x", "authType": "header", "header": "X-T"}, "token", "needs token"},
		{"header without header", map[string]any{"name": "x", "authType": "header", "token": "t"}, "header", "needs header"},
		{"splunk without token", map[string]any{"name": "x", "authType": "splunk"}, "token", "needs token"},
		{"user credentials and a token (basic)", map[string]any{"name": "x", "authType": "basic", "userName": "u", "password": "p", "token": "t"}, "token", "takes no token"},
		{"user credentials and a token (bearer)", map[string]any{"name": "x", "authType": "bearer", "userName": "u", "password": "p", "token": "t"}, "userName", "takes no userName"},
		{"mist without secret", map[string]any{"name": "x", "authType": "mist"}, "secret", "authType=mist needs secret"},
		{"hmac without secret", map[string]any{"name": "x", "authType": "hmac", "hmacHeader": "X-S"}, "secret", "authType=hmac needs secret"},
		{"hmac without header", map[string]any{"name": "x", "authType": "hmac", "secret": "s"}, "hmacHeader", "needs hmacHeader"},
		{"hmac bad algorithm", map[string]any{"name": "x", "authType": "hmac", "secret": "s", "hmacHeader": "X-S", "hmacAlgorithm": "md5"}, "hmacAlgorithm", "want sha1, sha256 or sha512"},
		{"hmac bad encoding", map[string]any{"name": "x", "authType": "hmac", "secret": "s", "hmacHeader": "X-S", "hmacEncoding": "base32"}, "hmacEncoding", "want hex or base64"},
		{"jwt without issuer", map[string]any{"name": "x", "authType": "jwt", "jwksUrl": "https://idp.example.com/jwks", "audience": "a"}, "issuer", "needs issuer"},
		{"jwt bad url", map[string]any{"name": "x", "authType": "jwt", "jwksUrl": "idp/jwks", "issuer": "i", "audience": "a"}, "jwksUrl", "jwksUrl is invalid"},
		{"unknown authType", map[string]any{"name": "x", "authType": "oauth2"}, "authType", `authType="oauth2" is not supported`},
		{"missing authType", map[string]any{"name": "x"}, "authType", "authType is required"},
		{"bad name: capitals", map[string]any{"name": "Hooks", "authType": "none"}, "name", "is invalid"},
		{"bad name: empty", map[string]any{"authType": "none"}, "name", "is invalid"},
		{"bad name: leading dash", map[string]any{"name": "-x", "authType": "none"}, "name", "is invalid"},
		{"bad name: too long", map[string]any{"name": strings.Repeat("a", 64), "authType": "none"}, "name", "is invalid"},
		{"bad name: slash", map[string]any{"name": "a/b", "authType": "none"}, "name", "is invalid"},
		{"unknown field", map[string]any{"name": "x", "authType": "none", "endpoint": "https://x"}, "endpoint", `unknown field "endpoint"`},
		{"bad topic pattern", map[string]any{"name": "x", "authType": "none", "topics": []string{"device-[", "ok"}}, "topics", "topics[0]"},
		{"empty topic pattern", map[string]any{"name": "x", "authType": "none", "topics": []string{" "}}, "topics", "not a topic pattern"},
		{"the mask as a credential", map[string]any{"name": "x", "authType": "bearer", "token": receivers.Mask}, "token", "is the mask"},
		{"wrong JSON type", map[string]any{"name": "x", "authType": "none", "enabled": "yes"}, "enabled", "must be a JSON boolean"},
		{"not JSON", "{name:", "body", "not a JSON object"},
		{"two objects", `{"name":"x","authType":"none"} {}`, "body", "more than one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := r.api(t, "POST", "/api/v1/receivers", tt.body)
			if a.code != 400 || a.str("field") != tt.field || !strings.Contains(a.str("error"), tt.msg) {
				t.Fatalf("got %d %s; want 400 field %q error containing %q", a.code, a.raw, tt.field, tt.msg)
			}
		})
	}
	// Several problems: the first is field/error, all are in errors.
	a := r.api(t, "POST", "/api/v1/receivers", map[string]any{"name": "X", "authType": "basic"})
	if a.code != 400 || len(a.body["errors"].([]any)) != 3 {
		t.Fatalf("several problems: %d %s", a.code, a.raw)
	}
	if a := r.api(t, "GET", "/api/v1/receivers", nil); len(a.body["receivers"].([]any)) != 0 {
		t.Fatalf("a refused create stored something: %s", a.raw)
	}
}

func TestAdminAuth(t *testing.T) {
	r := newRig(t, rigOptions{})
	for _, tok := range []string{"", "wrong", adminToken + "x", "admin-token"} {
		a := r.apiAs(t, tok, "GET", "/api/v1/receivers", nil)
		if a.code != 401 || a.header.Get("WWW-Authenticate") == "" || a.str("error") == "" {
			t.Fatalf("token %q: %d %s", tok, a.code, a.raw)
		}
	}
	// Without a token nothing is created, not even the document is served.
	if a := r.apiAs(t, "", "POST", "/api/v1/receivers", map[string]any{"name": "x", "authType": "none"}); a.code != 401 {
		t.Fatalf("unauthenticated create: %d", a.code)
	}
	if a := r.apiAs(t, "", "GET", "/api/v1/openapi.json", nil); a.code != 401 {
		t.Fatalf("unauthenticated openapi: %d", a.code)
	}
	// Both rotation tokens work.
	for _, tok := range []string{adminToken, "admin-token-2"} {
		if a := r.apiAs(t, tok, "GET", "/api/v1/receivers", nil); a.code != 200 {
			t.Fatalf("token %q: %d", tok, a.code)
		}
	}
	if a := r.api(t, "GET", "/api/v1/openapi.json", nil); a.code != 200 || a.str("openapi") != "3.1.0" {
		t.Fatalf("openapi: %d", a.code)
	}
	if a := r.api(t, "GET", "/api/v1/nothing", nil); a.code != 404 || a.str("error") == "" {
		t.Fatalf("unknown path: %d %s", a.code, a.raw)
	}
	if a := r.api(t, "POST", "/api/v1/receivers/some-id", map[string]any{}); a.code != 405 || a.header.Get("Allow") == "" {
		t.Fatalf("method not allowed: %d %s", a.code, a.raw)
	}
	big := `{"name":"x","authType":"bearer","token":"` + strings.Repeat("t", receivers.DefaultMaxBodyBytes) + `"}`
	if a := r.api(t, "POST", "/api/v1/receivers", big); a.code != 413 {
		t.Fatalf("big body: %d %s", a.code, a.raw)
	}
}

func TestRateLimit(t *testing.T) {
	r := newRig(t, rigOptions{api: receivers.APIOptions{Rate: 0.001, Burst: 3}})
	for i := range 3 {
		if a := r.api(t, "GET", "/api/v1/receivers", nil); a.code != 200 {
			t.Fatalf("request %d: %d", i, a.code)
		}
	}
	a := r.api(t, "GET", "/api/v1/receivers", nil)
	if a.code != 429 || a.header.Get("Retry-After") == "" || a.header.Get("Retry-After") == "0" {
		t.Fatalf("over the rate: %d %v %s", a.code, a.header, a.raw)
	}
	// Wrong tokens count too: guessing is throttled.
	if a := r.apiAs(t, "guess", "GET", "/api/v1/receivers", nil); a.code != 429 {
		t.Fatalf("a guess over the rate: %d", a.code)
	}
}

func TestInternalError(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.closed = true
	if err := r.store.Close(); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"GET", "POST"} {
		a := r.api(t, m, "/api/v1/receivers", map[string]any{"name": "x", "authType": "none"})
		if a.code != 500 || strings.Contains(a.str("error"), "sql") || strings.Contains(a.str("error"), "closed") {
			t.Fatalf("%s: %d %s", m, a.code, a.raw)
		}
	}
	if !strings.Contains(r.logs.String(), "database is closed") {
		t.Errorf("the cause is not logged: %s", r.logs)
	}
}

// TestIngestion: a change takes effect for ingestion at once.
func TestIngestion(t *testing.T) {
	r := newRig(t, rigOptions{})
	a := r.api(t, "POST", "/api/v1/receivers", map[string]any{"name": "sec", "authType": "mist", "secret": "s1", "topics": []string{"device-*"}})
	id := a.str("id")
	body := event("device-events")
	if code := r.webhook(t, "sec", body, mistSigned("s1", body)); code != 200 {
		t.Fatalf("signed: %d", code)
	}
	if code := r.webhook(t, "sec", body, mistSigned("other", body)); code != 401 {
		t.Fatalf("wrong secret: %d", code)
	}
	if code := r.webhook(t, "sec", body, nil); code != 401 {
		t.Fatalf("unsigned: %d", code)
	}
	other := event("alarms")
	if code := r.webhook(t, "sec", other, mistSigned("s1", other)); code != 422 {
		t.Fatalf("topic outside the receiver's: %d", code)
	}

	// Rotation without restart: both while rotating, then the old is refused at once.
	r.api(t, "PATCH", "/api/v1/receivers/"+id, map[string]any{"secret": "s1,s2"})
	for _, s := range []string{"s1", "s2"} {
		b := event("device-events")
		if code := r.webhook(t, "sec", b, mistSigned(s, b)); code != 200 {
			t.Fatalf("during rotation, %s: %d", s, code)
		}
	}
	r.api(t, "PATCH", "/api/v1/receivers/"+id, map[string]any{"secret": "s2"})
	body = event("device-events")
	if code := r.webhook(t, "sec", body, mistSigned("s1", body)); code != 401 {
		t.Fatalf("old secret after rotation: %d", code)
	}
	if code := r.webhook(t, "sec", body, mistSigned("s2", body)); code != 200 {
		t.Fatalf("new secret after rotation: %d", code)
	}

	// Disable: 404; enable: back.
	r.api(t, "PATCH", "/api/v1/receivers/"+id, map[string]any{"enabled": false})
	body = event("device-events")
	if code := r.webhook(t, "sec", body, mistSigned("s2", body)); code != 404 {
		t.Fatalf("disabled: %d", code)
	}
	if a := r.api(t, "GET", "/api/v1/receivers/"+id, nil); a.body["enabled"] != false {
		t.Fatalf("disabled shows %s", a.raw)
	}
	r.api(t, "PATCH", "/api/v1/receivers/"+id, map[string]any{"enabled": true})
	if code := r.webhook(t, "sec", body, mistSigned("s2", body)); code != 200 {
		t.Fatalf("enabled again: %d", code)
	}

	// Rename: the old path is gone at once.
	r.api(t, "PATCH", "/api/v1/receivers/"+id, map[string]any{"name": "sec2"})
	body = event("device-events")
	if code := r.webhook(t, "sec", body, mistSigned("s2", body)); code != 404 {
		t.Fatalf("old name: %d", code)
	}
	if code := r.webhook(t, "sec2", body, mistSigned("s2", body)); code != 200 {
		t.Fatalf("new name: %d", code)
	}

	// Delete: 404.
	r.api(t, "DELETE", "/api/v1/receivers/"+id, nil)
	if code := r.webhook(t, "sec2", body, mistSigned("s2", body)); code != 404 {
		t.Fatalf("deleted: %d", code)
	}

	// Each token scheme answers through the real server.
	for _, tc := range []struct {
		spec    map[string]any
		path    string
		headers map[string]string
	}{
		{map[string]any{"authType": "bearer", "token": "tk"}, "", bearer("tk")},
		{map[string]any{"authType": "header", "header": "X-Api-Token", "token": "tk"}, "", map[string]string{"X-Api-Token": "tk"}},
		{map[string]any{"authType": "authheader", "token": "tk"}, "", map[string]string{"Authorization": "tk"}},
		{map[string]any{"authType": "querystring", "queryParam": "key", "token": "tk"}, "?key=tk", nil},
		{map[string]any{"authType": "basic", "userName": "u", "password": "pw"}, "", map[string]string{"Authorization": "Basic dTpwdw=="}},
		{map[string]any{"authType": "hmac", "secret": "hs", "hmacHeader": "X-Hub-Signature-256", "hmacPrefix": "sha256="}, "", nil},
	} {
		name := "t-" + tc.spec["authType"].(string)
		tc.spec["name"] = name
		if a := r.api(t, "POST", "/api/v1/receivers", tc.spec); a.code != 201 {
			t.Fatalf("%s: %d %s", name, a.code, a.raw)
		}
		body := event("audits")
		h := tc.headers
		if h == nil && tc.spec["authType"] == "hmac" {
			h = map[string]string{"X-Hub-Signature-256": "sha256=" + loadgenSign("hs", body)}
		}
		if code := r.webhook(t, name+tc.path, body, h); code != 200 {
			t.Errorf("%s: %d", name, code)
		}
		if code := r.webhook(t, name, body, map[string]string{"Authorization": "Bearer nope", "X-Api-Token": "nope", "X-Hub-Signature-256": "sha256=00"}); code != 401 {
			t.Errorf("%s with wrong credentials: %d", name, code)
		}
	}
}

// TestRestart: receivers and credentials survive a restart; createdTime
// does not change. With and without encryption at rest.
func TestRestart(t *testing.T) {
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i)
	}
	for _, tc := range []struct {
		name string
		key  []byte
	}{{"clear", nil}, {"encrypted", key}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			r1 := newRig(t, rigOptions{dir: dir, key: tc.key})
			a := r1.api(t, "POST", "/api/v1/receivers", map[string]any{"name": "keep", "authType": "mist", "secret": "persisted-secret-value"})
			id, created := a.str("id"), a.body["createdTime"]
			r1.closed = true
			if err := r1.store.Close(); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(filepath.Join(dir, receivers.FileName))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("mode %v, want 0600", fi.Mode().Perm())
			}
			raw, err := os.ReadFile(filepath.Join(dir, receivers.FileName))
			if err != nil {
				t.Fatal(err)
			}
			wal, _ := os.ReadFile(filepath.Join(dir, receivers.FileName+"-wal"))
			inFile := strings.Contains(string(raw)+string(wal), "persisted-secret-value")
			if tc.key != nil && inFile {
				t.Error("the secret is in the file in clear despite the key")
			}
			if tc.key == nil && !inFile {
				t.Error("expected the secret in clear without a key (is the test reading the right file?)")
			}

			r2 := newRig(t, rigOptions{dir: dir, key: tc.key})
			a = r2.api(t, "GET", "/api/v1/receivers/"+id, nil)
			if a.code != 200 || a.body["createdTime"] != created || a.str("secret") != receivers.Mask {
				t.Fatalf("after restart: %d %s", a.code, a.raw)
			}
			body := event("audits")
			if code := r2.webhook(t, "keep", body, mistSigned("persisted-secret-value", body)); code != 200 {
				t.Fatalf("credential after restart: %d", code)
			}
			if code := r2.webhook(t, "keep", body, mistSigned("other", body)); code != 401 {
				t.Fatalf("wrong credential after restart: %d", code)
			}
			r2.closed = true
			if err := r2.store.Close(); err != nil {
				t.Fatal(err)
			}
			if tc.key != nil {
				if _, err := receivers.Open(context.Background(), filepath.Join(dir, receivers.FileName), receivers.StoreOptions{}); err == nil || !strings.Contains(err.Error(), "encrypted") {
					t.Fatalf("opening encrypted credentials without the key: %v", err)
				}
				other := make([]byte, 32)
				if _, err := receivers.Open(context.Background(), filepath.Join(dir, receivers.FileName), receivers.StoreOptions{Key: other}); err == nil {
					t.Fatal("opened with another key")
				}
			}
		})
	}
}

// TestConcurrentCreates: of many creates of one name, exactly one wins.
func TestConcurrentCreates(t *testing.T) {
	r := newRig(t, rigOptions{api: receivers.APIOptions{Rate: 1000, Burst: 1000}})
	const n = 16
	codes := make(chan int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			a := r.api(t, "POST", "/api/v1/receivers", map[string]any{"name": "same", "authType": "bearer", "token": fmt.Sprint("t", i)})
			codes <- a.code
		}()
	}
	close(start)
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	if count[201] != 1 || count[409] != n-1 {
		t.Fatalf("codes %v: want one 201 and %d 409", count, n-1)
	}
}

// TestUpdatesRaceIngestion: writes race webhooks; every webhook is
// answered as one of the sets in force allows, never 404 or 5xx.
func TestUpdatesRaceIngestion(t *testing.T) {
	r := newRig(t, rigOptions{api: receivers.APIOptions{Rate: 10000, Burst: 10000}})
	a := r.api(t, "POST", "/api/v1/receivers", map[string]any{"name": "busy", "authType": "bearer", "token": "ta,tb"})
	id := a.str("id")
	stop := make(chan struct{})
	var writers, senders sync.WaitGroup
	errs := make(chan string, 100)
	for w := range 2 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				tok := "ta,tb"
				if (i+w)%2 == 1 {
					tok = "tb,ta"
				}
				if a := r.api(t, "PATCH", "/api/v1/receivers/"+id, map[string]any{"token": tok, "topics": []string{fmt.Sprint("x", i), "*"}}); a.code != 200 {
					errs <- fmt.Sprintf("patch: %d %s", a.code, a.raw)
					return
				}
				// Other receivers come and go beside it.
				name := fmt.Sprintf("side-%d-%d", w, i)
				b := r.api(t, "POST", "/api/v1/receivers", map[string]any{"name": name, "authType": "none"})
				if b.code != 201 {
					errs <- fmt.Sprintf("create: %d %s", b.code, b.raw)
					return
				}
				r.api(t, "DELETE", "/api/v1/receivers/"+b.str("id"), nil)
			}
		}()
	}
	for range 4 {
		senders.Add(1)
		go func() {
			defer senders.Done()
			for range 40 {
				if code := r.webhook(t, "busy", event("audits"), bearer("ta")); code != 200 {
					errs <- fmt.Sprintf("webhook: %d", code)
					return
				}
			}
		}()
	}
	senders.Wait()
	close(stop)
	writers.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// TestNoCredentialInAnswersOrLogs runs writes of every credential and
// looks for the values in every answer and log line.
func TestNoCredentialInAnswersOrLogs(t *testing.T) {
	r := newRig(t, rigOptions{})
	creds := []string{"sekret-AAA", "passw0rd-BBB", "tok3n-CCC", "sekret-DDD", "tok3n-EEE"}
	var answers []string
	keep := func(a answer) { answers = append(answers, string(a.raw), fmt.Sprint(a.header)) }
	a := r.api(t, "POST", "/api/v1/receivers", map[string]any{"name": "m", "authType": "mist", "secret": creds[0]})
	keep(a)
	keep(r.api(t, "PATCH", "/api/v1/receivers/"+a.str("id"), map[string]any{"authType": "basic", "userName": "u", "password": creds[1]}))
	keep(r.api(t, "PUT", "/api/v1/receivers/"+a.str("id"), map[string]any{"name": "m", "authType": "bearer", "token": creds[2]}))
	keep(r.api(t, "POST", "/api/v1/receivers", map[string]any{"name": "h", "authType": "hmac", "secret": creds[3], "hmacHeader": "X-S"}))
	keep(r.api(t, "POST", "/api/v1/receivers", map[string]any{"name": "bad", "authType": "none", "token": creds[4]}))
	keep(r.api(t, "POST", "/api/v1/receivers", map[string]any{"name": "bad", "authType": "basic", "userName": "u:" + creds[4], "password": creds[4]}))
	keep(r.api(t, "GET", "/api/v1/receivers", nil))
	keep(r.api(t, "GET", "/api/v1/receivers/"+a.str("id"), nil))
	r.webhook(t, "m", event("audits"), bearer(creds[2]))
	r.webhook(t, "m", event("audits"), bearer(creds[4]))
	logs := r.logs.String()
	if !strings.Contains(logs, "receivers: created") {
		t.Fatalf("no write was logged: %s", logs)
	}
	for _, c := range creds {
		for _, s := range answers {
			if strings.Contains(s, c) {
				t.Errorf("credential %q in an answer: %s", c, s)
			}
		}
		if strings.Contains(logs, c) {
			t.Errorf("credential %q in the logs", c)
		}
	}
	list, err := r.store.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, rc := range list {
		for _, s := range []string{rc.String(), fmt.Sprintf("%v %+v %#v", rc, rc, rc)} {
			for _, c := range creds {
				if strings.Contains(s, c) {
					t.Errorf("credential in %q", s)
				}
			}
		}
	}
}

// TestOpenAPICoverage drives every operation to every documented status,
// so the document lists nothing the handler does not answer. (Each answer
// of every test is checked against the document as it happens: the
// handler answers nothing the document does not list.)
func TestOpenAPICoverage(t *testing.T) {
	r := newRig(t, rigOptions{})
	a := r.api(t, "POST", "/api/v1/receivers", map[string]any{"name": "cov", "authType": "none"})
	item := "/api/v1/receivers/" + a.str("id")
	r.api(t, "POST", "/api/v1/receivers", map[string]any{"name": "cov", "authType": "none"})
	r.api(t, "POST", "/api/v1/receivers", map[string]any{"name": "cov2"})
	big := `{"name":"x","token":"` + strings.Repeat("t", receivers.DefaultMaxBodyBytes) + `"}`
	r.api(t, "POST", "/api/v1/receivers", big)
	r.api(t, "GET", "/api/v1/receivers", nil)
	r.api(t, "GET", "/api/v1/openapi.json", nil)
	two := r.api(t, "POST", "/api/v1/receivers", map[string]any{"name": "cov3", "authType": "none"})
	for _, m := range []string{"PUT", "PATCH"} {
		r.api(t, m, item, map[string]any{"name": "cov", "authType": "none"})
		r.api(t, m, item, map[string]any{"name": "cov", "authType": "zzz"})
		r.api(t, m, item, map[string]any{"name": "cov3", "authType": "none"})
		r.api(t, m, item, big)
		r.api(t, m, "/api/v1/receivers/none", map[string]any{"name": "cov", "authType": "none"})
	}
	r.api(t, "GET", item, nil)
	r.api(t, "GET", "/api/v1/receivers/none", nil)
	r.api(t, "DELETE", "/api/v1/receivers/"+two.str("id"), nil)
	r.api(t, "DELETE", "/api/v1/receivers/none", nil)
	ops := []struct{ m, p string }{{"GET", "/api/v1/receivers"}, {"POST", "/api/v1/receivers"}, {"GET", item}, {"PUT", item}, {"PATCH", item}, {"DELETE", item}, {"GET", "/api/v1/openapi.json"}}
	for _, op := range ops {
		r.apiAs(t, "", op.m, op.p, map[string]any{})
	}
	limited := newRig(t, rigOptions{api: receivers.APIOptions{Rate: 0.0001, Burst: 1}})
	for _, op := range ops {
		limited.api(t, op.m, op.p, map[string]any{})
		limited.api(t, op.m, op.p, map[string]any{})
	}
	r.closed = true
	if err := r.store.Close(); err != nil {
		t.Fatal(err)
	}
	for _, op := range ops[:6] {
		r.api(t, op.m, op.p, map[string]any{"name": "cov9", "authType": "none"})
	}

	seenMu.Lock()
	defer seenMu.Unlock()
	var missing []string
	for _, d := range r.doc.documented() {
		d = strings.Replace(d, "/{id}", "/{id}", 1)
		if !seen[d] {
			missing = append(missing, d)
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("documented but never answered:\n  %s", strings.Join(missing, "\n  "))
	}
}

func TestStoreFileMode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, receivers.FileName)
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := receivers.Open(context.Background(), path, receivers.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestParseKey(t *testing.T) {
	if _, err := receivers.ParseKey("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "short", "AAECAwQFBgcICQoLDA0ODw==", "not base64 at all!!"} {
		k, err := receivers.ParseKey(bad)
		if err == nil {
			t.Errorf("ParseKey(%q) = %x", bad, k)
		} else if bad != "" && strings.Contains(err.Error(), bad) {
			t.Errorf("the error quotes the key: %v", err)
		}
	}
}

// TestReservedAtStart: a stored receiver that now has the environment
// receiver's name is left out; the bridge starts and serves the others.
func TestReservedAtStart(t *testing.T) {
	dir := t.TempDir()
	s, err := receivers.Open(context.Background(), filepath.Join(dir, receivers.FileName), receivers.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"mist", "other"} {
		if _, err := s.Create(context.Background(), receivers.Receiver{Name: name, Enabled: true, AuthType: "bearer", Token: "tk"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, rigOptions{dir: dir})
	if code := r.webhook(t, "other", event("audits"), bearer("tk")); code != 200 {
		t.Fatalf("other: %d", code)
	}
	// /webhooks/mist is still the environment's receiver.
	if code := r.webhook(t, "mist", event("audits"), bearer("tk")); code != 401 {
		t.Fatalf("mist with the stored token: %d", code)
	}
	if !strings.Contains(r.logs.String(), "not served") {
		t.Errorf("no warning: %s", r.logs)
	}
}
