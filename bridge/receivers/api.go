package receivers

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/mistbridge/mistbridge/bridge/auth"
)

// OpenAPI is the OpenAPI 3.1 document of the API, served on
// GET /api/v1/openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte

// Defaults of [APIOptions].
const (
	DefaultRate         = 10 // requests per second per client address
	DefaultBurst        = 20
	DefaultMaxBodyBytes = 64 << 10
)

// APIOptions configure the API. The zero value of each field but Tokens
// means its documented default.
type APIOptions struct {
	// Tokens are the admin tokens; a request must carry one as
	// "Authorization: Bearer <token>". Several may be valid at once, for
	// rotation. None means every request is refused (401).
	Tokens []string
	// PublicURL is the base of each receiver's ingest URL (e.g.
	// https://bridge.example.com). The default is the scheme and Host of
	// the request.
	PublicURL string
	// Reserved are names no managed receiver may take (the receiver from
	// the environment): a create or rename to one is a 409.
	Reserved []string
	// OnChange is called after every successful write, with the request's
	// context, to apply the change to ingestion (e.g. [Live.Sync]). When
	// it fails the write stays stored, the answer is 500 and the error is
	// logged. The default does nothing.
	OnChange func(ctx context.Context) error
	// Rate and Burst limit the requests of one client address (token
	// bucket); past them the answer is 429 with Retry-After. The defaults
	// are [DefaultRate] per second and [DefaultBurst].
	Rate  rate.Limit
	Burst int
	// MaxBodyBytes caps a request body (413 past it). The default is
	// [DefaultMaxBodyBytes].
	MaxBodyBytes int64
	// Log receives one line per write and per internal error, never a
	// credential. The default discards.
	Log *slog.Logger
	// Now returns the current time, for the rate limiter. The default is
	// time.Now.
	Now func() time.Time
}

// API serves the receivers API under /api/v1/. Build it with [NewAPI]; it
// is safe for concurrent use.
type API struct {
	store  *Store
	o      APIOptions
	tokens [][sha256.Size]byte
	limit  *limiter
	mux    *http.ServeMux
}

