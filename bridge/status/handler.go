package status

import (
	"bytes"
	"context"
	"encoding/json"
	"html/template"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
)

// The defaults of [HandlerOptions].
const (
	DefaultRefresh    = 5 * time.Second
	DefaultSessionTTL = 12 * time.Hour
)

// The paths a [Handler] serves.
const (
	PathPage   = "/"
	PathJSON   = "/status.json"
	PathLogin  = "/status/login"
	PathLogout = "/status/logout"
)

// maxTopicParam bounds the topic asked for with ?topic=.
const maxTopicParam = 256

// HandlerOptions tune a [Handler]. The zero value serves an open page that
// reloads every 5 seconds.
type HandlerOptions struct {
	// Tokens are the admin tokens (MISTBRIDGE_ADMIN_TOKEN; several for
	// rotation; blank ones are ignored). When there is one, every path
	// needs "Authorization: Bearer <token>" or a session cookie from the
	// login form, and events' data is shown. When there is none, the page
	// is open to whoever reaches the listener, and events' data is not
	// shown.
	Tokens []string
	// Refresh is how often the page reloads itself. The default is 5s; a
	// negative value turns reloading off.
	Refresh time.Duration
	// SessionTTL is how long a login lasts. The default is 12 hours.
	SessionTTL time.Duration
	// SinkStates, when set, tells each sink's state: "ok" or why it is not
	// delivering (what /readyz shows). It is called at most once a second
	// and given 2 seconds.
	SinkStates func(ctx context.Context) map[string]string
	// Log is the logger; the default discards.
	Log *slog.Logger
}

// Handler serves the status page ([PathPage], with ?topic= choosing the
// topic of the latest events), its figures as JSON ([PathJSON]), and the
// login and logout forms ([PathLogin], [PathLogout]); other paths are 404.
// Mount it on those four paths. It is safe for concurrent use.
type Handler struct {
	rec     *Recorder
	keys    keys
	refresh int // seconds
	ttl     time.Duration
	states  func(ctx context.Context) map[string]string
	log     *slog.Logger
	now     func() time.Time

	mu       sync.Mutex // guards the cached sink states
	statesAt time.Time
	cached   map[string]string
}

// NewHandler returns the Handler of rec's figures.
func NewHandler(rec *Recorder, o HandlerOptions) *Handler {
	h := &Handler{rec: rec, keys: newKeys(o.Tokens), ttl: o.SessionTTL, states: o.SinkStates, log: o.Log, now: time.Now}
	switch {
	case o.Refresh == 0:
		h.refresh = int(DefaultRefresh / time.Second)
	case o.Refresh > 0:
		h.refresh = max(1, int(o.Refresh/time.Second))
	}
	if h.ttl <= 0 {
		h.ttl = DefaultSessionTTL
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	return h
}

// ServeHTTP implements [http.Handler].
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case PathPage, PathJSON:
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.methodNotAllowed(w, "GET, HEAD")
			return
		}
		cookie, ok := h.authorized(r)
		if !ok {
			h.unauthorized(w, r)
			return
		}
		topic := r.URL.Query().Get("topic")
		if len(topic) > maxTopicParam {
			topic = topic[:maxTopicParam]
		}
		if r.URL.Path == PathJSON {
			h.serveJSON(w, r, topic)
			return
		}
		h.servePage(w, r, topic, cookie)
	case PathLogin:
		if r.Method != http.MethodPost {
			h.methodNotAllowed(w, "POST")
			return
		}
		h.login(w, r)
	case PathLogout:
		if r.Method != http.MethodPost {
			h.methodNotAllowed(w, "POST")
			return
		}
		http.SetCookie(w, h.cookie(r, "", -1))
		http.Redirect(w, r, PathPage, http.StatusSeeOther)
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found", "reason": "not_found"})
	}
}

