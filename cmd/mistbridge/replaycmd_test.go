package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mistbridge/mistbridge/bridge"
	"github.com/mistbridge/mistbridge/bridge/archive"
	"github.com/mistbridge/mistbridge/sinks"
	"github.com/mistbridge/mistbridge/sinks/kafkasink"
	"github.com/mistbridge/mistbridge/sinks/natssink"
)

// brokers are a real embedded nats-server (JetStream) and an in-process
// Kafka-protocol broker, with the MISTBRIDGE_ variables that point the
// command at them.
type brokers struct {
	natsURL string
	kafka   *kfake.Cluster
}

func startBrokers(t *testing.T) *brokers {
	t.Helper()
	e, err := natssink.StartEmbedded(t.TempDir(), "127.0.0.1:0", nil)
	if err != nil {
		t.Fatalf("embedded NATS: %v", err)
	}
	t.Cleanup(e.Shutdown)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(1))
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return &brokers{natsURL: e.ClientURL(), kafka: c}
}

// setenv sets the bridge's variables for the test: the brokers, sinks, a
// data dir, and quick retries.
func (b *brokers) setenv(t *testing.T, sinkList string) string {
	t.Helper()
	dataDir := t.TempDir()
	for k, v := range map[string]string{
		"MISTBRIDGE_DATA_DIR":         dataDir,
		"MISTBRIDGE_WEBHOOK_SECRET":   "replay-secret",
		"MISTBRIDGE_SINKS":            sinkList,
		"MISTBRIDGE_NATS_URL":         b.natsURL,
		"MISTBRIDGE_KAFKA_BROKERS":    b.kafka.ListenAddrs()[0],
		"MISTBRIDGE_DELIVERY_TIMEOUT": "5s",
		"MISTBRIDGE_RETRY_INITIAL":    "20ms",
		"MISTBRIDGE_RETRY_MAX":        "200ms",
		"MISTBRIDGE_LOG_LEVEL":        "warn",
	} {
		t.Setenv(k, v)
	}
	return dataDir
}

// testCtx is a context the test bounds.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// bridgeSinks builds the configured sinks as run does, behind the retry
// policy, from the environment the test set.
func bridgeSinks(t *testing.T, cfg config) (*bridge.Router, []sinks.Sink) {
	t.Helper()
	var outs []bridge.Output
	var ss []sinks.Sink
	for _, name := range cfg.Sinks {
		var s sinks.Sink
		var err error
		switch name {
		case "nats":
			s, err = natssink.New(testCtx(t), cfg.NATS, nil)
		case "kafka":
			s, err = kafkasink.New(cfg.Kafka, nil)
		}
		if err != nil {
			t.Fatalf("%s sink: %v", name, err)
		}
		t.Cleanup(func() { _ = s.Close(context.Background()) })
		ss = append(ss, s)
		outs = append(outs, sinks.NewRetrying(s, sinks.RetryPolicy{Initial: cfg.Bridge.RetryInitial, Max: cfg.Bridge.RetryMax}, nil, slog.New(slog.DiscardHandler)))
	}
	router, err := bridge.NewRouter(cfg.Bridge.Routes, outs...)
	if err != nil {
		t.Fatal(err)
	}
	return router, ss
}

