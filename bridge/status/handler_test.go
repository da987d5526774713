package status

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/mistbridge/mistbridge/codec"
)

func serve(h http.Handler, method, target string, headers map[string]string, form string) *httptest.ResponseRecorder {
	var body io.Reader
	if form != "" {
		body = strings.NewReader(form)
	}
	req := httptest.NewRequest(method, target, body)
	if form != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

const (
	tokA = "admin-token-a-7f3e"
	tokB = "admin-token-b-91c0"
)

func TestHandlerAuth(t *testing.T) {
	r := New(Options{})
	open := NewHandler(r, HandlerOptions{})
	locked := NewHandler(r, HandlerOptions{Tokens: []string{tokA, " " + tokB + " ", ""}})
	tests := []struct {
		name     string
		h        *Handler
		method   string
		target   string
		headers  map[string]string
		form     string
		code     int
		wantBody string
	}{
		{"open page", open, "GET", "/", nil, "", 200, "<h1>mistbridge status</h1>"},
		{"open json", open, "GET", "/status.json", nil, "", 200, `"window_seconds":300`},
		{"open head", open, "HEAD", "/", nil, "", 200, ""},
		{"no credentials: the login form", locked, "GET", "/", nil, "", 401, `<form method="post" action="/status/login">`},
		{"no credentials: json", locked, "GET", "/status.json", nil, "", 401, `"reason":"unauthorized"`},
		{"wrong bearer", locked, "GET", "/", map[string]string{"Authorization": "Bearer nope"}, "", 401, "Admin token"},
		{"a token's prefix", locked, "GET", "/", map[string]string{"Authorization": "Bearer " + tokA[:10]}, "", 401, ""},
		{"bearer a", locked, "GET", "/", map[string]string{"Authorization": "Bearer " + tokA}, "", 200, "Overview"},
		{"bearer b, rotated in", locked, "GET", "/status.json", map[string]string{"Authorization": "bearer " + tokB}, "", 200, `"topics"`},
		{"basic is not bearer", locked, "GET", "/", map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("x:"+tokA))}, "", 401, ""},
		{"bad cookie", locked, "GET", "/", map[string]string{"Cookie": CookieName + "=v1.99999999999.AAAA"}, "", 401, ""},
		{"login with a wrong token", locked, "POST", "/status/login", nil, "token=nope", 401, "That is not an admin token."},
		{"login", locked, "POST", "/status/login", nil, "token=" + url.QueryEscape(tokA), 303, ""},
		{"login needs POST", locked, "GET", "/status/login", nil, "", 405, ""},
		{"page needs GET", locked, "POST", "/", nil, "", 405, ""},
		{"unknown path", locked, "GET", "/status/other", nil, "", 404, ""},
		{"logout", locked, "POST", "/status/logout", nil, "", 303, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := serve(tc.h, tc.method, tc.target, tc.headers, tc.form)
			body := rec.Body.String()
			if rec.Code != tc.code || !strings.Contains(body, tc.wantBody) {
				t.Fatalf("%s %s: %d, want %d with %q\n%s", tc.method, tc.target, rec.Code, tc.code, tc.wantBody, truncate(body, 600))
			}
			for _, tok := range []string{tokA, tokB} {
				if strings.Contains(body, tok) || strings.Contains(fmt.Sprint(rec.Header()), tok) {
					t.Errorf("the answer shows a token")
				}
			}
		})
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func TestLoginSession(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	h := NewHandler(New(Options{}), HandlerOptions{Tokens: []string{tokA, tokB}, SessionTTL: time.Hour})
	h.now = func() time.Time { return now }

	rec := serve(h, "POST", "/status/login", map[string]string{"X-Forwarded-Proto": "https"}, "token="+tokB)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/" {
		t.Fatalf("login: %d to %q", rec.Code, rec.Header().Get("Location"))
	}
	cs := rec.Result().Cookies()
	if len(cs) != 1 {
		t.Fatalf("cookies %v", cs)
	}
	c := cs[0]
	if c.Name != CookieName || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.MaxAge != 3600 {
		t.Errorf("cookie %+v: want HttpOnly, Secure, SameSite=Strict, Path=/, an hour", c)
	}
	if strings.Contains(c.Value, tokB) {
		t.Fatal("the cookie holds the token")
	}
	get := func(h *Handler, value string) int {
		return serve(h, "GET", "/", map[string]string{"Cookie": CookieName + "=" + value}, "").Code
	}
	if code := get(h, c.Value); code != 200 {
		t.Fatalf("page with the session: %d", code)
	}
	if !strings.Contains(serve(h, "GET", "/", map[string]string{"Cookie": CookieName + "=" + c.Value}, "").Body.String(), "Sign out") {
		t.Error("a page seen with a session offers no sign-out")
	}
	tampered := []byte(c.Value)
	tampered[len(tampered)-2] ^= 1
	later := strings.Replace(c.Value, fmt.Sprint(now.Add(time.Hour).Unix()), fmt.Sprint(now.Add(2*time.Hour).Unix()), 1)
	tests := []struct {
		name  string
		h     *Handler
		value string
		at    time.Time
		code  int
	}{
		{"within its hour", h, c.Value, now.Add(59 * time.Minute), 200},
		{"expired", h, c.Value, now.Add(time.Hour), 401},
		{"tampered MAC", h, string(tampered), now, 401},
		{"extended expiry", h, later, now, 401},
		{"its token rotated out", NewHandler(New(Options{}), HandlerOptions{Tokens: []string{tokA}, SessionTTL: time.Hour}), c.Value, now, 401},
		{"another token's bridge", NewHandler(New(Options{}), HandlerOptions{Tokens: []string{"other"}, SessionTTL: time.Hour}), c.Value, now, 401},
		{"the token kept, another added", NewHandler(New(Options{}), HandlerOptions{Tokens: []string{"new", tokB}, SessionTTL: time.Hour}), c.Value, now, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.h.now = func() time.Time { return tc.at }
			if code := get(tc.h, tc.value); code != tc.code {
				t.Errorf("%d, want %d", code, tc.code)
			}
		})
	}
	out := serve(h, "POST", "/status/logout", nil, "")
	if cs := out.Result().Cookies(); len(cs) != 1 || cs[0].MaxAge >= 0 || cs[0].Value != "" {
		t.Errorf("logout cookies %+v: want the session cleared", cs)
	}
}