// NewAPI returns the API over store.
func NewAPI(store *Store, o APIOptions) *API {
	if o.Rate == 0 {
		o.Rate = DefaultRate
	}
	if o.Burst <= 0 {
		o.Burst = DefaultBurst
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.OnChange == nil {
		o.OnChange = func(context.Context) error { return nil }
	}
	o.PublicURL = strings.TrimRight(strings.TrimSpace(o.PublicURL), "/")
	a := &API{store: store, o: o, limit: newLimiter(o.Rate, o.Burst, o.Now)}
	for _, t := range o.Tokens {
		if t = strings.TrimSpace(t); t != "" {
			a.tokens = append(a.tokens, sha256.Sum256([]byte(t)))
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/receivers", a.collection)
	mux.HandleFunc("/api/v1/receivers/{id}", a.item)
	mux.HandleFunc("/api/v1/openapi.json", a.openapi)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not found: the API serves /api/v1/receivers and /api/v1/openapi.json", "")
	})
	a.mux = mux
	return a
}

// ServeHTTP limits the rate per client address, authenticates the caller
// and routes the request.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if ok, wait := a.limit.allow(clientIP(r)); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(max(wait.Seconds(), 1)))))
		writeError(w, http.StatusTooManyRequests, "too many requests: slow down", "")
		return
	}
	if !a.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="mistbridge-admin"`)
		writeError(w, http.StatusUnauthorized, "unauthorized: send Authorization: Bearer <admin token>", "")
		return
	}
	a.mux.ServeHTTP(w, r)
}

// authorized compares the bearer token with every admin token, in
// constant time, looking at all of them.
func (a *API) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	if len(h) < 7 || !strings.EqualFold(h[:7], "Bearer ") {
		return false
	}
	tok := strings.TrimSpace(h[7:])
	if tok == "" {
		return false
	}
	got := sha256.Sum256([]byte(tok))
	ok := 0
	for i := range a.tokens {
		ok |= subtle.ConstantTimeCompare(got[:], a.tokens[i][:])
	}
	return ok == 1
}

func (a *API) collection(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		list, err := a.store.List(r.Context())
		if err != nil {
			a.fail(w, r, err)
			return
		}
		out := make([]Receiver, len(list))
		for i := range list {
			out[i] = a.view(r, list[i])
		}
		writeJSON(w, http.StatusOK, struct {
			Receivers []Receiver `json:"receivers"`
		}{out})
	case http.MethodPost:
		in, err := a.decode(w, r)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		rc := Receiver{Enabled: true}
		in.apply(&rc, nil)
		if err := a.check(&rc); err != nil {
			a.fail(w, r, err)
			return
		}
		rc, err = a.store.Create(r.Context(), rc)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		a.o.Log.Info("receivers: created", "receiver", rc, "client", clientIP(r))
		if !a.changed(w, r) {
			return
		}
		w.Header().Set("Location", "/api/v1/receivers/"+rc.ID)
		writeJSON(w, http.StatusCreated, a.view(r, rc))
	default:
		methodNotAllowed(w, "GET, POST")
	}
}

func (a *API) item(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	switch r.Method {
	case http.MethodGet:
		rc, err := a.store.Get(r.Context(), id)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, a.view(r, rc))
	case http.MethodPut, http.MethodPatch:
		in, err := a.decode(w, r)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		patch := r.Method == http.MethodPatch
		rc, err := a.store.Update(r.Context(), id, func(rc *Receiver) error {
			stored := *rc
			if !patch {
				*rc = Receiver{Enabled: true}
			}
			in.apply(rc, &stored)
			return a.check(rc)
		})
		if err != nil {
			a.fail(w, r, err)
			return
		}
		a.o.Log.Info("receivers: updated", "receiver", rc, "method", r.Method, "client", clientIP(r))
		if !a.changed(w, r) {
			return
		}
		writeJSON(w, http.StatusOK, a.view(r, rc))
	case http.MethodDelete:
		if err := a.store.Delete(r.Context(), id); err != nil {
			a.fail(w, r, err)
			return
		}
		a.o.Log.Info("receivers: deleted", "id", id, "client", clientIP(r))
		if !a.changed(w, r) {
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		methodNotAllowed(w, "GET, PUT, PATCH, DELETE")
	}
}

func (a *API) openapi(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, "GET")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(OpenAPI)
}

// check validates rc in its stored form and refuses a reserved name.
func (a *API) check(rc *Receiver) error {
	rc.normalise()
	if err := rc.Validate(); err != nil {
		return err
	}
	if slices.Contains(a.o.Reserved, rc.Name) {
		return &reservedError{name: rc.Name}
	}
	return nil
}

// changed runs OnChange after a write and reports whether the answer may
// go on; when it failed it has answered 500.
func (a *API) changed(w http.ResponseWriter, r *http.Request) bool {
	if err := a.o.OnChange(r.Context()); err != nil {
		a.o.Log.Error("receivers: the change is stored but could not be applied to ingestion", "err", err)
		writeError(w, http.StatusInternalServerError, "internal error: the change is stored but not yet in force; see the server log", "")
		return false
	}
	return true
}

// view is rc as a response shows it.
func (a *API) view(r *http.Request, rc Receiver) Receiver {
	rc = rc.Masked()
	base := a.o.PublicURL
	if base == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + r.Host
	}
	rc.URL = base + "/webhooks/" + rc.Name
	return rc
}

// input is a request body: a pointer is nil when the field is absent.
// The read-only fields are accepted (so a GET's answer can be sent back)
// and ignored.
type input struct {
	ID            *string   `json:"id"`
	Name          *string   `json:"name"`
	Enabled       *bool     `json:"enabled"`
	AuthType      *string   `json:"authType"`
	Secret        *string   `json:"secret"`
	UserName      *string   `json:"userName"`
	Password      *string   `json:"password"`
	Token         *string   `json:"token"`
	Header        *string   `json:"header"`
	QueryParam    *string   `json:"queryParam"`
	HMACHeader    *string   `json:"hmacHeader"`
	HMACAlgorithm *string   `json:"hmacAlgorithm"`
	HMACEncoding  *string   `json:"hmacEncoding"`
	HMACPrefix    *string   `json:"hmacPrefix"`
	JWKSURL       *string   `json:"jwksUrl"`
	Issuer        *string   `json:"issuer"`
	Audience      *string   `json:"audience"`
	Topics        *[]string `json:"topics"`
	URL           *string   `json:"url"`
	CreatedTime   *int64    `json:"createdTime"`
	ModifiedTime  *int64    `json:"modifiedTime"`
}

// apply sets the fields in given on rc. stored is the receiver as stored
// (nil for a create): a credential sent as [Mask] keeps its stored value,
// and when the auth type changes, a stored credential the new type does
// not read and the request does not mention is dropped (switching from
// bearer to basic needs no "token": "").
func (in *input) apply(rc *Receiver, stored *Receiver) {
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = *src
		}
	}
	set(&rc.Name, in.Name)
	if in.Enabled != nil {
		rc.Enabled = *in.Enabled
	}
	set(&rc.AuthType, in.AuthType)
	set(&rc.UserName, in.UserName)
	set(&rc.Header, in.Header)
	set(&rc.QueryParam, in.QueryParam)
	set(&rc.HMACHeader, in.HMACHeader)
	set(&rc.HMACAlgorithm, in.HMACAlgorithm)
	set(&rc.HMACEncoding, in.HMACEncoding)
	set(&rc.HMACPrefix, in.HMACPrefix)
	set(&rc.JWKSURL, in.JWKSURL)
	set(&rc.Issuer, in.Issuer)
	set(&rc.Audience, in.Audience)
	if in.Topics != nil {
		rc.Topics = slices.Clone(*in.Topics)
	}
	creds := []struct {
		field     string
		dst, kept *string
		src       *string
	}{
		{auth.FieldSecret, &rc.Secret, nil, in.Secret},
		{auth.FieldPassword, &rc.Password, nil, in.Password},
		{auth.FieldToken, &rc.Token, nil, in.Token},
	}
	if stored != nil {
		creds[0].kept, creds[1].kept, creds[2].kept = &stored.Secret, &stored.Password, &stored.Token
	}
	typ := strings.ToLower(strings.TrimSpace(rc.AuthType))
	for _, c := range creds {
		switch {
		case c.src != nil && *c.src == Mask && c.kept != nil:
			*c.dst = *c.kept
		case c.src != nil:
			*c.dst = *c.src
		case stored != nil && in.AuthType != nil && !owns(typ, c.field):
			*c.dst = ""
		}
	}
	if stored != nil && in.AuthType != nil && in.UserName == nil && !owns(typ, auth.FieldUserName) {
		rc.UserName = ""
	}
}

// errBodyTooLarge is answered 413.
var errBodyTooLarge = errors.New("receivers: request body too large")

// decode reads a request body into an input, refusing unknown fields.
func (a *API) decode(w http.ResponseWriter, r *http.Request) (*input, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		return nil, &auth.FieldError{Field: FieldBody, Msg: fmt.Sprintf("Content-Type %q is not supported: send application/json", ct)}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, a.o.MaxBodyBytes))
	dec.DisallowUnknownFields()
	var in input
	if err := dec.Decode(&in); err != nil {
		return nil, decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, &auth.FieldError{Field: FieldBody, Msg: "the body holds more than one JSON object"}
	}
	return &in, nil
}

// decodeError turns a JSON decoding error into a field error, quoting
// no value (a value may be a credential).
func decodeError(err error) error {
	var mbe *http.MaxBytesError
	var ute *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &mbe):
		return errBodyTooLarge
	case errors.As(err, &ute):
		field := ute.Field
		if field == "" {
			field = FieldBody
		}
		return &auth.FieldError{Field: field, Msg: fmt.Sprintf("%s must be a JSON %s", field, jsonKind(ute.Type.Kind().String()))}
	case errors.As(err, &se), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &auth.FieldError{Field: FieldBody, Msg: "the body is not a JSON object"}
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name = strings.Trim(name, `"`)
		return &auth.FieldError{Field: name, Msg: fmt.Sprintf("unknown field %q", name)}
	}
	return &auth.FieldError{Field: FieldBody, Msg: "the body is not a receiver"}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "bool":
		return "boolean"
	case "slice":
		return "array"
	case "int64", "int", "float64":
		return "number"
	}
	return goKind
}

