package receivers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/mistbridge/mistbridge/bridge"
	"github.com/mistbridge/mistbridge/bridge/auth"
	"github.com/mistbridge/mistbridge/bridge/receivers"
	"github.com/mistbridge/mistbridge/sinks"
	"github.com/mistbridge/mistbridge/sinks/natssink"
	"github.com/mistbridge/mistbridge/test/loadgen"
)

const (
	adminToken = "admin-token-1"
	envSecret  = "env-secret"
)

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func defaults[T any](t testing.TB, vars map[string]string) T {
	t.Helper()
	var c T
	if vars == nil {
		vars = map[string]string{}
	}
	if err := env.ParseWithOptions(&c, env.Options{Environment: vars}); err != nil {
		t.Fatal(err)
	}
	return c
}

// router starts an embedded nats-server with JetStream and a Router in
// front of it, shared by the bridges of one test (a restart keeps it).
func router(t testing.TB, log *slog.Logger) *bridge.Router {
	t.Helper()
	emb, err := natssink.StartEmbedded(t.TempDir(), "127.0.0.1:0", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	ns, err := natssink.New(context.Background(), defaults[natssink.Config](t, map[string]string{"URL": emb.ClientURL()}), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Close(context.Background()) })
	rt, err := bridge.NewRouter("", sinks.NewRetrying(ns, sinks.RetryPolicy{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}, nil, log))
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

type rig struct {
	url    string
	store  *receivers.Store
	srv    *bridge.Server
	live   *receivers.Live
	logs   *syncBuffer
	doc    *openapiDoc
	closed bool
}

type rigOptions struct {
	dir    string // data directory; default a new one
	router *bridge.Router
	key    []byte
	api    receivers.APIOptions // Tokens, Reserved, OnChange and Log are filled in
}

// newRig runs the real bridge server with the receivers API in front of
// real NATS, the way cmd/mistbridge wires them: the receiver from the
// environment ("mist", Mist's HMAC) plus the stored ones.
func newRig(t testing.TB, o rigOptions) *rig {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if o.dir == "" {
		o.dir = t.TempDir()
	}
	if o.router == nil {
		o.router = router(t, log)
	}
	store, err := receivers.Open(context.Background(), filepath.Join(o.dir, receivers.FileName), receivers.StoreOptions{Key: o.key})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{store: store, logs: logs, doc: loadOpenAPI(t)}
	t.Cleanup(func() {
		if !r.closed {
			_ = store.Close()
		}
	})
	mist, err := auth.NewMist([]string{envSecret})
	if err != nil {
		t.Fatal(err)
	}
	var srv *bridge.Server
	live := receivers.NewLive(store, func(list []*bridge.Receiver) error { return srv.SetReceivers(list) }, log, "mist")
	t.Cleanup(func() { _ = live.Close() })
	apiOpts := o.api
	if apiOpts.Rate == 0 {
		apiOpts.Rate, apiOpts.Burst = 10000, 10000 // TestRateLimit sets its own
	}
	if apiOpts.Tokens == nil {
		apiOpts.Tokens = []string{adminToken, "admin-token-2"}
	}
	apiOpts.Reserved = []string{"mist"}
	apiOpts.OnChange = live.Sync
	apiOpts.Log = log
	api := receivers.NewAPI(store, apiOpts)
	srv, err = bridge.New(defaults[bridge.Config](t, nil), bridge.Options{
		Router:    o.router,
		Receivers: []*bridge.Receiver{{Name: "mist", Verifier: mist}},
		API:       api,
		Log:       log,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := live.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	r.url, r.srv, r.live = hs.URL, srv, live
	return r
}

type answer struct {
	code   int
	header http.Header
	raw    []byte
	body   map[string]any
}

func (a answer) str(k string) string { s, _ := a.body[k].(string); return s }

// api calls the API with the admin token and checks the answer against
// the OpenAPI document: the status is documented for the operation and
// the body is valid against its schema.
func (r *rig) api(t testing.TB, method, path string, body any) answer {
	t.Helper()
	return r.apiAs(t, adminToken, method, path, body)
}

func (r *rig) apiAs(t testing.TB, token, method, path string, body any) answer {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, r.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{code: resp.StatusCode, header: resp.Header, raw: raw}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &a.body); err != nil {
			t.Fatalf("%s %s: answer %d is not a JSON object: %q", method, path, a.code, raw)
		}
	}
	r.doc.check(t, method, path, a)
	return a
}

// webhook posts body to /webhooks/<name> with headers and returns the
// status.
func (r *rig) webhook(t testing.TB, name string, body []byte, headers map[string]string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, r.url+"/webhooks/"+name, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

func mistSigned(secret string, body []byte) map[string]string {
	return map[string]string{"X-Mist-Signature-v2": loadgen.Sign(secret, body)}
}

var eventSeq struct {
	sync.Mutex
	n int
}

// event returns a one-event Mist body of topic, unique in the test binary.
func event(topic string) []byte {
	eventSeq.Lock()
	eventSeq.n++
	n := eventSeq.n
	eventSeq.Unlock()
	return loadgen.Body(topic, n, 1)
}

// openapiDoc is the embedded OpenAPI document with its schemas compiled,
// and the operations and statuses the tests have seen answered.
type openapiDoc struct {
	doc     map[string]any
	schemas *jsonschema.Compiler

	mu       sync.Mutex
	compiled map[string]*jsonschema.Schema
}

var (
	seenMu sync.Mutex
	seen   = map[string]bool{} // "METHOD /template STATUS"
)

func loadOpenAPI(t testing.TB) *openapiDoc {
	t.Helper()
	raw, err := jsonschema.UnmarshalJSON(bytes.NewReader(receivers.OpenAPI))
	if err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020) // OpenAPI 3.1's schema dialect
	if err := c.AddResource("mem://openapi.json", raw); err != nil {
		t.Fatal(err)
	}
	return &openapiDoc{doc: raw.(map[string]any), schemas: c, compiled: map[string]*jsonschema.Schema{}}
}

// template returns the documented path a request path matches.
func (d *openapiDoc) template(p string) (string, bool) {
	paths := d.doc["paths"].(map[string]any)
	if _, ok := paths[p]; ok {
		return p, true
	}
	if id, ok := strings.CutPrefix(p, "/api/v1/receivers/"); ok && id != "" && !strings.Contains(id, "/") {
		return "/api/v1/receivers/{id}", true
	}
	return "", false
}

func pointerEscape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// resolve follows a local $ref.
func (d *openapiDoc) resolve(v map[string]any) (map[string]any, string) {
	ref, ok := v["$ref"].(string)
	if !ok {
		return v, ""
	}
	cur := any(d.doc)
	for _, tok := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
		cur = cur.(map[string]any)[strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")]
	}
	return cur.(map[string]any), ref
}

// check fails t unless the answer's status is documented for the
// operation and its JSON body is valid against the documented schema.
func (d *openapiDoc) check(t testing.TB, method, p string, a answer) {
	t.Helper()
	tmpl, ok := d.template(strings.SplitN(p, "?", 2)[0])
	if !ok {
		return // not an API path of the document: the 404 of unknown paths
	}
	op, ok := d.doc["paths"].(map[string]any)[tmpl].(map[string]any)[strings.ToLower(method)].(map[string]any)
	if !ok {
		if a.code != http.StatusMethodNotAllowed && a.code != http.StatusUnauthorized && a.code != http.StatusTooManyRequests {
			t.Errorf("%s %s: undocumented method answered %d", method, tmpl, a.code)
		}
		return // OpenAPI has no place for a method a path does not have
	}
	seenMu.Lock()
	seen[fmt.Sprintf("%s %s %d", method, tmpl, a.code)] = true
	seenMu.Unlock()
	resp, ok := op["responses"].(map[string]any)[fmt.Sprint(a.code)].(map[string]any)
	if !ok {
		t.Errorf("%s %s answered %d, which the OpenAPI document does not list (%s)", method, tmpl, a.code, a.raw)
		return
	}
	resp, ref := d.resolve(resp)
	content, _ := resp["content"].(map[string]any)
	if content == nil {
		if len(a.raw) > 0 {
			t.Errorf("%s %s %d: documented without a body, answered %q", method, tmpl, a.code, a.raw)
		}
		return
	}
	headers, _ := resp["headers"].(map[string]any)
	for h := range headers {
		if a.header.Get(h) == "" {
			t.Errorf("%s %s %d: documented header %s missing", method, tmpl, a.code, h)
		}
	}
	loc := "mem://openapi.json#/paths/" + pointerEscape(tmpl) + "/" + strings.ToLower(method) + "/responses/" + fmt.Sprint(a.code) + "/content/application~1json/schema"
	if ref != "" {
		loc = "mem://openapi.json" + ref + "/content/application~1json/schema"
	}
	d.mu.Lock()
	sch, ok := d.compiled[loc]
	if !ok {
		var err error
		if sch, err = d.schemas.Compile(loc); err != nil {
			d.mu.Unlock()
			t.Fatalf("compile %s: %v", loc, err)
		}
		d.compiled[loc] = sch
	}
	d.mu.Unlock()
	if ct := a.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s %s %d: Content-Type %q", method, tmpl, a.code, ct)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(a.raw))
	if err != nil {
		t.Errorf("%s %s %d: body is not JSON: %v", method, tmpl, a.code, err)
		return
	}
	if err := sch.Validate(inst); err != nil {
		t.Errorf("%s %s %d: body %s does not match the documented schema: %v", method, tmpl, a.code, a.raw, err)
	}
}

// documented lists every "METHOD /template STATUS" of the document.
func (d *openapiDoc) documented() []string {
	var out []string
	for tmpl, item := range d.doc["paths"].(map[string]any) {
		for m, op := range item.(map[string]any) {
			opm, ok := op.(map[string]any)
			if !ok || m == "parameters" {
				continue
			}
			for code := range opm["responses"].(map[string]any) {
				out = append(out, fmt.Sprintf("%s %s %s", strings.ToUpper(m), tmpl, code))
			}
		}
	}
	return out
}
