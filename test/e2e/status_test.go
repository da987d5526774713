//go:build e2e

package e2e

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// statusAdmin is the admin token of the status page's bridge.
const statusAdmin = "e2e-status-admin-2c81"

// maxScreenshot bounds the screenshot kept in docs/.
const maxScreenshot = 400 << 10

// TestStatusPage: after a known load, the status page at / of a real
// bridge, opened in headless Chromium through its login form, shows the
// expected figures, is valid HTML (W3C Nu checker), applies its style sheet
// under its Content-Security-Policy without any console error, reloads
// itself, and is kept as a screenshot: in the run's directory, and as
// docs/status-page.png when E2E_UPDATE_DOCS=1.
//
// browser.sh installs Chromium and the checker (run.sh runs it; this test
// runs it again, which costs nothing once they are there).
func TestStatusPage(t *testing.T) {
	requireSetup(t)
	browserSh := filepath.Join(suite.root, "test", "e2e", "browser.sh")
	if out, err := exec.Command("bash", browserSh, "install").CombinedOutput(); err != nil {
		t.Fatalf("browser.sh install: %v\n%s", err, out)
	}
	out, err := exec.Command("bash", browserSh, "chromium").Output()
	if err != nil {
		t.Fatalf("browser.sh chromium: %v", err)
	}
	chromium := strings.TrimSpace(string(out))

	b := newBridge(t, "status-page")
	b.env = append(b.env,
		"MISTBRIDGE_ADMIN_TOKEN="+statusAdmin,
		"MISTBRIDGE_TOPICS=device-events,alarms,client-join",
	)
	b.start(t)
	base := "http://" + b.addr
	if code, _ := b.get(t, "/status.json", true); code != http.StatusOK {
		t.Fatalf("GET /status.json with the admin token: %d, want 200: the bridge serves no status page", code)
	}
	natsBefore, err := streamLastSeq()
	if err != nil {
		t.Fatal(err)
	}

	// The known load, over a few seconds so the chart has a shape: three
	// topics, two wrong signatures and one topic the receiver does not take.
	org := uuidish()
	syn := map[string]*synth{}
	for _, topic := range []string{"device-events", "alarms", "client-join"} {
		syn[topic] = &synth{topic: topic, org: org, sites: []string{uuidish(), uuidish(), uuidish()}}
	}
	type step struct {
		topic  string
		events int
		badSig bool
		want   int
	}
	var steps []step
	for round := range 12 {
		steps = append(steps, step{"device-events", 5, false, 200})
		if round%2 == 1 {
			steps = append(steps, step{"alarms", 3, false, 200})
		}
		if round%3 == 2 {
			steps = append(steps, step{"client-join", 2, false, 200})
		}
		switch round {
		case 4, 9:
			steps = append(steps, step{"device-events", 4, true, 401})
		case 7:
			steps = append(steps, step{"rogue", 1, false, 422})
		}
	}
	steps = append(steps, step{"alarms", 3, false, 200}) // the last request
	want := map[string]int{}
	accepted, requests := 0, 0
	rogue := &synth{topic: "rogue", org: org, sites: []string{uuidish()}}
	tick := time.NewTicker(250 * time.Millisecond)
	for _, s := range steps {
		<-tick.C
		sy := syn[s.topic]
		if sy == nil {
			sy = rogue
		}
		body, _ := sy.batch(s.events)
		var r postResult
		if s.badSig {
			r = b.post(body, map[string]string{"X-Mist-Signature-v2": signV2(badSecret, body)})
		} else {
			r = b.postSigned(body)
		}
		if r.status != s.want {
			t.Fatalf("%s ×%d: %s, want %d", s.topic, s.events, r, s.want)
		}
		requests++
		if s.want == http.StatusOK {
			want[s.topic] += s.events
			accepted += s.events
		}
	}
	tick.Stop()
	if want["device-events"] != 60 || want["alarms"] != 21 || want["client-join"] != 8 || accepted != 89 || requests != 26 {
		t.Fatalf("the load is not the one the figures below expect: %v, %d accepted, %d requests", want, accepted, requests)
	}
	// The newest device event, as JetStream stored it: the page's first
	// row must be it.
	stored, err := readNATS("mist.device-events.>", natsBefore)
	if err != nil || len(stored) != 60 {
		t.Fatalf("JetStream holds %d device events of this run (want 60): %v", len(stored), err)
	}
	newest := stored[len(stored)-1]
	newestID := natsHeader(newest.Header, "ce-id")
	newestSeq, _ := seqOf(newest.Data)

	// The figures come from samples taken once a second: wait for the one
	// that holds the whole load.
	var snap struct {
		Accepted struct{ Total int } `json:"accepted"`
		Sinks    []struct {
			Name  string `json:"name"`
			Total int    `json:"total"`
		} `json:"sinks"`
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, body := b.get(t, "/status.json", true)
		snap.Sinks = nil
		_ = json.Unmarshal(body, &snap)
		done := snap.Accepted.Total == accepted && len(snap.Sinks) == 2
		for _, s := range snap.Sinks {
			done = done && s.Total == accepted
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/status.json never showed %d events accepted and acknowledged by both sinks: %s", accepted, truncate(string(body), 400))
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The HTML the bridge serves, checked by the W3C Nu checker: the page,
	// the page of another topic, the login form.
	var files []string
	for i, p := range []struct {
		path  string
		token bool
		code  int
	}{{"/", true, 200}, {"/?topic=alarms", true, 200}, {"/", false, 401}} {
		code, body := b.get(t, p.path, p.token)
		if code != p.code {
			t.Fatalf("GET %s: %d, want %d", p.path, code, p.code)
		}
		f := filepath.Join(suite.tmp, fmt.Sprintf("status-page-%d.html", i))
		if err := os.WriteFile(f, body, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if out, err := exec.Command("bash", append([]string{browserSh, "validate"}, files...)...).CombinedOutput(); err != nil {
		t.Fatalf("the Nu checker finds errors in the status page (%v):\n%s", err, out)
	}

	// The browser. Its listener keeps every error the page causes.
	var (
		mu       sync.Mutex
		problems []string
	)
	listen := func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *cdplog.EventEntryAdded:
			// The login page answers 401: that is the only error allowed.
			if (ev.Entry.Level == cdplog.EntryLevelError || ev.Entry.Level == cdplog.EntryLevelWarning) && !strings.Contains(ev.Entry.Text, "401") {
				problems = append(problems, fmt.Sprintf("%s %s: %s (%s)", ev.Entry.Level, ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
			}
		case *runtime.EventExceptionThrown:
			problems = append(problems, "exception: "+ev.ExceptionDetails.Text)
		case *runtime.EventConsoleAPICalled:
			problems = append(problems, "console."+string(ev.Type))
		}
	}
	// One deadline for the browser's whole life: it ends with the context.
	bctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	actx, cancelAlloc := chromedp.NewExecAllocator(bctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // root in CI; the only page is ours
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(t.TempDir()),
	)...)
	defer cancelAlloc()
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithListener(listen))
	defer cancelCtx()
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("browser: %s: %v", what, err)
		}
	}
	if _, err := chromedp.Call(ctx, cdplog.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("browser: enable the log: %v", err)
	}
	// Signing in through the form: a browser cannot send a bearer token.
	do("open the page, signed out", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#token")))
	do("type the token", chromedp.SendKeys(chromedp.CSS("#token"), statusAdmin))
	if resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`button[type="submit"]`))); err != nil || resp.Status != http.StatusOK {
		t.Fatalf("browser: sign in: %v (answer %v)", err, resp)
	}
	do("choose device-events", chromedp.Navigate(base+"/?topic=device-events"), chromedp.WaitVisible(chromedp.CSS("#latest")))

	texts := []struct{ what, sel, want string }{
		{"events accepted", "#accepted-total", strconv.Itoa(accepted)},
		{"webhook requests", "#requests-total", strconv.Itoa(requests)},
		{"spooled", "#spool-events", "0"},
		{"sinks delivering", "#sinks-ok", "2/2"},
		{"device-events total", `#topics tr[data-name="device-events"] td.total`, "60"},
		{"alarms total", `#topics tr[data-name="alarms"] td.total`, "21"},
		{"client-join total", `#topics tr[data-name="client-join"] td.total`, "8"},
		{"nats acknowledged", `#sinks tr[data-name="nats"] td.total`, strconv.Itoa(accepted)},
		{"kafka acknowledged", `#sinks tr[data-name="kafka"] td.total`, strconv.Itoa(accepted)},
		{"nats state", `#sinks tr[data-name="nats"] td.state`, "ok"},
		{"kafka state", `#sinks tr[data-name="kafka"] td.state`, "ok"},
		{"kafka spooled", `#sinks tr[data-name="kafka"] td.spool-events`, "0"},
		{"wrong signatures", `#errors tr[data-reason="401 signature_mismatch"] td.total`, "2"},
		{"topic refused", `#errors tr[data-reason="422 topic_not_allowed"] td.total`, "1"},
		{"mist requests", `#receivers tr[data-name="mist"] td.requests`, strconv.Itoa(requests)},
		{"mist events", `#receivers tr[data-name="mist"] td.events`, strconv.Itoa(accepted)},
		{"mist errors", `#receivers tr[data-name="mist"] td.errors`, "3"},
		{"mist last topic", `#receivers tr[data-name="mist"] td.last-topic`, "alarms"},
		{"mist last events", `#receivers tr[data-name="mist"] td.last-events`, "3"},
		{"mist last answer", `#receivers tr[data-name="mist"] td.last-answer`, "200"},
		{"latest topic", "#latest-topic", "device-events"},
		{"newest event's id", "#latest tbody:first-of-type code.id", newestID},
		{"newest event's type", "#latest tbody:first-of-type code.type", "com.juniper.mist.device-events"},
		{"newest event's subject", "#latest tbody:first-of-type code.subject", newest.Subject},
	}
	for _, c := range texts {
		got, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(c.sel)))
		if err != nil {
			t.Fatalf("browser: %s (%s): %v", c.what, c.sel, err)
		}
		if strings.TrimSpace(got) != c.want {
			t.Errorf("%s (%s): %q, want %q", c.what, c.sel, strings.TrimSpace(got), c.want)
		}
	}
	eval := func(what, expr string, out any) {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[json.RawMessage](expr))
		if err == nil {
			err = json.Unmarshal(v, out)
		}
		if err != nil {
			t.Fatalf("browser: %s: %v", what, err)
		}
	}
	var (
		rows, polylines int
		data, headerBG  string
		undrawn         []string
	)
	eval("count the latest events", `document.querySelectorAll("#latest tbody").length`, &rows) // a tbody per event
	eval("count the lines", `document.querySelectorAll("svg polyline").length`, &polylines)
	eval("read the newest data", `document.querySelector("#latest tbody:first-of-type code.data").textContent`, &data)
	// The inline style sheet applied: the CSP allows it by its hash.
	eval("read the header's colour", `getComputedStyle(document.querySelector("header")).backgroundColor`, &headerBG)
	// Every figure checked above is drawn: it has a size on the page.
	eval("measure the figures", `[...document.querySelectorAll("#overview b, td.total, td.state, td.last-topic, #latest code.id")]
		.filter(e => { const r = e.getBoundingClientRect(); return r.width === 0 || r.height === 0 })
		.map(e => e.id || e.className)`, &undrawn)
	if rows != 10 {
		t.Errorf("%d latest events shown, want 10", rows)
	}
	if polylines != 3+3 {
		t.Errorf("%d lines drawn, want 6 (accepted and 2 sinks in the chart, a sparkline per topic)", polylines)
	}
	// The first 200 bytes of the newest event hold its device name.
	if !strings.Contains(data, fmt.Sprintf(`"device_name":"e2e-ap-%d"`, newestSeq)) {
		t.Errorf("the newest event's data %q is not that of seq %d", data, newestSeq)
	}
	if headerBG != "rgb(20, 33, 61)" {
		t.Errorf("the header's background is %q: the style sheet did not apply", headerBG)
	}
	if len(undrawn) > 0 {
		t.Errorf("figures not drawn: %v", undrawn)
	}

	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Fatalf("browser: screenshot: %v", err)
	}
	shot = compactScreenshot(t, shot)
	kept := filepath.Join(suite.tmp, "status-page.png")
	if err := os.WriteFile(kept, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d KiB)", kept, len(shot)>>10)
	if os.Getenv("E2E_UPDATE_DOCS") == "1" {
		doc := filepath.Join(suite.root, "docs", "status-page.png")
		if err := os.WriteFile(doc, shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot written to %s", doc)
	}

	// It reloads itself: one more batch shows up without a navigation.
	body, _ := syn["client-join"].batch(1)
	if r := b.postSigned(body); r.status != http.StatusOK {
		t.Fatalf("one more batch: %s", r)
	}
	deadline = time.Now().Add(20 * time.Second) // a reload every 5 s, a sample every second
	for {
		// Errors while the page reloads (no document, a context destroyed)
		// are expected: try again.
		got, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector("#accepted-total")||{}).textContent||""`))
		if got == strconv.Itoa(accepted+1) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the page did not reload itself: it shows %q events accepted, want %d", got, accepted+1)
		}
		time.Sleep(250 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Errorf("the browser reported:\n%s", strings.Join(problems, "\n"))
	}
}

// get GETs path from the bridge, with the admin token when token is set.
func (b *bridge) get(t *testing.T, path string, token bool) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+b.addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token {
		req.Header.Set("Authorization", "Bearer "+statusAdmin)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// compactScreenshot checks Chromium's screenshot (a PNG of the whole page,
// 1280 pixels wide, not blank) and returns it with at most 256 colours, the
// size to keep in the repository: a page of flat colours and text loses
// nothing to see by it.
func compactScreenshot(t *testing.T, shot []byte) []byte {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("the screenshot is no PNG: %v", err)
	}
	bd := img.Bounds()
	if bd.Dx() != 1280 || bd.Dy() < 900 {
		t.Errorf("screenshot %dx%d, want 1280 wide and the whole page", bd.Dx(), bd.Dy())
	}
	count := map[color.RGBA]int{}
	for y := bd.Min.Y; y < bd.Max.Y; y++ {
		for x := bd.Min.X; x < bd.Max.X; x++ {
			count[color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)]++
		}
	}
	if len(count) < 16 {
		t.Fatalf("the screenshot has %d colours: blank?", len(count))
	}
	byUse := slices.SortedFunc(maps.Keys(count), func(a, b color.RGBA) int {
		return cmp.Or(cmp.Compare(count[b], count[a]), cmp.Compare(a.R, b.R), cmp.Compare(a.G, b.G), cmp.Compare(a.B, b.B))
	})
	// The most used colours that differ from each other first, so a small
	// coloured mark (a sink's "ok", a legend) keeps its colour; then the
	// most used of the rest (the shades of text's edges).
	dist := func(a, b color.RGBA) int {
		dr, dg, db := int(a.R)-int(b.R), int(a.G)-int(b.G), int(a.B)-int(b.B)
		return dr*dr + dg*dg + db*db
	}
	var pal color.Palette
	in := map[color.RGBA]bool{}
	for _, c := range byUse {
		if len(pal) < 256 && !slices.ContainsFunc(pal, func(p color.Color) bool { return dist(c, p.(color.RGBA)) < 24*24 }) {
			pal, in[c] = append(pal, c), true
		}
	}
	for _, c := range byUse {
		if len(pal) < 256 && !in[c] {
			pal, in[c] = append(pal, c), true
		}
	}
	index := make(map[color.RGBA]uint8, len(count))
	for c := range count {
		index[c] = uint8(pal.Index(c))
	}
	out := image.NewPaletted(bd, pal)
	for y := bd.Min.Y; y < bd.Max.Y; y++ {
		for x := bd.Min.X; x < bd.Max.X; x++ {
			out.SetColorIndex(x, y, index[color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)])
		}
	}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(&buf, out); err != nil {
		t.Fatal(err)
	}
	if buf.Len() > maxScreenshot {
		t.Errorf("screenshot of %d KiB, want at most %d KiB", buf.Len()>>10, maxScreenshot>>10)
	}
	return buf.Bytes()
}
