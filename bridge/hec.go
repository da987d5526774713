package bridge

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/mistbridge/mistbridge/bridge/auth"
	"github.com/mistbridge/mistbridge/codec"
)

// Splunk HTTP Event Collector (HEC) answer codes, as Splunk documents them.
// A Mist webhook of type "splunk" posts to HEC, so the bridge speaks enough
// of it to stand in for Splunk.
const (
	hecSuccess              = 0
	hecTokenRequired        = 2
	hecInvalidAuthorization = 3
	hecInvalidToken         = 4
	hecNoData               = 5
	hecInvalidDataFormat    = 6
	hecInternalError        = 8
	hecServerBusy           = 9
	hecEventRequired        = 12
	hecEventBlank           = 13
	hecHealthy              = 17
	hecUnhealthy            = 18
)

// hecAnswer is HEC's JSON answer: {"text":"Success","code":0}.
type hecAnswer struct {
	Text string `json:"text"`
	Code int    `json:"code"`
	// InvalidEventNumber is the index, from 0, of the first bad event
	// object of the body, as HEC reports it.
	InvalidEventNumber *int `json:"invalid-event-number,omitempty"`
}

// hecError is a request HEC refuses for its data, with HEC's code.
type hecError struct {
	status int
	code   int
	text   string
	index  int // of the event object at fault, or -1
	err    error
}

func (e *hecError) Error() string {
	msg := "bridge: hec: " + e.text
	if e.index >= 0 {
		msg += fmt.Sprintf(" (event %d)", e.index)
	}
	if e.err != nil {
		msg += ": " + e.err.Error()
	}
	return msg
}

func (e *hecError) Unwrap() error { return e.err }

func hecDataError(code, index int, text string, err error) *hecError {
	return &hecError{status: http.StatusBadRequest, code: code, text: text, index: index, err: err}
}

var errHECNoData = &hecError{status: http.StatusBadRequest, code: hecNoData, text: "No data", index: -1}

// hecRoutes mounts the Splunk HEC endpoints (/services/collector/event,
// /services/collector/raw, their /1.0 and bare /services/collector
// aliases, and /services/collector/health) for the receiver whose
// verifier is Splunk's token (MISTBRIDGE_AUTH_TYPE=splunk): the default
// receiver when it is one, else the first such receiver by name. With no
// such receiver it mounts nothing, and the paths stay 404.
//
// /event takes one or more concatenated HEC objects {"event": ...,
// "time": ..., ...}; each "event" is a Mist envelope {"topic": ...,
// "events": [...]}, an array of events or one event object (or a JSON
// string holding one of these). /raw takes the body as the bridge's own
// webhook does. The topic is the envelope's, else ?topic=, else the
// receiver's default topic. Events are delivered as on /webhooks/: the
// answer is {"text":"Success","code":0} only once every event is acked.
func (s *Server) hecRoutes(mux *http.ServeMux) {
	rc := s.hecReceiver()
	if rc == nil {
		return
	}
	event := func(w http.ResponseWriter, r *http.Request) { s.handleHEC(w, r, rc, false) }
	raw := func(w http.ResponseWriter, r *http.Request) { s.handleHEC(w, r, rc, true) }
	for _, p := range []string{"/services/collector", "/services/collector/event", "/services/collector/event/1.0"} {
		mux.HandleFunc(p, event)
	}
	for _, p := range []string{"/services/collector/raw", "/services/collector/raw/1.0"} {
		mux.HandleFunc(p, raw)
	}
	for _, p := range []string{"/services/collector/health", "/services/collector/health/1.0"} {
		mux.HandleFunc(p, s.handleHECHealth)
	}
}

// hecReceiver returns the receiver HEC requests go to, or nil.
func (s *Server) hecReceiver() *Receiver { return s.receivers.Load().hec }

// pickHEC picks the receiver HEC requests go to in set: the default
// receiver when it is a Splunk one, else the first Splunk receiver by name.
func (s *Server) pickHEC(set *receiverSet) *Receiver {
	if rc, ok := set.byName[s.cfg.Receiver]; ok && auth.IsSplunk(rc.Verifier) {
		return rc
	}
	names := slices.Sorted(maps.Keys(set.byName))
	for _, name := range names {
		if auth.IsSplunk(set.byName[name].Verifier) {
			return set.byName[name]
		}
	}
	return nil
}

