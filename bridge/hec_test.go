package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mistbridge/mistbridge/bridge/auth"
	"github.com/mistbridge/mistbridge/sinks"
	"github.com/mistbridge/mistbridge/sinks/natssink"
)

const hecToken = "hec-token-0f3a"

const (
	hecPing   = `{"topic":"ping","events":[{"id":"487f6eca-6276-4993-bfeb-f3cbbbba4f08","name":"string","site_id":"72771e6a-6f5e-4de4-a5b9-1266c4197811","timestamp":0}]}`
	hecAlarms = `{"topic":"alarms","events":[{"id":"a1","org_id":"o1","site_id":"s1","type":"device_down","timestamp":1625661567.2},{"id":"a2","org_id":"o1","site_id":"s2","type":"device_up","timestamp":1625661568}]}`
	hecDevice = `{"ap":"5c5b355003cf","org_id":"o1","site_id":"s3","timestamp":1548096105,"type":"AP_CONFIGURED"}`
)

// hecRig is a bridge whose receiver authenticates with a Splunk token, in
// front of a real embedded nats-server with JetStream.
type hecRig struct {
	url     string
	natsURL string
}

func newHECRig(t *testing.T, receivers ...*Receiver) *hecRig {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	emb, err := natssink.StartEmbedded(t.TempDir(), "127.0.0.1:0", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	var ncfg natssink.Config
	if err := env.ParseWithOptions(&ncfg, env.Options{Environment: map[string]string{"URL": emb.ClientURL()}}); err != nil {
		t.Fatal(err)
	}
	ns, err := natssink.New(context.Background(), ncfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Close(context.Background()) })
	out := sinks.NewRetrying(ns, sinks.RetryPolicy{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}, nil, log)
	router, err := NewRouter("", out)
	if err != nil {
		t.Fatal(err)
	}
	var bcfg Config
	if err := env.ParseWithOptions(&bcfg, env.Options{Environment: map[string]string{"RECEIVER": "splunk"}}); err != nil {
		t.Fatal(err)
	}
	if len(receivers) == 0 {
		v, err := (&auth.Config{Type: "splunk", Token: []string{"old", hecToken}}).Verifier(nil)
		if err != nil {
			t.Fatal(err)
		}
		receivers = []*Receiver{{Name: "splunk", Verifier: v}}
	}
	s, err := New(bcfg, Options{Router: router, Receivers: receivers, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	s.hecRoutes(mux)
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	return &hecRig{url: hs.URL, natsURL: emb.ClientURL()}
}

type hecReply struct {
	status int
	header http.Header
	body   hecAnswer
	raw    string
}

func (r *hecRig) post(t *testing.T, method, path, auth, body string) hecReply {
	t.Helper()
	req, err := http.NewRequest(method, r.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	rep := hecReply{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if err := json.Unmarshal(raw, &rep.body); err != nil {
		t.Fatalf("answer %d is not HEC JSON: %q", resp.StatusCode, raw)
	}
	return rep
}

// subjects reads the subjects of the messages in the MIST stream, waiting
// at most wait for want of them.
func subjects(t *testing.T, url string, want int, wait time.Duration) []string {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, "MIST", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for len(out) < want && ctx.Err() == nil {
		batch, err := cons.FetchNoWait(want)
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			out = append(out, m.Subject())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return out
}

func TestHECEvents(t *testing.T) {
	r := newHECRig(t)
	// Two concatenated HEC objects (Splunk's batch form): one event is a
	// Mist envelope, the other the same kind of envelope sent as a string.
	alarmsAsString, _ := json.Marshal(hecAlarms)
	body := `{"time":1625661567,"sourcetype":"mist","event":` + hecPing + "}\n" +
		`{"event":` + string(alarmsAsString) + `,"host":"mist"}`
	rep := r.post(t, http.MethodPost, "/services/collector/event", "Splunk "+hecToken, body)
	if rep.status != http.StatusOK || rep.raw != `{"text":"Success","code":0}`+"\n" {
		t.Fatalf("answer %d %q, want 200 Success", rep.status, rep.raw)
	}
	// A bare event takes its topic from ?topic=.
	rep = r.post(t, http.MethodPost, "/services/collector?topic=device-events", "splunk "+hecToken, `{"event":`+hecDevice+`}`)
	if rep.status != http.StatusOK || rep.body.Code != 0 {
		t.Fatalf("answer %d %q", rep.status, rep.raw)
	}
	// A bare event without ?topic= takes HEC's sourcetype as its topic.
	rep = r.post(t, http.MethodPost, "/services/collector", "Splunk "+hecToken, `{"sourcetype":"device-updowns","event":`+hecDevice+`}`)
	if rep.status != http.StatusOK || rep.body.Code != 0 {
		t.Fatalf("sourcetype answer %d %q", rep.status, rep.raw)
	}
	// /raw takes the Mist body as it is.
	rep = r.post(t, http.MethodPost, "/services/collector/raw", "Splunk old", hecPing)
	if rep.status != http.StatusOK || rep.body.Code != 0 {
		t.Fatalf("raw answer %d %q", rep.status, rep.raw)
	}

	got := subjects(t, r.natsURL, 5, 5*time.Second)
	want := []string{"mist.ping.", "mist.alarms.o1.s1", "mist.alarms.o1.s2", "mist.device-events.o1.s3", "mist.device-updowns.o1.s3"}
	if len(got) != len(want) {
		t.Fatalf("subjects %q, want %d messages (the raw ping is a duplicate JetStream drops)", got, len(want))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("message %d on %q, want %q...", i, got[i], want[i])
		}
	}
}

func TestHECErrors(t *testing.T) {
	r := newHECRig(t)
	const noTopic = `Invalid data format: no topic: send a Mist envelope with "topic", ?topic=, or a "sourcetype" that is a topic name (letters, digits, '-', '_')`
	ok := "Splunk " + hecToken
	idx := func(i int) *int { return &i }
	tests := []struct {
		name   string
		method string
		path   string
		auth   string
		body   string
		status int
		want   hecAnswer
	}{
		{"no token", "POST", "/services/collector/event", "", hecPing, 401, hecAnswer{Text: "Token is required", Code: 2}},
		{"bearer instead", "POST", "/services/collector/event", "Bearer " + hecToken, hecPing, 401, hecAnswer{Text: "Invalid authorization", Code: 3}},
		{"wrong token", "POST", "/services/collector/event", "Splunk nope", hecPing, 403, hecAnswer{Text: "Invalid token", Code: 4}},
		{"wrong token on raw", "POST", "/services/collector/raw", "Splunk nope", hecPing, 403, hecAnswer{Text: "Invalid token", Code: 4}},
		{"no data", "POST", "/services/collector/event", ok, "  \n", 400, hecAnswer{Text: "No data", Code: 5}},
		{"no data on raw", "POST", "/services/collector/raw", ok, "", 400, hecAnswer{Text: "No data", Code: 5}},
		{"not JSON", "POST", "/services/collector/event", ok, `{"event":` + hecPing + `} nonsense`, 400, hecAnswer{Text: "Invalid data format", Code: 6, InvalidEventNumber: idx(1)}},
		{"array", "POST", "/services/collector/event", ok, `[{"event":` + hecPing + `}]`, 400, hecAnswer{Text: "Invalid data format", Code: 6, InvalidEventNumber: idx(0)}},
		{"no event field", "POST", "/services/collector/event", ok, `{"event":` + hecPing + `}{"time":1}`, 400, hecAnswer{Text: "Event field is required", Code: 12, InvalidEventNumber: idx(1)}},
		{"blank event", "POST", "/services/collector/event", ok, `{"event":""}`, 400, hecAnswer{Text: "Event field cannot be blank", Code: 13, InvalidEventNumber: idx(0)}},
		{"text event", "POST", "/services/collector/event", ok, `{"event":"hello"}`, 400, hecAnswer{Text: "Invalid data format", Code: 6, InvalidEventNumber: idx(0)}},
		{"no topic", "POST", "/services/collector/event", ok, `{"event":` + hecDevice + `}`, 400, hecAnswer{Text: noTopic, Code: 6, InvalidEventNumber: idx(0)}},
		{"sourcetype not a topic name", "POST", "/services/collector/event", ok, `{"sourcetype":"_json:mist","event":` + hecDevice + `}`, 400, hecAnswer{Text: noTopic, Code: 6, InvalidEventNumber: idx(0)}},
		{"raw not JSON", "POST", "/services/collector/raw", ok, "a line of text", 400, hecAnswer{Text: "Invalid data format", Code: 6, InvalidEventNumber: idx(0)}},
		{"GET", "GET", "/services/collector/event", ok, "", 405, hecAnswer{Text: "Method not allowed: use POST", Code: 6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := r.post(t, tt.method, tt.path, tt.auth, tt.body)
			if rep.status != tt.status {
				t.Fatalf("status %d %q, want %d", rep.status, rep.raw, tt.status)
			}
			got, _ := json.Marshal(rep.body)
			want, _ := json.Marshal(tt.want)
			if !bytes.Equal(got, want) {
				t.Fatalf("answer %s, want %s", got, want)
			}
			if tt.status == 401 && rep.header.Get("WWW-Authenticate") != auth.SplunkChallenge {
				t.Errorf("WWW-Authenticate %q", rep.header.Get("WWW-Authenticate"))
			}
			if strings.Contains(rep.raw, hecToken) {
				t.Errorf("the answer shows the token")
			}
		})
	}
	if got := subjects(t, r.natsURL, 1, 300*time.Millisecond); len(got) != 0 {
		t.Fatalf("refused requests published %q", got)
	}
}

func TestHECHealth(t *testing.T) {
	r := newHECRig(t)
	rep := r.post(t, http.MethodGet, "/services/collector/health", "", "")
	if rep.status != http.StatusOK || rep.body != (hecAnswer{Text: "HEC is healthy", Code: 17}) {
		t.Fatalf("health %d %q", rep.status, rep.raw)
	}
}

// TestHECNeedsASplunkReceiver: with no Splunk receiver the HEC paths are
// not mounted at all.
func TestHECNeedsASplunkReceiver(t *testing.T) {
	mist, err := auth.NewMist([]string{"s"})
	if err != nil {
		t.Fatal(err)
	}
	r := newHECRig(t, &Receiver{Name: "splunk", Verifier: mist})
	resp, err := http.Post(r.url+"/services/collector/event", "application/json", strings.NewReader(hecPing))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status %d, want 404", resp.StatusCode)
	}
}

// TestHECRefusedRequestPublishesNothing: a request whose second event is
// refused (its topic is not the receiver's) is answered with an error and
// its first event, of an allowed topic, is not published either.
func TestHECRefusedRequestPublishesNothing(t *testing.T) {
	v, err := (&auth.Config{Type: "splunk", Token: []string{hecToken}}).Verifier(nil)
	if err != nil {
		t.Fatal(err)
	}
	r := newHECRig(t, &Receiver{Name: "splunk", Verifier: v, Topics: []string{"device-events"}})
	body := `{"event":{"topic":"device-events","events":[` + hecDevice + `]}}{"event":` + hecAlarms + `}`
	rep := r.post(t, http.MethodPost, "/services/collector/event", "Splunk "+hecToken, body)
	if rep.status/100 == 2 {
		t.Fatalf("answer %d %s for a request with a refused topic", rep.status, rep.raw)
	}
	if got := subjects(t, r.natsURL, 1, 500*time.Millisecond); len(got) != 0 {
		t.Fatalf("a refused request published %v", got)
	}
	// The allowed part alone goes through.
	rep = r.post(t, http.MethodPost, "/services/collector/event", "Splunk "+hecToken, `{"event":{"topic":"device-events","events":[`+hecDevice+`]}}`)
	if rep.status != http.StatusOK {
		t.Fatalf("allowed request: %d %s", rep.status, rep.raw)
	}
	if got := subjects(t, r.natsURL, 1, 2*time.Second); len(got) != 1 {
		t.Fatalf("allowed request published %v, want one message", got)
	}
}
