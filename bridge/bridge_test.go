package bridge_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mistbridge/mistbridge/bridge"
	"github.com/mistbridge/mistbridge/bridge/auth"
	"github.com/mistbridge/mistbridge/codec"
	"github.com/mistbridge/mistbridge/sinks"
	"github.com/mistbridge/mistbridge/sinks/kafkasink"
	"github.com/mistbridge/mistbridge/sinks/natssink"
	"github.com/mistbridge/mistbridge/test/loadgen"
)

const secret = "test-secret"

// defaults parses a component config from the given variables only, so a
// test gets the documented defaults.
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

type rig struct {
	url     string
	nats    *natssink.Embedded
	kafka   *kfake.Cluster
	outputs []*sinks.Retrying
}

type rigOptions struct {
	log        *slog.Logger // default: testLogger
	bridgeVars map[string]string
	verifier   auth.Verifier // default: Mist's HMAC with secret
	topics     []string      // the receiver's allowed topics
	noKafka    bool
	noNATS     bool
	kfakeOpts  []kfake.Opt
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// newRig starts real brokers (an embedded nats-server with JetStream and
// the in-process Kafka-protocol broker kfake) and a bridge in front of them.
func newRig(t testing.TB, o rigOptions) *rig {
	t.Helper()
	log := o.log
	if log == nil {
		log = testLogger(t)
	}
	ctx := context.Background()
	r := &rig{}
	var outs []bridge.Output
	policy := sinks.RetryPolicy{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}
	if !o.noNATS {
		emb, err := natssink.StartEmbedded(t.TempDir(), "127.0.0.1:0", log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(emb.Shutdown)
		r.nats = emb
		cfg := defaults[natssink.Config](t, map[string]string{"URL": emb.ClientURL()})
		ns, err := natssink.New(ctx, cfg, log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ns.Close(context.Background()) })
		rt := sinks.NewRetrying(ns, policy, nil, log)
		r.outputs = append(r.outputs, rt)
		outs = append(outs, rt)
	}
	if !o.noKafka {
		kopts := append([]kfake.Opt{kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(3)}, o.kfakeOpts...)
		c, err := kfake.NewCluster(kopts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		r.kafka = c
		cfg := defaults[kafkasink.Config](t, map[string]string{"BROKERS": strings.Join(c.ListenAddrs(), ","), "WRITE_TIMEOUT": "2s"})
		ks, err := kafkasink.New(cfg, log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ks.Close(context.Background()) })
		rt := sinks.NewRetrying(ks, policy, nil, log)
		r.outputs = append(r.outputs, rt)
		outs = append(outs, rt)
	}
	router, err := bridge.NewRouter("", outs...)
	if err != nil {
		t.Fatal(err)
	}
	verifier := o.verifier
	if verifier == nil {
		v, err := auth.NewMist([]string{secret})
		if err != nil {
			t.Fatal(err)
		}
		verifier = v
	}
	bcfg := defaults[bridge.Config](t, o.bridgeVars)
	srv, err := bridge.New(bcfg, bridge.Options{
		Router:    router,
		Receivers: []*bridge.Receiver{{Name: "mist", Verifier: verifier, Topics: o.topics}},
		Log:       log,
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	r.url = hs.URL
	return r
}

type answer struct {
	code   int
	header http.Header
	body   map[string]any
	err    error // the request got no answer (tryPost)
}

func post(t testing.TB, url string, body []byte, headers map[string]string) answer {
	t.Helper()
	a := tryPost(url, body, headers)
	if a.err != nil {
		t.Fatal(a.err)
	}
	return a
}

// tryPost is post for a goroutine other than the test's: it reports a
// failure in answer.err instead of calling t.Fatal, which must not be
// called there; the test goroutine checks it with must.
func tryPost(url string, body []byte, headers map[string]string) answer {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{code: resp.StatusCode, header: resp.Header}
	if err := json.Unmarshal(raw, &a.body); err != nil {
		return answer{err: fmt.Errorf("answer %d is not JSON: %q", resp.StatusCode, raw)}
	}
	return a
}

// must fails the test, in the test goroutine, when a was not answered.
func must(t testing.TB, a answer) answer {
	t.Helper()
	if a.err != nil {
		t.Fatal(a.err)
	}
	return a
}

func signed(body []byte) map[string]string {
	return map[string]string{"X-Mist-Signature-v2": loadgen.Sign(secret, body)}
}

func samples(t testing.TB) []loadgen.Sample {
	t.Helper()
	dir, err := loadgen.SamplesDir()
	if err != nil {
		t.Fatal(err)
	}
	s, err := loadgen.Samples(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// kafkaRecords reads every record of topic from the start.
func kafkaRecords(t testing.TB, c *kfake.Cluster, topic string, want int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
		if len(out) >= want {
			// Linger briefly so an unexpected extra record is seen too.
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { out = append(out, r) })
			cancel()
			break
		}
	}
	return out
}

// natsMessages reads every message of the MIST stream on subject filter.
func natsMessages(t testing.TB, url, filter string, want int) []jetstream.Msg {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, "MIST", jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for len(out) < want+1 {
		batch, err := cons.FetchNoWait(want + 1)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			out = append(out, m)
			n++
		}
		if n == 0 {
			if len(out) >= want {
				break
			}
			if ctx.Err() != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return out
}

func kafkaHeader(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// TestSamplesThroughHandler posts every sample and reads each event back
// from both brokers with real clients.
func TestSamplesThroughHandler(t *testing.T) {
	r := newRig(t, rigOptions{})
	earlier := map[string]map[string]bool{} // topic -> ids of samples posted before
	for _, s := range samples(t) {
		t.Run(s.Name, func(t *testing.T) {
			var env struct {
				Topic  string
				Events []json.RawMessage
			}
			if err := json.Unmarshal(s.Body, &env); err != nil {
				t.Fatal(err)
			}
			a := post(t, r.url+"/webhooks/mist", s.Body, signed(s.Body))
			if a.code != http.StatusOK || a.body["accepted"] != float64(len(env.Events)) {
				t.Fatalf("answer %d %v, want 200 with %d accepted", a.code, a.body, len(env.Events))
			}
			// The same body again: same ids, and JetStream keeps one copy.
			if a := post(t, r.url+"/webhooks/mist", s.Body, signed(s.Body)); a.code != http.StatusOK {
				t.Fatalf("second post: %d %v", a.code, a.body)
			}
			want := map[string]codec.Event{}
			for _, raw := range env.Events {
				ev := codec.Map(env.Topic, raw)
				want[ev.ID] = ev
			}
			if len(want) != len(env.Events) {
				t.Fatalf("sample has duplicate events")
			}

			// Samples that share a topic share a subject and a Kafka topic:
			// messages of earlier samples are skipped, any other is an error.
			msgs := natsMessages(t, r.nats.ClientURL(), "mist."+env.Topic+".>", len(want)+len(earlier[env.Topic]))
			natsSeen := map[string]int{}
			for _, m := range msgs {
				id := m.Headers().Get("ce-id")
				ev, ok := want[id]
				if !ok {
					if !earlier[env.Topic][id] {
						t.Fatalf("unexpected ce-id %q", id)
					}
					continue
				}
				natsSeen[id]++
				if m.Subject() != codec.Subject("mist", &ev) {
					t.Errorf("subject %q, want %q", m.Subject(), codec.Subject("mist", &ev))
				}
				if m.Headers().Get("Nats-Msg-Id") != id {
					t.Errorf("Nats-Msg-Id %q, want %q", m.Headers().Get("Nats-Msg-Id"), id)
				}
				for k, v := range map[string]string{"ce-specversion": "1.0", "ce-type": "com.juniper.mist." + env.Topic, "ce-source": ev.Source, "content-type": "application/json"} {
					if got := m.Headers().Get(k); got != v {
						t.Errorf("NATS header %s = %q, want %q", k, got, v)
					}
				}
				if !bytes.Equal(m.Data(), ev.Data) {
					t.Errorf("NATS data differs from the event as sent")
				}
			}
			for id := range want {
				if natsSeen[id] != 1 {
					t.Errorf("JetStream holds event %s %d times after two posts, want once", id, natsSeen[id])
				}
			}

			recs := kafkaRecords(t, r.kafka, "mist."+env.Topic, 2*(len(want)+len(earlier[env.Topic])))
			seen := map[string]int{}
			for _, rec := range recs {
				id := kafkaHeader(rec, "ce_id")
				ev, ok := want[id]
				if !ok {
					if !earlier[env.Topic][id] {
						t.Fatalf("unexpected ce_id %q", id)
					}
					continue
				}
				seen[id]++
				if string(rec.Key) != ev.PartitionKey() {
					t.Errorf("key %q, want %q", rec.Key, ev.PartitionKey())
				}
				for k, v := range map[string]string{"ce_specversion": "1.0", "ce_type": "com.juniper.mist." + env.Topic, "ce_source": ev.Source, "content-type": "application/json", "ce_partitionkey": ev.PartitionKey()} {
					if got := kafkaHeader(rec, k); got != v {
						t.Errorf("Kafka header %s = %q, want %q", k, got, v)
					}
				}
				if !bytes.Equal(rec.Value, ev.Data) {
					t.Errorf("Kafka value differs from the event as sent")
				}
			}
			if earlier[env.Topic] == nil {
				earlier[env.Topic] = map[string]bool{}
			}
			for id := range want {
				earlier[env.Topic][id] = true
				if seen[id] != 2 {
					t.Errorf("event %s is in Kafka %d times, want 2 (posted twice with the same ce_id; Kafka does not deduplicate)", id, seen[id])
				}
			}
		})
	}
}

// TestMistSignatures uses the vectors of SOURCES.md.
func TestMistSignatures(t *testing.T) {
	r := newRig(t, rigOptions{noKafka: true})
	ping := []byte(`{"topic":"ping","events":[{"id":"487f6eca-6276-4993-bfeb-f3cbbbba4f08","name":"string","site_id":"72771e6a-6f5e-4de4-a5b9-1266c4197811","timestamp":0}]}`)
	const (
		v2 = "28f7198fc2f3a8ef8695ce42ece88ff130318279ac1ab5a96291251c506786c7"
		v1 = "92046f8722da1d8047cf67c65d44020cec769f5e"
	)
	dir, err := loadgen.SamplesDir()
	if err != nil {
		t.Fatal(err)
	}
	audits, err := os.ReadFile(filepath.Join(dir, "audits.json"))
	if err != nil {
		t.Fatal(err)
	}
	audits = bytes.TrimSuffix(audits, []byte("\n"))
	tests := []struct {
		name    string
		body    []byte
		headers map[string]string
		want    int
		reason  string
	}{
		{"v2", ping, map[string]string{"X-Mist-Signature-v2": v2}, 200, ""},
		{"v1 only", ping, map[string]string{"X-Mist-Signature": v1}, 200, ""},
		{"both right", ping, map[string]string{"X-Mist-Signature-v2": v2, "X-Mist-Signature": v1}, 200, ""},
		{"audits v2", audits, map[string]string{"X-Mist-Signature-v2": "4dd15d25426dc016a15bd719be7f86e13143ceb10eb2a68dc4df8c9d4a7ae7da"}, 200, ""},
		{"audits v1", audits, map[string]string{"X-Mist-Signature": "031c5ecb5e6602dc66f07c321980e3da59666e0f"}, 200, ""},
		{"uppercase hex accepted", ping, map[string]string{"X-Mist-Signature-v2": strings.ToUpper(v2)}, 200, ""},
		{"missing", ping, nil, 401, "signature_missing"},
		{"wrong v2 with right v1: no downgrade", ping, map[string]string{"X-Mist-Signature-v2": strings.Repeat("0", 64), "X-Mist-Signature": v1}, 401, "signature_mismatch"},
		{"wrong v1 only", ping, map[string]string{"X-Mist-Signature": strings.Repeat("a", 40)}, 401, "signature_mismatch"},
		{"v1 value in the v2 header", ping, map[string]string{"X-Mist-Signature-v2": v1}, 401, "signature_malformed"},
		{"not hex", ping, map[string]string{"X-Mist-Signature-v2": "zz"}, 401, "signature_malformed"},
		{"body changed", append(bytes.Clone(ping), ' '), map[string]string{"X-Mist-Signature-v2": v2}, 401, "signature_mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := post(t, r.url+"/webhooks/mist", tt.body, tt.headers)
			if a.code != tt.want {
				t.Fatalf("code %d %v, want %d", a.code, a.body, tt.want)
			}
			if tt.reason != "" && a.body["reason"] != tt.reason {
				t.Errorf("reason %v, want %s", a.body["reason"], tt.reason)
			}
			if strings.Contains(fmt.Sprint(a.body), secret) {
				t.Errorf("answer shows the secret: %v", a.body)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	r := newRig(t, rigOptions{noKafka: true, bridgeVars: map[string]string{"MAX_BODY_BYTES": "2048", "MAX_INFLIGHT_EVENTS": "5"}})
	big := loadgen.Body("device-events", 0, 20)
	six := loadgen.Body("device-events", 0, 6)
	badItem := []byte(`{"topic":"zone","events":[{"a":1},"x",{"b":2}]}`)
	tests := []struct {
		name, method, path, ctype string
		body                      []byte
		want                      int
		reason, contains          string
	}{
		{"too large", "POST", "/webhooks/mist", "application/json", big, 413, "body_too_large", "2048"},
		{"more events than in-flight limit", "POST", "/webhooks/mist", "application/json", six, 413, "batch_too_large", "MISTBRIDGE_MAX_INFLIGHT_EVENTS"},
		{"bad item", "POST", "/webhooks/mist", "application/json", badItem, 400, "bad_event", "events[1]"},
		{"not json", "POST", "/webhooks/mist", "application/json", []byte(`{"topic":`), 400, "invalid_json", ""},
		{"no topic", "POST", "/webhooks/mist", "application/json", []byte(`[{"a":1}]`), 400, "bad_envelope", "?topic="},
		{"wrong method", "GET", "/webhooks/mist", "", nil, 405, "method_not_allowed", ""},
		{"wrong media type", "POST", "/webhooks/mist", "application/x-www-form-urlencoded", []byte(`a=b`), 415, "unsupported_media_type", "application/json"},
		{"unknown receiver", "POST", "/webhooks/nope", "application/json", []byte(`{}`), 404, "unknown_receiver", "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, r.url+tt.path, bytes.NewReader(tt.body))
			if tt.ctype != "" {
				req.Header.Set("Content-Type", tt.ctype)
			}
			req.Header.Set("X-Mist-Signature-v2", loadgen.Sign(secret, tt.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body map[string]any
			raw, _ := io.ReadAll(resp.Body)
			_ = json.Unmarshal(raw, &body)
			if resp.StatusCode != tt.want || body["reason"] != tt.reason || !strings.Contains(fmt.Sprint(body["error"]), tt.contains) {
				t.Fatalf("got %d %s, want %d %s containing %q", resp.StatusCode, raw, tt.want, tt.reason, tt.contains)
			}
			if tt.want == 405 && resp.Header.Get("Allow") != "POST" {
				t.Errorf("Allow = %q", resp.Header.Get("Allow"))
			}
		})
	}
	// Nothing of a refused request was published, and a bare body with
	// ?topic= is accepted.
	if msgs := natsMessages(t, r.nats.ClientURL(), "mist.>", 0); len(msgs) != 0 {
		t.Fatalf("refused requests published %d messages", len(msgs))
	}
	body := []byte(`[{"site_id":"s1","x":1},{"site_id":"s2","x":2}]`)
	if a := post(t, r.url+"/webhooks/mist?topic=location", body, signed(body)); a.code != 200 {
		t.Fatalf("bare array with ?topic=: %d %v", a.code, a.body)
	}
	if msgs := natsMessages(t, r.nats.ClientURL(), "mist.location.>", 2); len(msgs) != 2 {
		t.Fatalf("bare array: %d messages, want 2", len(msgs))
	}
}

// TestBackpressure stalls the Kafka broker's produce path, fills the
// in-flight limit, and checks the next request is shed with 429 and
// Retry-After, then that a broker stopped mid-request never yields a 200.
func TestBackpressure(t *testing.T) {
	r := newRig(t, rigOptions{noNATS: true, bridgeVars: map[string]string{
		"MAX_INFLIGHT_EVENTS": "10", "ADMIT_WAIT": "50ms", "DELIVERY_TIMEOUT": "3s", "RETRY_AFTER": "2s",
	}})
	// Warm up: the topic exists and the writer knows the partitions.
	warm := loadgen.Body("device-events", 0, 1)
	if a := post(t, r.url+"/webhooks/mist", warm, signed(warm)); a.code != 200 {
		t.Fatalf("warm-up: %d %v", a.code, a.body)
	}
	stall := stallProduce(r.kafka)
	first := make(chan answer, 1)
	go func() {
		b := loadgen.Body("device-events", 100, 10)
		first <- tryPost(r.url+"/webhooks/mist", b, signed(b))
	}()
	<-stall.stalled
	b := loadgen.Body("device-events", 200, 1)
	a := post(t, r.url+"/webhooks/mist", b, signed(b))
	if a.code != http.StatusTooManyRequests || a.header.Get("Retry-After") != "2" {
		t.Fatalf("full bridge answered %d (Retry-After %q) %v, want 429 with Retry-After 2", a.code, a.header.Get("Retry-After"), a.body)
	}
	stall.release()
	if a := must(t, <-first); a.code != 200 {
		t.Fatalf("stalled request, once released: %d %v", a.code, a.body)
	}

	// Now stop the broker while a request waits on it.
	stall = stallProduce(r.kafka)
	res := make(chan answer, 1)
	go func() {
		b := loadgen.Body("device-events", 300, 5)
		res <- tryPost(r.url+"/webhooks/mist", b, signed(b))
	}()
	<-stall.stalled
	stall.drop()    // the broker dies with the request in it...
	r.kafka.Close() // ...and does not come back
	a = must(t, <-res)
	if a.code/100 == 2 {
		t.Fatalf("broker stopped mid-request, yet the answer is %d %v", a.code, a.body)
	}
	if a.code != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" {
		t.Errorf("broker down: %d (Retry-After %q), want 503 with Retry-After", a.code, a.header.Get("Retry-After"))
	}
	// With the broker still down, the next request fails the same way.
	b = loadgen.Body("device-events", 400, 1)
	if a := post(t, r.url+"/webhooks/mist", b, signed(b)); a.code != http.StatusServiceUnavailable {
		t.Errorf("after the broker died: %d %v, want 503", a.code, a.body)
	}
	// Full while the broker is known down: shed with 503, not 429, so a
	// sender knows the bridge is not merely busy.
	full := make(chan answer, 1)
	go func() {
		b := loadgen.Body("device-events", 500, 10)
		full <- tryPost(r.url+"/webhooks/mist", b, signed(b))
	}()
	waitMetric(t, r.url, "mistbridge_inflight_events 10") // it holds every slot, retrying
	b = loadgen.Body("device-events", 600, 1)
	a = post(t, r.url+"/webhooks/mist", b, signed(b))
	if a.code != http.StatusServiceUnavailable || a.body["reason"] != "brokers_failing" || a.header.Get("Retry-After") != "2" {
		t.Errorf("full with the broker down: %d %v (Retry-After %q), want 503 brokers_failing with Retry-After 2", a.code, a.body, a.header.Get("Retry-After"))
	}
	if a := must(t, <-full); a.code != http.StatusServiceUnavailable {
		t.Errorf("the request holding the slots: %d %v, want 503", a.code, a.body)
	}
}

func TestHealth(t *testing.T) {
	r := newRig(t, rigOptions{})
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(r.url + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s = %d", p, resp.StatusCode)
		}
	}
	r.kafka.Close()
	resp, err := http.Get(r.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(raw), `"kafka"`) {
		t.Errorf("readyz with Kafka down = %d %s, want 503 naming kafka", resp.StatusCode, raw)
	}
}

// BenchmarkHandler measures a signed 10-event batch through the handler
// into both real brokers.
func BenchmarkHandler(b *testing.B) {
	for _, tc := range []struct {
		name string
		o    rigOptions
	}{{"nats", rigOptions{noKafka: true}}, {"kafka", rigOptions{noNATS: true}}} {
		b.Run(tc.name, func(b *testing.B) {
			r := newRig(b, tc.o)
			b.ReportAllocs()
			b.SetParallelism(8)
			var seq int64
			var mu sync.Mutex
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					mu.Lock()
					seq += 10
					n := seq
					mu.Unlock()
					body := loadgen.Body("device-events", int(n), 10)
					a := post(b, r.url+"/webhooks/mist", body, signed(body))
					if a.code != 200 {
						b.Fatalf("%d %v", a.code, a.body)
					}
				}
			})
			b.ReportMetric(float64(b.N*10)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// TestGracefulShutdown stops the server while a request waits on a stalled
// broker: the request is still answered 200 once the broker acks, Serve
// returns, and new connections are refused once the drain delay (0 here;
// see TestDrain) is over.
func TestGracefulShutdown(t *testing.T) {
	log := testLogger(t)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ks, err := kafkasink.New(defaults[kafkasink.Config](t, map[string]string{"BROKERS": c.ListenAddrs()[0]}), log)
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close(context.Background())
	router, _ := bridge.NewRouter("", sinks.NewRetrying(ks, sinks.RetryPolicy{}, nil, log))
	verifier, _ := auth.NewMist([]string{secret})
	srv, err := bridge.New(defaults[bridge.Config](t, map[string]string{"DRAIN_DELAY": "0s"}), bridge.Options{Router: router, Receivers: []*bridge.Receiver{{Name: "mist", Verifier: verifier}}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/webhooks/mist"
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()

	warm := loadgen.Body("device-events", 0, 1)
	if a := post(t, url, warm, signed(warm)); a.code != 200 {
		t.Fatalf("warm-up %d %v", a.code, a.body)
	}
	stall := stallProduce(c)
	res := make(chan answer, 1)
	go func() {
		b := loadgen.Body("device-events", 10, 10)
		res <- tryPost(url, b, signed(b))
	}()
	<-stall.stalled
	cancel() // SIGTERM
	// The listener closes as shutdown begins: wait for that, not a timer.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("new connections are still accepted 5s after shutdown began")
		}
		runtime.Gosched()
	}
	select {
	case err := <-served:
		t.Fatalf("Serve returned %v with a request in flight", err)
	default:
	}
	stall.release()
	if a := must(t, <-res); a.code != 200 || a.body["accepted"] != float64(10) {
		t.Fatalf("in-flight request: %d %v, want 200", a.code, a.body)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if recs := kafkaRecords(t, c, "mist.device-events", 11); len(recs) != 11 {
		t.Fatalf("%d records after shutdown, want 11", len(recs))
	}
}

// TestMaxConnections checks the connection cap: while one connection holds
// the only slot, another client is not served; once it closes, it is.
func TestMaxConnections(t *testing.T) {
	log := testLogger(t)
	emb, err := natssink.StartEmbedded(t.TempDir(), "127.0.0.1:0", log)
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Shutdown()
	ns, err := natssink.New(context.Background(), defaults[natssink.Config](t, map[string]string{"URL": emb.ClientURL()}), log)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close(context.Background())
	router, _ := bridge.NewRouter("", sinks.NewRetrying(ns, sinks.RetryPolicy{}, nil, log))
	verifier, _ := auth.NewMist([]string{secret})
	srv, err := bridge.New(defaults[bridge.Config](t, map[string]string{"MAX_CONNECTIONS": "1"}), bridge.Options{Router: router, Receivers: []*bridge.Receiver{{Name: "mist", Verifier: verifier}}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = srv.Serve(ctx, ln) }()
	holder, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	// Be served once on it, so the server has surely accepted it; it then
	// stays open (keep-alive) and holds the only slot.
	fmt.Fprint(holder, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(holder), nil); err != nil {
		t.Fatalf("the holder was not served: %v", err)
	} else {
		resp.Body.Close()
	}
	client := &http.Client{Timeout: 300 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := client.Get("http://" + ln.Addr().String() + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatalf("served a second connection (%d) while the only slot was held", resp.StatusCode)
	}
	holder.Close()
	client.Timeout = 5 * time.Second
	resp, err := client.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatalf("not served after the slot was freed: %v", err)
	}
	resp.Body.Close()
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// produceStall holds the broker's next produce request, like a broker that
// stops answering. It blocks kfake's request loop rather than using
// SleepControl, whose queue of slept requests races inside kfake when
// several requests on one connection sleep.
type produceStall struct {
	stalled chan struct{} // closed once a produce request is held
	resume  chan bool     // true: answer it normally; false: drop the connection
	done    atomic.Bool
}

func stallProduce(c *kfake.Cluster) *produceStall {
	s := &produceStall{stalled: make(chan struct{}), resume: make(chan bool, 1)}
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		if s.done.Swap(true) {
			return nil, nil, false // only the first request is held
		}
		close(s.stalled)
		if <-s.resume {
			return nil, nil, false
		}
		return nil, errors.New("broker stopped"), true // kfake closes the connection
	})
	return s
}

func (s *produceStall) release() { s.resume <- true }
func (s *produceStall) drop()    { s.resume <- false }

// waitMetric polls /metrics until a line equals want, or fails after 5s.
func waitMetric(t *testing.T, url, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url + "/metrics")
		if err == nil {
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, line := range strings.Split(string(raw), "\n") {
				if line == want {
					return
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("/metrics never showed %q", want)
}