func (s *Server) handleHEC(w http.ResponseWriter, r *http.Request, rc *Receiver, raw bool) {
	start := time.Now()
	var ex exchange
	ex.begin(w, r, start)
	ex.rc = rc
	r, span := s.startRequest(r, &ex, "POST /services/collector")
	n, err := s.ingestHEC(w, r, rc, raw, start)
	ex.events = n
	code := s.answerHEC(w, &ex, n, err)
	endRequest(span, &ex, code)
	if code == http.StatusOK {
		auth.Commit(rc.Verifier, r)
	}
	s.metrics.requests.WithLabelValues(rc.Name, statusLabel(code)).Inc()
	s.metrics.duration.WithLabelValues(rc.Name).Observe(time.Since(start).Seconds())
	if s.status != nil {
		s.status.Request(rc.Name, ex.topic, n, code, ex.reason, start)
	}
	s.logDone(r.Context(), &ex, code, "hec")
}

// ingestHEC runs one HEC request through the pipeline and returns how many
// events are safe at the brokers.
func (s *Server) ingestHEC(w http.ResponseWriter, r *http.Request, rc *Receiver, raw bool, start time.Time) (int, error) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return 0, errMethod
	}
	// A Splunk token does not depend on the body: check it before reading
	// one, so a request without the token takes no admission room (and
	// gets HEC's "Token is required" whatever it sent).
	if err := s.verify(rc, r, nil); err != nil {
		w.Header().Set("Connection", "close") // the body is not read
		return 0, err
	}
	body, hold, err := s.readBody(w, r, true)
	if err != nil {
		w.Header().Set("Connection", "close")
		return 0, err
	}
	defer hold.release()
	if len(bytes.TrimSpace(body.Bytes())) == 0 {
		return 0, errHECNoData
	}
	query := r.URL.Query().Get("topic")
	topic := cmp.Or(query, rc.DefaultTopic)
	var batches []codec.Batch
	if raw {
		b, err := codec.Split(body.Bytes(), topic)
		if err != nil {
			return 0, hecDataError(hecInvalidDataFormat, 0, "Invalid data format", err)
		}
		batches = []codec.Batch{b}
	} else if batches, err = splitHEC(body.Bytes(), query, rc.DefaultTopic); err != nil {
		return 0, err
	}
	// Every topic is checked and every event admitted before any is
	// delivered: a refused request publishes nothing.
	return s.publish(r.Context(), rc, start, mergeByTopic(batches)...)
}

// splitHEC reads a body of concatenated HEC event objects and splits the
// "event" of each as the bridge splits a webhook body. An event's topic is
// its own envelope's, else ?topic= (query), else HEC's "sourcetype" when it
// is a valid topic name, else the receiver's default.
func splitHEC(body []byte, query, defaultTopic string) ([]codec.Batch, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	var batches []codec.Batch
	for i := 0; ; i++ {
		var obj json.RawMessage
		if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, hecDataError(hecInvalidDataFormat, i, "Invalid data format", err)
		}
		if obj[0] != '{' {
			return nil, hecDataError(hecInvalidDataFormat, i, "Invalid data format", errors.New("want a JSON object"))
		}
		var hec struct {
			Event      json.RawMessage `json:"event"`
			Sourcetype string          `json:"sourcetype"`
		}
		if err := json.Unmarshal(obj, &hec); err != nil {
			return nil, hecDataError(hecInvalidDataFormat, i, "Invalid data format", err)
		}
		ev := bytes.TrimSpace(hec.Event)
		if len(ev) == 0 {
			return nil, hecDataError(hecEventRequired, i, "Event field is required", nil)
		}
		if ev[0] == '"' {
			// An event sent as a string: HEC's usual form for text. Accept
			// it when the text is JSON.
			var text string
			if err := json.Unmarshal(ev, &text); err != nil {
				return nil, hecDataError(hecInvalidDataFormat, i, "Invalid data format", err)
			}
			ev = bytes.TrimSpace([]byte(text))
		}
		if len(ev) == 0 || string(ev) == "null" || string(ev) == "{}" {
			return nil, hecDataError(hecEventBlank, i, "Event field cannot be blank", nil)
		}
		topic := query
		if topic == "" && codec.ValidateTopic(hec.Sourcetype) == nil {
			topic = hec.Sourcetype
		}
		b, err := codec.Split(ev, cmp.Or(topic, defaultTopic))
		if errors.Is(err, codec.ErrNoTopic) {
			return nil, hecDataError(hecInvalidDataFormat, i, "Invalid data format: no topic: send a Mist envelope with \"topic\", ?topic=, or a \"sourcetype\" that is a topic name (letters, digits, '-', '_')", err)
		}
		if err != nil {
			return nil, hecDataError(hecInvalidDataFormat, i, "Invalid data format", err)
		}
		batches = append(batches, b)
	}
	if len(batches) == 0 {
		return nil, errHECNoData
	}
	return batches, nil
}