// FuzzSession: no value but the ones the handler made passes as a
// session.
func FuzzSession(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	k := newKeys([]string{tokA, tokB})
	valid := map[string]bool{k.session(0, now.Add(time.Hour)): true, k.session(1, now.Add(time.Minute)): true}
	for v := range valid {
		f.Add(v)
		f.Add(strings.ToUpper(v))
		f.Add(v + "=")
	}
	f.Add("v1.1800003600.")
	f.Add("v1.01800003600." + strings.Repeat("A", 43))
	f.Add("")
	f.Fuzz(func(t *testing.T, v string) {
		if k.validSession(v, now, time.Hour) && !valid[v] {
			t.Fatalf("%q passes as a session", v)
		}
	})
}

// pageLoad is a known load: three topics, two sinks (one spooling), errors
// of three kinds, one receiver.
func pageLoad(t *testing.T, o Options) *Recorder {
	t.Helper()
	m := newBridgeMetrics(t)
	o.Gatherer = m.reg
	r := New(o)
	r.now = func() time.Time { return sec(4) }
	r.Sample(sec(0))
	for _, l := range []struct {
		topic string
		n     int
	}{{"device-events", 30}, {"alarms", 12}, {"client-join", 6}} {
		topic, n := l.topic, l.n
		m.accepted.WithLabelValues("mist", topic).Add(float64(n))
		m.published.WithLabelValues("nats").Add(float64(n))
		var evs []*codec.Event
		for i := range n {
			e := codec.Map(topic, fmt.Appendf(nil, `{"org_id":"o-1","site_id":"site-%d","timestamp":1800000000,"text":"<b>%s %d</b>"}`, i%3, topic, i))
			evs = append(evs, &e)
		}
		r.Events(evs)
		r.Request("mist", topic, n, 200, "", sec(2))
	}
	m.requests.WithLabelValues("mist", "200").Add(3)
	m.requests.WithLabelValues("mist", "401").Add(2)
	r.Request("mist", "", 0, 401, "signature_mismatch", sec(1))
	r.Request("mist", "", 0, 401, "signature_mismatch", sec(1))
	m.spool.WithLabelValues("kafka").Set(48)
	m.spoolB.WithLabelValues("kafka").Set(9216)
	m.spoolAge.WithLabelValues("kafka").Set(3.2)
	m.failed.WithLabelValues("kafka").Add(48)
	r.Sample(sec(1))
	r.Sample(sec(3))
	return r
}