func mistSign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// natsIDs reads every message of stream on subjects (a filter) and
// returns their ce-id headers, checking Nats-Msg-Id is the same.
func natsIDs(t *testing.T, url, stream, filter string) []string {
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
	st, err := js.Stream(testCtx(t), stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := st.Info(testCtx(t), jetstream.WithSubjectFilter(filter))
	if err != nil {
		t.Fatal(err)
	}
	var want uint64
	for _, n := range info.State.Subjects {
		want += n
	}
	if want == 0 {
		return nil
	}
	cons, err := st.OrderedConsumer(testCtx(t), jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for uint64(len(ids)) < want {
		msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatalf("reading %s after %d of %d messages: %v", filter, len(ids), want, err)
		}
		id := msg.Headers().Get("ce-id")
		if got := msg.Headers().Get(jetstream.MsgIDHeader); got != id {
			t.Errorf("Nats-Msg-Id %q, ce-id %q: want them equal", got, id)
		}
		ids = append(ids, id)
	}
	return ids
}

// kafkaRecords reads the want records of topic from its start.
func kafkaRecords(t *testing.T, c *kfake.Cluster, topic string, want int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := testCtx(t)
	var out []*kgo.Record
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%s: %d records of %d before the deadline", topic, len(out), want)
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func runCmd(cmd func([]string, *bytes.Buffer, *bytes.Buffer) int, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := cmd(args, &out, &errb)
	return code, out.String(), errb.String()
}

func replay(args ...string) (int, string, string) {
	return runCmd(func(a []string, o, e *bytes.Buffer) int { return replayCommand(a, o, e) }, args...)
}

// TestReplayArchivedBody: a webhook the bridge archived and published is
// published again by `mistbridge replay`, with the CloudEvent ids of the
// first publication, to NATS (whose stream was lost meanwhile) and Kafka
// (where the copies sit next to the originals, for consumers to drop by
// ce_id).
func TestReplayArchivedBody(t *testing.T) {
	b := startBrokers(t)
	dataDir := b.setenv(t, "nats,kafka")
	cfg, _, err := loadConfig(environMap())
	if err != nil {
		t.Fatal(err)
	}
	router, ss := bridgeSinks(t, cfg)
	arc, err := archive.Open(archive.Config{Retention: 24 * time.Hour, Dir: filepath.Join(dataDir, "archive")}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := cfg.Auth.Verifier(nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := bridge.New(cfg.Bridge, bridge.Options{
		Router:    router,
		Receivers: []*bridge.Receiver{{Name: "mist", Verifier: verifier}},
		Archive:   arc,
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()

	body := []byte(`{"topic":"device-events","events":[
		{"org_id":"2818e386-8dec-2562-9ede-5b8a0fbbdc71","site_id":"4ac1dcf4-9d8b-7211-65c4-057819f0862b","timestamp":1772366400,"type":"AP_RESTARTED","mac":"5c5b35000001"},
		{"org_id":"2818e386-8dec-2562-9ede-5b8a0fbbdc71","site_id":"4ac1dcf4-9d8b-7211-65c4-057819f0862b","timestamp":1772366401,"type":"AP_CONNECTED","mac":"5c5b35000002"},
		{"org_id":"2818e386-8dec-2562-9ede-5b8a0fbbdc71","timestamp":1772366402,"type":"AP_DISCONNECTED","mac":"5c5b35000003"}]}`)
	req, _ := http.NewRequest(http.MethodPost, hs.URL+"/webhooks/mist", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Mist-webhook/1.0")
	req.Header.Set("X-Mist-Signature-v2", mistSign("replay-secret", body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST = %d, want 200", resp.StatusCode)
	}
	if err := arc.Close(); err != nil {
		t.Fatal(err)
	}
	for _, s := range ss {
		if err := s.Close(testCtx(t)); err != nil {
			t.Fatal(err)
		}
	}

	// What the first publication put on the brokers.
	natsFirst := natsIDs(t, b.natsURL, "MIST", "mist.device-events.>")
	kafkaFirst := kafkaRecords(t, b.kafka, "mist.device-events", 3)
	var kafkaFirstIDs []string
	for _, r := range kafkaFirst {
		kafkaFirstIDs = append(kafkaFirstIDs, header(r, "ce_id"))
	}
	if len(natsFirst) != 3 || !slices.Equal(sorted(natsFirst), sorted(kafkaFirstIDs)) {
		t.Fatalf("first publication: NATS ids %v, Kafka ids %v: want the same 3", natsFirst, kafkaFirstIDs)
	}

	// The stream is lost.
	nc, err := nats.Connect(b.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	if err := js.DeleteStream(testCtx(t), "MIST"); err != nil {
		t.Fatal(err)
	}
	nc.Close()

	// A dry run reads and counts, and publishes nothing.
	code, out, errs := replay("--since", "-1h", "--dry-run", "--topic", "device-*")
	if code != 0 || !strings.Contains(out, "requests 1, events 3, published 0, failed 0") || !strings.Contains(out, "dry run") {
		t.Fatalf("replay --dry-run = %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	code, out, _ = replay("--since", "-1h", "--dry-run", "--receiver", "other")
	if code != 0 || !strings.Contains(out, "requests 0, events 0") {
		t.Errorf("replay --receiver other = %d: %s", code, out)
	}
	code, out, _ = replay("--since", "-1h", "--dry-run", "--topic", "alarms")
	if code != 0 || !strings.Contains(out, "requests 1, events 0") {
		t.Errorf("replay --topic alarms = %d: %s", code, out)
	}

	// The server archives before it checks the receiver's topics: replay
	// skips what the default receiver does not accept.
	t.Setenv("MISTBRIDGE_TOPICS", "alarms,audits")
	code, out, _ = replay("--since", "-1h", "--dry-run")
	if code != 0 || !strings.Contains(out, "3 events of topics the receiver does not accept") {
		t.Errorf("replay with MISTBRIDGE_TOPICS=alarms,audits = %d: %s", code, out)
	}
	os.Unsetenv("MISTBRIDGE_TOPICS") // t.Setenv restores it at the end

	code, out, errs = replay("--since", time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), "--until", "now")
	if code != 0 || !strings.Contains(out, "requests 1, events 3, published 3, failed 0") {
		t.Fatalf("replay = %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	if strings.Contains(out+errs, "AP_RESTARTED") || strings.Contains(out+errs, "replay-secret") {
		t.Errorf("replay printed a body or a secret:\n%s%s", out, errs)
	}
	if natsAgain := natsIDs(t, b.natsURL, "MIST", "mist.device-events.>"); !slices.Equal(natsAgain, natsFirst) {
		t.Errorf("NATS after replay: ids %v, want the first publication's %v", natsAgain, natsFirst)
	}
	kafkaAll := kafkaRecords(t, b.kafka, "mist.device-events", 6)
	var again []string
	for _, r := range kafkaAll[3:] {
		again = append(again, header(r, "ce_id"))
		if first := kafkaFirst[len(again)-1]; !bytes.Equal(r.Value, first.Value) || !bytes.Equal(r.Key, first.Key) {
			t.Errorf("replayed record %s: key %q value %q, want the first publication's key %q value %q", header(r, "ce_id"), r.Key, r.Value, first.Key, first.Value)
		}
	}
	if !slices.Equal(again, kafkaFirstIDs) {
		t.Errorf("Kafka replay ids %v, want the first publication's %v", again, kafkaFirstIDs)
	}

	// Nothing in a window before the request.
	code, out, _ = replay("--since", "-3h", "--until", "-2h")
	if code != 0 || !strings.Contains(out, "requests 0, events 0, published 0, failed 0") {
		t.Errorf("replay of an empty window = %d: %s", code, out)
	}
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

// TestReplayStopsWhenTheBrokerIsDown: a batch the brokers do not
// acknowledge within MISTBRIDGE_DELIVERY_TIMEOUT stops the replay, with a
// --since that resumes it; a broker down from the start stops it before
// anything is read.
func TestReplayStopsWhenTheBrokerIsDown(t *testing.T) {
	b := startBrokers(t)
	dataDir := b.setenv(t, "kafka")
	t.Setenv("MISTBRIDGE_DELIVERY_TIMEOUT", "1s")
	arc, err := archive.Open(archive.Config{Retention: time.Hour, Dir: filepath.Join(dataDir, "archive")}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	recv := time.Now().Add(-10 * time.Minute).UTC()
	if err := arc.Archive(context.Background(), bridge.ArchiveRecord{Receiver: "mist", Received: recv, Topic: "alarms", Body: []byte(`[{"site_id":"s1","n":1}]`)}); err != nil {
		t.Fatal(err)
	}
	if err := arc.Close(); err != nil {
		t.Fatal(err)
	}
	// Every produce is refused with a transient error, as while a leader moves.
	b.kafka.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		b.kafka.KeepControl()
		preq := req.(*kmsg.ProduceRequest)
		resp := preq.ResponseKind().(*kmsg.ProduceResponse)
		resp.Version = preq.Version
		for _, rt := range preq.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.NotEnoughReplicas.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	code, out, errs := replay("--since", "-1h")
	resume := "resume with --since " + recv.Add(-archive.LateSlack).Format(time.RFC3339Nano)
	if code != 1 || !strings.Contains(out, "requests 1, events 1, published 0, failed 1") || !strings.Contains(errs, resume) {
		t.Fatalf("replay with produce failing = %d\nstdout: %s\nstderr: %s\nwant exit 1, failed 1 and %q", code, out, errs, resume)
	}

	b.kafka.Close()
	code, out, errs = replay("--since", "-1h")
	if code != 1 || !strings.Contains(errs, "not ready") {
		t.Fatalf("replay with the broker gone = %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
}

func TestReplayUsage(t *testing.T) {
	t.Setenv("MISTBRIDGE_DATA_DIR", t.TempDir())
	t.Setenv("MISTBRIDGE_WEBHOOK_SECRET", "s")
	tests := []struct {
		args     []string
		code     int
		out, err string
	}{
		{[]string{"-h"}, 0, "--since TIME", ""},
		{nil, 2, "", "--since is required"},
		{[]string{"--since", "yesterday"}, 2, "", `--since "yesterday": want RFC 3339`},
		{[]string{"--since", "-1h", "--until", "-2h"}, 2, "", "is not before --until"},
		{[]string{"--since", "-1h", "--topic", "["}, 2, "", "--topic"},
		{[]string{"--since", "-1h", "extra"}, 2, "", `unexpected argument "extra"`},
		{[]string{"--since", "-1h", "--dry-run"}, 1, "", "no archive in"},
		{[]string{"--since", "-1h", "--dry-run", "--data-dir", filepath.Join(t.TempDir(), "nothing")}, 1, "", "MISTBRIDGE_ARCHIVE_RETENTION"},
	}
	for _, tt := range tests {
		code, out, errs := replay(tt.args...)
		if code != tt.code || !strings.Contains(out, tt.out) || !strings.Contains(errs, tt.err) {
			t.Errorf("replay %s = %d\nstdout: %s\nstderr: %s\nwant %d, stdout with %q, stderr with %q", strings.Join(tt.args, " "), code, out, errs, tt.code, tt.out, tt.err)
		}
	}
	// A bad variable of the bridge's is a configuration error, named.
	t.Setenv("MISTBRIDGE_DELIVERY_TIMEOUT", "soon")
	if code, _, errs := replay("--since", "-1h"); code != 2 || !strings.Contains(errs, "MISTBRIDGE_DELIVERY_TIMEOUT") {
		t.Errorf("replay with a bad variable = %d: %s", code, errs)
	}
}

func TestReplayParseWhen(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"now", now, true},
		{"-2h", now.Add(-2 * time.Hour), true},
		{"-90m", now.Add(-90 * time.Minute), true},
		{"-7d", now.Add(-7 * 24 * time.Hour), true},
		{"2026-02-28T10:00:00Z", time.Date(2026, 2, 28, 10, 0, 0, 0, time.UTC), true},
		{"2026-02-28T10:00:00.5+01:00", time.Date(2026, 2, 28, 9, 0, 0, 500e6, time.UTC), true},
		{"2h", time.Time{}, false},
		{"--2h", time.Time{}, false},
		{"-d", time.Time{}, false},
		{"2026-02-28", time.Time{}, false},
	}
	for _, tt := range tests {
		got, err := parseWhen(tt.in, now)
		if (err == nil) != tt.ok || tt.ok && !got.Equal(tt.want) {
			t.Errorf("parseWhen(%q) = %v, %v; want %v (ok %v)", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestReplayProgressLine(t *testing.T) {
	if got := formatETA(256<<10, 1<<20, 10*time.Second); got != "25% of 1.0 MiB, ETA 30s" {
		t.Errorf("formatETA = %q", got)
	}
	if got := formatETA(0, 1<<20, time.Second); got != "0% of 1.0 MiB, ETA -" {
		t.Errorf("formatETA at the start = %q", got)
	}
	if got := formatRate(500, 2*time.Second, "events"); got != "250 events/s" {
		t.Errorf("formatRate = %q", got)
	}
	// Not a terminal: no progress at all.
	var b bytes.Buffer
	p := newProgress(&b)
	if p.due() {
		p.show("x")
	}
	p.clear()
	if b.Len() != 0 {
		t.Errorf("progress drew %q on a buffer", b.String())
	}
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) {
		t.Error("a file is a terminal")
	}
}