// mergeByTopic joins batches of the same topic, keeping the order of first
// appearance.
func mergeByTopic(in []codec.Batch) []codec.Batch {
	var out []codec.Batch
	at := map[string]int{}
	for _, b := range in {
		if i, ok := at[b.Topic]; ok {
			out[i].Events = append(out[i].Events, b.Events...)
			continue
		}
		at[b.Topic] = len(out)
		out = append(out, codec.Batch{Topic: b.Topic, Events: slices.Clip(b.Events)})
	}
	return out
}

// answerHEC writes HEC's answer for the outcome of a request and returns
// its status code. It maps what [classify] maps for /webhooks/ onto HEC's
// codes.
func (s *Server) answerHEC(w http.ResponseWriter, ex *exchange, n int, err error) int {
	rc := ex.rc
	if err == nil {
		writeJSON(w, http.StatusOK, hecAnswer{Text: "Success", Code: hecSuccess})
		return http.StatusOK
	}
	status, reason, _ := classify(err)
	a := hecAnswer{Text: "Internal server error", Code: hecInternalError}
	var he *hecError
	switch {
	case errors.As(err, &he):
		status, reason, a = he.status, "invalid_hec_data", hecAnswer{Text: he.text, Code: he.code}
		if he.index >= 0 {
			a.InvalidEventNumber = &he.index
		}
	case errors.Is(err, auth.ErrForbidden):
		a = hecAnswer{Text: "Forbidden", Code: hecInvalidToken}
	case errors.Is(err, auth.ErrUnauthorized):
		switch auth.Reason(err) {
		case auth.ReasonCredentialsMissing:
			status, a = http.StatusUnauthorized, hecAnswer{Text: "Token is required", Code: hecTokenRequired}
		case auth.ReasonCredentialsMalformed:
			status, a = http.StatusUnauthorized, hecAnswer{Text: "Invalid authorization", Code: hecInvalidAuthorization}
		default:
			status, a = http.StatusForbidden, hecAnswer{Text: "Invalid token", Code: hecInvalidToken}
		}
		if c := auth.Challenge(err); c != "" && status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", c)
		}
	case status == http.StatusMethodNotAllowed:
		a = hecAnswer{Text: "Method not allowed: use POST", Code: hecInvalidDataFormat}
	case status == http.StatusRequestEntityTooLarge, status == http.StatusBadRequest, status == http.StatusUnprocessableEntity:
		a = hecAnswer{Text: "Invalid data format", Code: hecInvalidDataFormat}
	case status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable:
		// HEC answers 503 "Server is busy"; senders retry it.
		status, a = http.StatusServiceUnavailable, hecAnswer{Text: "Server is busy", Code: hecServerBusy}
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(s.cfg.RetryAfter.Round(time.Second)/time.Second))))
	}
	ex.reason = reason
	if status >= 500 {
		s.log.Warn("hec request failed", "request_id", ex.id, "receiver", rc.Name, "code", status, "reason", reason, "delivered", n, "err", err)
	} else {
		s.log.Debug("hec request refused", "request_id", ex.id, "receiver", rc.Name, "code", status, "reason", reason, "err", err)
	}
	writeJSON(w, status, a)
	return status
}

// handleHECHealth is HEC's health check: 200 code 17 while the bridge takes
// events, else 503 code 18.
func (s *Server) handleHECHealth(w http.ResponseWriter, _ *http.Request) {
	if s.draining.Load() || s.delivery.Failing() {
		writeJSON(w, http.StatusServiceUnavailable, hecAnswer{Text: "HEC is unhealthy, queues are full", Code: hecUnhealthy})
		return
	}
	writeJSON(w, http.StatusOK, hecAnswer{Text: "HEC is healthy", Code: hecHealthy})
}