func TestPage(t *testing.T) {
	states := func(context.Context) map[string]string {
		return map[string]string{"nats": "ok", "kafka": "not delivering"}
	}
	h := NewHandler(pageLoad(t, Options{SubjectPrefix: "mist"}), HandlerOptions{Tokens: []string{tokA}, SinkStates: states})
	rec := serve(h, "GET", "/?topic=alarms", map[string]string{"Authorization": "Bearer " + tokA}, "")
	if rec.Code != 200 {
		t.Fatalf("%d\n%s", rec.Code, rec.Body)
	}
	page := rec.Body.String()
	checkPage(t, page, rec.Header())
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ where, got, want string }{
		{"accepted total", byID(doc, "accepted-total"), "48"},
		{"requests", byID(doc, "requests-total"), "5"},
		{"errors recent", byID(doc, "errors-recent"), "50"},
		{"spooled", byID(doc, "spool-events"), "48"},
		{"sinks ok", byID(doc, "sinks-ok"), "1/2"},
		{"device-events total", cell(doc, "topics", "device-events", "total"), "30"},
		{"alarms total", cell(doc, "topics", "alarms", "total"), "12"},
		{"client-join total", cell(doc, "topics", "client-join", "total"), "6"},
		{"device-events /s", cell(doc, "topics", "device-events", "rate10"), "3"},
		{"nats total", cell(doc, "sinks", "nats", "total"), "48"},
		{"nats state", cell(doc, "sinks", "nats", "state"), "ok"},
		{"kafka state", cell(doc, "sinks", "kafka", "state"), "not delivering"},
		{"kafka spooled", cell(doc, "sinks", "kafka", "spool-events"), "48"},
		{"kafka spool bytes", cell(doc, "sinks", "kafka", "spool-bytes"), "9.0 KiB"},
		{"kafka spool age", cell(doc, "sinks", "kafka", "spool-age"), "3 s"},
		{"mist requests", cell(doc, "receivers", "mist", "requests"), "5"},
		{"mist errors", cell(doc, "receivers", "mist", "errors"), "2"},
		{"mist last topic", cell(doc, "receivers", "mist", "last-topic"), "client-join"},
		{"latest topic", byID(doc, "latest-topic"), "alarms"},
	}
	for _, w := range want {
		if w.got != w.want {
			t.Errorf("%s: %q, want %q", w.where, w.got, w.want)
		}
	}
	// The errors table, by its rows' reasons.
	errs := map[string]string{}
	for _, tr := range all(section(doc, "errors"), func(n *html.Node) bool { return n.Data == "tr" && attr(n, "data-reason") != "" }) {
		errs[attr(tr, "data-reason")] = text(first(tr, hasClass("total")))
	}
	if want := map[string]string{"401 signature_mismatch": "2", "failed": "48"}; !mapsEqual(errs, want) {
		t.Errorf("error rows %v, want %v", errs, want)
	}
	// The latest events of the topic asked for, newest first, escaped.
	rows := all(section(doc, "latest"), func(n *html.Node) bool { return n.Data == "tbody" }) // one per event
	if len(rows) != DefaultLatest {
		t.Fatalf("%d latest rows, want %d", len(rows), DefaultLatest)
	}
	if got := text(first(rows[0], hasClass("data"))); !strings.Contains(got, "<b>alarms 11</b>") {
		t.Errorf("newest data %q, want the text of alarms 11", got)
	}
	if strings.Contains(page, "<b>alarms") {
		t.Error("event data reached the page unescaped")
	}
	if got := text(first(rows[0], hasClass("subject"))); !strings.HasPrefix(got, "mist.alarms.o-1.") {
		t.Errorf("subject %q", got)
	}
	if n := len(all(doc, func(n *html.Node) bool { return n.Data == "polyline" })); n != 1+2+3 {
		t.Errorf("%d polylines, want 6: accepted and each sink in the chart, a sparkline per topic", n)
	}

	// The JSON has the same figures.
	var s Snapshot
	jr := serve(h, "GET", "/status.json?topic=alarms", map[string]string{"Authorization": "Bearer " + tokA}, "")
	if err := json.Unmarshal(jr.Body.Bytes(), &s); err != nil {
		t.Fatal(err)
	}
	if s.Accepted.Total != 48 || len(s.Topics) != 3 || s.Latest.Topic != "alarms" || len(s.Latest.Events) != 10 ||
		s.Latest.Events[0].Data == "" || sinkNamed(t, s.Sinks, "kafka").State != "not delivering" {
		t.Errorf("json: %+v", s)
	}
}

// An open page shows no event data.
func TestOpenPageHidesData(t *testing.T) {
	h := NewHandler(pageLoad(t, Options{}), HandlerOptions{Refresh: -1})
	rec := serve(h, "GET", "/", nil, "")
	page := rec.Body.String()
	checkPage(t, page, rec.Header())
	if strings.Contains(page, "<meta http-equiv=\"refresh\"") {
		t.Error("the page reloads itself with Refresh < 0")
	}
	if strings.Contains(page, "alarms 11") || strings.Contains(page, "client-join 5") || !strings.Contains(page, "MISTBRIDGE_ADMIN_TOKEN") {
		t.Error("an open page shows events' data, or does not say why it hides it")
	}
	var s Snapshot
	if err := json.Unmarshal(serve(h, "GET", "/status.json", nil, "").Body.Bytes(), &s); err != nil {
		t.Fatal(err)
	}
	for _, e := range s.Latest.Events {
		if e.Data != "" {
			t.Fatalf("open json shows data %q", e.Data)
		}
	}
}