// authorized reports whether r may see the page, and whether it came with
// a session cookie (which the page then offers to end).
func (h *Handler) authorized(r *http.Request) (cookie, ok bool) {
	if !h.keys.enabled() {
		return false, true
	}
	if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "Bearer ") {
		return false, h.keys.index(a[7:]) >= 0
	}
	if c, err := r.Cookie(CookieName); err == nil {
		return true, h.keys.validSession(c.Value, h.now(), h.ttl)
	}
	return false, false
}

func (h *Handler) unauthorized(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="mistbridge-status"`)
	if r.URL.Path == PathJSON {
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusUnauthorized, map[string]string{
			"error": "unauthorized: send Authorization: Bearer <admin token>", "reason": "unauthorized",
		})
		return
	}
	h.render(w, http.StatusUnauthorized, "login", h.loginView(false))
}

func (h *Handler) loginView(failed bool) loginView {
	return loginView{headView: h.head("mistbridge status: sign in", 0), Failed: failed, SessionTTL: fmtDuration(h.ttl)}
}

// maxLoginBody bounds the login form.
const maxLoginBody = 4 << 10

func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	if !h.keys.enabled() {
		http.Redirect(w, r, PathPage, http.StatusSeeOther)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginBody)
	i := -1
	if err := r.ParseForm(); err == nil {
		i = h.keys.index(r.PostForm.Get("token"))
	}
	if i < 0 {
		h.log.Debug("status page: a login with a wrong token", "remote", r.RemoteAddr)
		h.render(w, http.StatusUnauthorized, "login", h.loginView(true))
		return
	}
	http.SetCookie(w, h.cookie(r, h.keys.session(i, h.now().Add(h.ttl)), int(h.ttl/time.Second)))
	http.Redirect(w, r, PathPage, http.StatusSeeOther)
}

// cookie is the session cookie: sent back only to this host, never to
// scripts or from other sites, and only over HTTPS when the request came so
// (directly, or through a proxy that says so).
func (h *Handler) cookie(r *http.Request, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: CookieName, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https"),
	}
}

func (h *Handler) head(title string, refresh int) headView {
	return headView{Title: title, CSS: template.CSS(pageCSS), Refresh: refresh}
}

// snapshot is the recorder's snapshot with the sinks' states, and without
// events' data when the page is open.
func (h *Handler) snapshot(ctx context.Context, topic string) Snapshot {
	s := h.rec.Snapshot(topic)
	if st := h.sinkStates(ctx); st != nil {
		for i := range s.Sinks {
			s.Sinks[i].State = st[s.Sinks[i].Name]
		}
	}
	if !h.keys.enabled() {
		for i := range s.Latest.Events {
			s.Latest.Events[i].Data = ""
		}
	}
	return s
}

func (h *Handler) sinkStates(ctx context.Context) map[string]string {
	if h.states == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if now := h.now(); h.cached == nil || now.Sub(h.statesAt) >= time.Second || now.Before(h.statesAt) {
		// Not the request's context: a client that leaves must not make
		// every sink look unanswering for the next viewers.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		h.cached = h.states(sctx)
		cancel()
		h.statesAt = now
	}
	return h.cached
}

func (h *Handler) servePage(w http.ResponseWriter, r *http.Request, topic string, cookie bool) {
	s := h.snapshot(r.Context(), topic)
	v := newPageView(s, h.head("mistbridge status", h.refresh), h.keys.enabled(), cookie)
	h.render(w, http.StatusOK, "page", v)
}

func (h *Handler) serveJSON(w http.ResponseWriter, r *http.Request, topic string) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, h.snapshot(r.Context(), topic))
}

// render executes a template whole before anything is written, so a
// failure is a clean 500 and not half a page.
func (h *Handler) render(w http.ResponseWriter, code int, name string, data any) {
	var buf bytes.Buffer
	if err := templates.ExecuteTemplate(&buf, name, data); err != nil {
		h.log.Error("status page: rendering failed", "template", name, "err", err)
		http.Error(w, "the status page could not be rendered: see the bridge's log", http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	hd.Set("Content-Security-Policy", csp)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

func (h *Handler) methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed: use " + allow, "reason": "method_not_allowed"})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