// reservedError is a name taken by a receiver the API does not manage.
type reservedError struct{ name string }

func (e *reservedError) Error() string {
	return fmt.Sprintf("receivers: name %q is the receiver configured at start-up (from the environment): choose another name", e.name)
}

func (e *reservedError) Unwrap() error { return ErrConflict }

// fail answers err, mapping it to a status in one place ([statusOf]).
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, msg, field := statusOf(err)
	if status == http.StatusInternalServerError {
		a.o.Log.Error("receivers: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	body := errorBody{Error: msg, Field: field}
	if fes := auth.FieldErrors(err); len(fes) > 1 {
		for _, fe := range fes {
			body.Errors = append(body.Errors, fieldProblem{Error: fe.Msg, Field: fe.Field})
		}
	}
	writeJSON(w, status, body)
}

// statusOf maps an error to its status, message and field.
func statusOf(err error) (int, string, string) {
	var re *reservedError
	if errors.As(err, &re) {
		return http.StatusConflict, strings.TrimPrefix(re.Error(), "receivers: "), FieldName
	}
	if fes := auth.FieldErrors(err); len(fes) > 0 {
		return http.StatusBadRequest, fes[0].Msg, fes[0].Field
	}
	switch {
	case errors.Is(err, errBodyTooLarge):
		return http.StatusRequestEntityTooLarge, "the request body is too large", ""
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound, "no receiver with this id", ""
	case errors.Is(err, ErrConflict):
		return http.StatusConflict, "a receiver with this name exists", FieldName
	}
	return http.StatusInternalServerError, "internal error: see the server log", ""
}

type errorBody struct {
	Error  string         `json:"error"`
	Field  string         `json:"field,omitempty"`
	Errors []fieldProblem `json:"errors,omitempty"`
}

type fieldProblem struct {
	Error string `json:"error"`
	Field string `json:"field"`
}

func writeError(w http.ResponseWriter, status int, msg, field string) {
	writeJSON(w, status, errorBody{Error: msg, Field: field})
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, http.StatusMethodNotAllowed, "method not allowed: use "+allow, "")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error: see the server log"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// clientIP is the TCP peer's address: the rate is limited per peer (a
// proxy in front shares one bucket among its clients).
func clientIP(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// limiter is a token bucket per client address, forgetting idle clients.
type limiter struct {
	rate  rate.Limit
	burst int
	now   func() time.Time

	mu      sync.Mutex
	clients map[string]*client
}

type client struct {
	l    *rate.Limiter
	seen time.Time
}

// maxClients bounds the buckets kept; idle ones go first.
const maxClients = 10_000

func newLimiter(r rate.Limit, burst int, now func() time.Time) *limiter {
	return &limiter{rate: r, burst: burst, now: now, clients: map[string]*client{}}
}

// allow takes a token for ip, or reports how long until one is there.
func (l *limiter) allow(ip string) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.clients[ip]
	if !ok {
		if len(l.clients) >= maxClients {
			for k, v := range l.clients {
				if now.Sub(v.seen) > time.Minute {
					delete(l.clients, k)
				}
			}
			if len(l.clients) >= maxClients {
				clear(l.clients)
			}
		}
		c = &client{l: rate.NewLimiter(l.rate, l.burst)}
		l.clients[ip] = c
	}
	c.seen = now
	res := c.l.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}