// An empty recorder (no sample yet, nothing received) renders too.
func TestEmptyPage(t *testing.T) {
	rec := serve(NewHandler(New(Options{}), HandlerOptions{}), "GET", "/", nil, "")
	checkPage(t, rec.Body.String(), rec.Header())
	for _, want := range []string{"No sample yet.", "No event accepted yet.", "No error since start."} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("no %q", want)
		}
	}
}

var (
	styleRE    = regexp.MustCompile(`(?s)<style>(.*?)</style>`)
	datetimeRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,3})?Z$`)
)

// checkPage holds a page to what the browser test's Nu validator also
// checks in part: balanced elements, unique ids, one style sheet allowed
// by the Content-Security-Policy, no script, nothing fetched from
// elsewhere.
func checkPage(t *testing.T, page string, hd http.Header) {
	t.Helper()
	if ct := hd.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if !strings.HasPrefix(page, "<!DOCTYPE html>\n<html lang=\"en\">") {
		t.Errorf("the page starts %q", truncate(page, 40))
	}
	m := styleRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no style sheet")
	}
	sum := sha256.Sum256([]byte(m[1]))
	if csp := hd.Get("Content-Security-Policy"); !strings.Contains(csp, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'") ||
		!strings.Contains(csp, "default-src 'none'") {
		t.Errorf("the CSP %q does not allow exactly the style sheet", csp)
	}
	for _, bad := range []string{"<script", "http://", "https://", "javascript:", " style=\""} {
		if strings.Contains(page, bad) {
			t.Errorf("the page holds %q", bad)
		}
	}
	voids := map[string]bool{"area": true, "base": true, "br": true, "col": true, "embed": true, "hr": true, "img": true, "input": true, "link": true, "meta": true, "source": true, "track": true, "wbr": true}
	z := html.NewTokenizer(strings.NewReader(page))
	var stack []string
	ids := map[string]bool{}
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			if z.Err() != io.EOF {
				t.Fatal(z.Err())
			}
			break
		}
		tok := z.Token()
		switch tt {
		case html.StartTagToken, html.SelfClosingTagToken:
			seen := map[string]bool{}
			for _, a := range tok.Attr {
				if seen[a.Key] {
					t.Errorf("<%s> has %s twice", tok.Data, a.Key)
				}
				seen[a.Key] = true
				if a.Key == "datetime" && !datetimeRE.MatchString(a.Val) {
					t.Errorf("datetime %q: HTML wants at most 3 digits of a second's fraction", a.Val)
				}
				if a.Key == "id" {
					if ids[a.Val] {
						t.Errorf("id %q twice", a.Val)
					}
					ids[a.Val] = true
				}
			}
			if tt == html.SelfClosingTagToken && !slices.Contains(stack, "svg") {
				t.Errorf("<%s/> outside SVG", tok.Data)
			}
			if tt == html.StartTagToken && !voids[tok.Data] {
				stack = append(stack, tok.Data)
			}
		case html.EndTagToken:
			if len(stack) == 0 || stack[len(stack)-1] != tok.Data {
				t.Fatalf("</%s> closes %v", tok.Data, stack)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) != 0 {
		t.Errorf("unclosed %v", stack)
	}
}

// ---------------------------------------------------------------- DOM helpers

func all(n *html.Node, pred func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	if n == nil {
		return nil
	}
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && pred(n) {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return out
}

func first(n *html.Node, pred func(*html.Node) bool) *html.Node {
	if l := all(n, pred); len(l) > 0 {
		return l[0]
	}
	return nil
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func hasClass(c string) func(*html.Node) bool {
	return func(n *html.Node) bool { return slices.Contains(strings.Fields(attr(n, "class")), c) }
}

func text(n *html.Node) string {
	if n == nil {
		return "(missing)"
	}
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return strings.TrimSpace(b.String())
}

func byID(doc *html.Node, id string) string {
	return text(first(doc, func(n *html.Node) bool { return attr(n, "id") == id }))
}

func section(doc *html.Node, id string) *html.Node {
	return first(doc, func(n *html.Node) bool { return n.Data == "section" && attr(n, "id") == id })
}

// cell is the text of the cell of class cls in the row data-name=row of
// section id.
func cell(doc *html.Node, id, row, cls string) string {
	tr := first(section(doc, id), func(n *html.Node) bool { return n.Data == "tr" && attr(n, "data-name") == row })
	if tr == nil {
		return "(no row)"
	}
	return text(first(tr, hasClass(cls)))
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
