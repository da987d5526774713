package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"
	cejs "github.com/cloudevents/sdk-go/protocol/nats_jetstream/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/mistbridge/mistbridge/codec"
	"github.com/mistbridge/mistbridge/sinks/kafkasink"
	"github.com/mistbridge/mistbridge/sinks/natssink"
)

// tailFixtures are the events the tail tests publish, in this order.
var tailFixtures = []struct{ topic, raw string }{
	{"device-events", `{"org_id":"org-1","site_id":"site-a","timestamp":1700000000,"type":"AP_RESTARTED","mac":"5c5b35000001","text":"AP restarted by user"}`},
	{"device-events", `{"org_id":"org-1","site_id":"site-b","timestamp":1700000060,"type":"AP_DISCONNECTED","mac":"5c5b35000002"}`},
	{"client-join", `{"org_id":"org-2","site_id":"site-a","timestamp":1700000120,"mac":"ac3743a00001","rssi":-60}`},
	// An org id that is not a clean subject token, a site with spaces, and
	// none of the members a line picks out: the line shows the data.
	{"alarms", `{"org_id":"org.odd/id","site_id":"Site With Spaces","timestamp":1700000180,"severity":"warn","count":3}`},
	// No site, no timestamp, and a text that would colour a terminal.
	{"audits", `{"org_id":"org-1","text":"red \u001b[31malert"}`},
}

// tailLines are the lines tail prints for tailFixtures, written by hand:
// the oracle of the readable format.
var tailLines = []string{
	`2023-11-14T22:13:20Z device-events site=site-a type=AP_RESTARTED mac=5c5b35000001 text="AP restarted by user"`,
	`2023-11-14T22:14:20Z device-events site=site-b type=AP_DISCONNECTED mac=5c5b35000002`,
	`2023-11-14T22:15:20Z client-join site=site-a mac=ac3743a00001`,
	`2023-11-14T22:16:20Z alarms site="Site With Spaces" {"org_id":"org.odd/id","site_id":"Site With Spaces","timestamp":1700000180,"seve…`,
	`- audits site=- text="red \x1b[31malert"`,
}

func tailEvent(topic, raw string) *codec.Event {
	ev := codec.Map(topic, []byte(raw))
	return &ev
}

func tailFixtureEvents(idx ...int) []*codec.Event {
	if idx == nil {
		for i := range tailFixtures {
			idx = append(idx, i)
		}
	}
	out := make([]*codec.Event, len(idx))
	for i, k := range idx {
		out[i] = tailEvent(tailFixtures[k].topic, tailFixtures[k].raw)
	}
	return out
}

func tailTestCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// tailBuffer is an output that tests can wait on.
type tailBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{}
}

func newTailBuffer() *tailBuffer { return &tailBuffer{changed: make(chan struct{})} }

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	close(b.changed)
	b.changed = make(chan struct{})
	return b.b.Write(p)
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func (b *tailBuffer) lines() []string {
	s := strings.TrimSuffix(b.String(), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// waitFor waits until the output contains s; false when ctx ends first.
func (b *tailBuffer) waitFor(ctx context.Context, s string) bool {
	for {
		b.mu.Lock()
		ok, ch := strings.Contains(b.b.String(), s), b.changed
		b.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// tailRun is one run of tail in the background.
type tailRun struct {
	stdout, stderr *tailBuffer
	cancel         context.CancelFunc
	done           chan int
}

// startTail runs tail with args and environ until it stops or ctx ends,
// and waits until it says it is reading.
func startTail(t *testing.T, ctx context.Context, args []string, environ map[string]string, onRead func(read, shown int)) *tailRun {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	r := &tailRun{stdout: newTailBuffer(), stderr: newTailBuffer(), cancel: cancel, done: make(chan int, 1)}
	go func() { r.done <- runTail(ctx, args, environ, r.stdout, r.stderr, onRead) }()
	t.Cleanup(func() { cancel(); <-r.done })
	ready := "tail: subscribed to "
	if slices.Contains(args, "--kafka") {
		ready = "tail: reading Kafka "
	}
	waitCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		select {
		case code := <-r.done:
			r.done <- code // keep it for wait
			stop()
		case <-waitCtx.Done():
		}
	}()
	if !r.stderr.waitFor(waitCtx, ready) {
		t.Fatalf("tail %q did not start; stderr:\n%s", args, r.stderr)
	}
	return r
}

// wait returns tail's exit code once it has stopped by itself.
func (r *tailRun) wait(t *testing.T, ctx context.Context) int {
	t.Helper()
	select {
	case code := <-r.done:
		r.done <- code
		return code
	case <-ctx.Done():
		t.Fatalf("tail did not stop; stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
		return -1
	}
}

// stop cancels tail and returns its exit code.
func (r *tailRun) stop(t *testing.T, ctx context.Context) int {
	t.Helper()
	r.cancel()
	return r.wait(t, ctx)
}

// tailNATSServer starts an embedded nats-server and a natssink on it
// configured from vars as the bridge configures it (JetStream by default).
func tailNATSServer(t *testing.T, vars map[string]string) (*natssink.Embedded, *natssink.Sink) {
	t.Helper()
	emb, err := natssink.StartEmbedded(t.TempDir(), "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	environ := map[string]string{"URL": emb.ClientURL()}
	for k, v := range vars {
		environ[k] = v
	}
	var cfg natssink.Config
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: environ}); err != nil {
		t.Fatal(err)
	}
	s, err := natssink.New(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return emb, s
}

func TestTailNATSFilters(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []int // indexes of tailFixtures shown, in order
		// marker is an event that matches the filter, published last: tail
		// stops on it (--count), so anything the filter let through wrongly
		// shows before it.
		marker     [4]string // topic, org, site, the line tail prints for it
		core       bool      // the sink publishes with core NATS, not JetStream
		embeddedOf bool      // find the server through MISTBRIDGE_NATS_EMBEDDED_ADDR
	}{
		{name: "everything", want: []int{0, 1, 2, 3, 4},
			marker: [4]string{"device-events", "org-1", "site-z", `2023-11-14T22:18:20Z device-events site=site-z type=END`}},
		{name: "core NATS through the embedded address", want: []int{0, 1, 2, 3, 4}, core: true, embeddedOf: true,
			marker: [4]string{"device-events", "org-1", "site-z", `2023-11-14T22:18:20Z device-events site=site-z type=END`}},
		{name: "topic", args: []string{"--topic", "device-events"}, want: []int{0, 1},
			marker: [4]string{"device-events", "org-9", "site-z", `2023-11-14T22:18:20Z device-events site=site-z type=END`}},
		{name: "org", args: []string{"--org", "org-1"}, want: []int{0, 1, 4},
			marker: [4]string{"zone", "org-1", "site-z", `2023-11-14T22:18:20Z zone site=site-z type=END`}},
		{name: "site", args: []string{"--site", "site-a"}, want: []int{0, 2},
			marker: [4]string{"zone", "org-9", "site-a", `2023-11-14T22:18:20Z zone site=site-a type=END`}},
		{name: "org that is not a clean token", args: []string{"--org", "org.odd/id"}, want: []int{3},
			marker: [4]string{"zone", "org.odd/id", "site-z", `2023-11-14T22:18:20Z zone site=site-z type=END`}},
		{name: "site with spaces", args: []string{"--site", "Site With Spaces"}, want: []int{3},
			marker: [4]string{"zone", "org-9", "Site With Spaces", `2023-11-14T22:18:20Z zone site="Site With Spaces" type=END`}},
		{name: "topic and site", args: []string{"--topic", "device-events", "--site", "site-b"}, want: []int{1},
			marker: [4]string{"device-events", "org-9", "site-b", `2023-11-14T22:18:20Z device-events site=site-b type=END`}},
		{name: "two topics", args: []string{"--topic", "alarms,client-join"}, want: []int{2, 3},
			marker: [4]string{"alarms", "org-9", "site-z", `2023-11-14T22:18:20Z alarms site=site-z type=END`}},
		{name: "topic and org, event without site", args: []string{"--topic=audits", "--org=org-1"}, want: []int{4},
			marker: [4]string{"audits", "org-1", "site-z", `2023-11-14T22:18:20Z audits site=site-z type=END`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tailTestCtx(t)
			vars := map[string]string{}
			if tc.core {
				vars["JETSTREAM"] = "false"
			}
			emb, sink := tailNATSServer(t, vars)
			environ := map[string]string{"MISTBRIDGE_NATS_URL": emb.ClientURL()}
			if tc.embeddedOf {
				_, port, _ := net.SplitHostPort(strings.TrimPrefix(emb.ClientURL(), "nats://"))
				environ = map[string]string{"MISTBRIDGE_NATS_EMBEDDED_ADDR": "0.0.0.0:" + port}
			}
			args := append([]string{"--count", fmt.Sprint(len(tc.want) + 1)}, tc.args...)
			run := startTail(t, ctx, args, environ, nil)

			marker := tailEvent(tc.marker[0], fmt.Sprintf(`{"org_id":%q,"site_id":%q,"timestamp":1700000300,"type":"END"}`, tc.marker[1], tc.marker[2]))
			if err := sink.Write(ctx, append(tailFixtureEvents(), marker)); err != nil {
				t.Fatalf("publish: %v", err)
			}
			if code := run.wait(t, ctx); code != 0 {
				t.Fatalf("exit code %d; stderr:\n%s", code, run.stderr)
			}
			var want []string
			for _, k := range tc.want {
				want = append(want, tailLines[k])
			}
			want = append(want, tc.marker[3])
			if got := run.stdout.lines(); !slices.Equal(got, want) {
				t.Errorf("tail %q printed\n%s\nwant\n%s", tc.args, strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if !strings.Contains(run.stderr.String(), fmt.Sprintf("tail: %d events shown", len(want))) {
				t.Errorf("stderr has no summary:\n%s", run.stderr)
			}
		})
	}
}

// tailWantJSON is the first fixture as the structured JSON form of its
// CloudEvent, written by hand; the id is the codec's (its golden tests
// hold it).
func tailWantJSON(t *testing.T) map[string]any {
	t.Helper()
	want := fmt.Sprintf(`{
		"specversion": "1.0",
		"id": %q,
		"source": "/mist/orgs/org-1/sites/site-a",
		"type": "com.juniper.mist.device-events",
		"datacontenttype": "application/json",
		"time": "2023-11-14T22:13:20Z",
		"mistorg": "org-1",
		"mistsite": "site-a",
		"misttopic": "device-events",
		"partitionkey": "site-a",
		"data": {"org_id":"org-1","site_id":"site-a","timestamp":1700000000,"type":"AP_RESTARTED","mac":"5c5b35000001","text":"AP restarted by user"}
	}`, tailFixtureEvents(0)[0].ID)
	var m map[string]any
	if err := json.Unmarshal([]byte(want), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// checkTailJSON checks that every line is a valid CloudEvent in JSON with
// the id and data of the fixture it stands for, and that the first
// fixture's is exactly tailWantJSON. Lines may come in any order. From a
// binary-mode Kafka record (kafkaBinary), the SDK's kafka_sarama binding
// adds the extensions kafkatopic, kafkapartition and kafkaoffset: they
// must be there, and are then left out of the comparison.
func checkTailJSON(t *testing.T, lines []string, fixtures []int, kafkaBinary bool) {
	t.Helper()
	if len(lines) != len(fixtures) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(fixtures), strings.Join(lines, "\n"))
	}
	byID := map[string]int{}
	for _, k := range fixtures {
		byID[tailFixtureEvents(k)[0].ID] = k
	}
	for _, line := range lines {
		var ev event.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("line is not a CloudEvent: %v\n%s", err, line)
		}
		if err := ev.Validate(); err != nil {
			t.Errorf("invalid CloudEvent %s: %v", line, err)
		}
		k, ok := byID[ev.ID()]
		if !ok {
			t.Errorf("unexpected event %s", line)
			continue
		}
		delete(byID, ev.ID())
		var got, data map[string]any
		if err := json.Unmarshal([]byte(line), &got); err != nil {
			t.Fatal(err)
		}
		if kafkaBinary {
			if got["kafkatopic"] != "mist."+tailFixtures[k].topic || got["kafkapartition"] == nil || got["kafkaoffset"] == nil {
				t.Errorf("event %d: kafkatopic %v, kafkapartition %v, kafkaoffset %v", k, got["kafkatopic"], got["kafkapartition"], got["kafkaoffset"])
			}
			delete(got, "kafkatopic")
			delete(got, "kafkapartition")
			delete(got, "kafkaoffset")
		}
		if err := json.Unmarshal([]byte(tailFixtures[k].raw), &data); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got["data"], data) {
			t.Errorf("event %d: data %v, want %v", k, got["data"], data)
		}
		if k == 0 {
			if want := tailWantJSON(t); !reflect.DeepEqual(got, want) {
				t.Errorf("event 0:\n got %v\nwant %v", got, want)
			}
		}
	}
}

func TestTailNATSJSON(t *testing.T) {
	ctx := tailTestCtx(t)
	emb, sink := tailNATSServer(t, nil)
	run := startTail(t, ctx, []string{"--json", "--count=5"}, map[string]string{"MISTBRIDGE_NATS_URL": emb.ClientURL()}, nil)
	if err := sink.Write(ctx, tailFixtureEvents()); err != nil {
		t.Fatal(err)
	}
	if code := run.wait(t, ctx); code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", code, run.stderr)
	}
	checkTailJSON(t, run.stdout.lines(), []int{0, 1, 2, 3, 4}, false)
}

// startTailKafka starts a kfake cluster and the bridge's Kafka sink on it
// in mode, configured from the variables vars adds (KAFKA_ unprefixed).
func startTailKafka(t *testing.T, mode string, vars map[string]string, opts ...kfake.Opt) (*kfake.Cluster, *kafkasink.Sink) {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(3)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	var cfg kafkasink.Config
	environ := map[string]string{"BROKERS": strings.Join(c.ListenAddrs(), ","), "WRITE_TIMEOUT": "5s", "CONTENT_MODE": mode}
	for k, v := range vars {
		environ[k] = v
	}
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: environ}); err != nil {
		t.Fatal(err)
	}
	s, err := kafkasink.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return c, s
}

func TestTailKafkaFilters(t *testing.T) {
	ctx := tailTestCtx(t)
	c, sink := startTailKafka(t, "binary", nil)
	if err := sink.Write(ctx, tailFixtureEvents()); err != nil {
		t.Fatal(err)
	}
	brokers := strings.Join(c.ListenAddrs(), ",")
	tests := []struct {
		name string
		args []string
		want []int // fixtures shown, in any order (partitions interleave)
		read int   // records in the topics read
	}{
		{name: "everything", want: []int{0, 1, 2, 3, 4}, read: 5},
		{name: "topic", args: []string{"--topic", "device-events"}, want: []int{0, 1}, read: 2},
		{name: "org", args: []string{"--org", "org-1"}, want: []int{0, 1, 4}, read: 5},
		{name: "site with spaces", args: []string{"--site", "Site With Spaces"}, want: []int{3}, read: 5},
		{name: "odd org and site", args: []string{"--org", "org.odd/id", "--site", "Site With Spaces"}, want: []int{3}, read: 5},
		{name: "topics and site", args: []string{"--topic", "device-events", "--topic", "client-join", "--site", "site-a"}, want: []int{0, 2}, read: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tailTestCtx(t)
			allRead := make(chan struct{})
			var once sync.Once
			onRead := func(read, _ int) {
				if read == tc.read {
					once.Do(func() { close(allRead) })
				}
			}
			args := append([]string{"--kafka", "--from-beginning", "--brokers", brokers}, tc.args...)
			run := startTail(t, ctx, args, map[string]string{}, onRead)
			select {
			case <-allRead:
			case <-ctx.Done():
				t.Fatalf("tail did not read %d records; stdout:\n%s\nstderr:\n%s", tc.read, run.stdout, run.stderr)
			}
			if code := run.stop(t, ctx); code != 0 {
				t.Fatalf("exit code %d; stderr:\n%s", code, run.stderr)
			}
			var want []string
			for _, k := range tc.want {
				want = append(want, tailLines[k])
			}
			got := run.stdout.lines()
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("tail %q printed\n%s\nwant\n%s", tc.args, strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if s := fmt.Sprintf("tail: %d events shown (%d records read)", len(want), tc.read); !strings.Contains(run.stderr.String(), s) {
				t.Errorf("stderr has no %q:\n%s", s, run.stderr)
			}
		})
	}
}

// Binary and structured records read back as the same CloudEvents.
func TestTailKafkaJSON(t *testing.T) {
	for _, mode := range []string{"binary", "structured"} {
		t.Run(mode, func(t *testing.T) {
			ctx := tailTestCtx(t)
			c, sink := startTailKafka(t, mode, nil)
			if err := sink.Write(ctx, tailFixtureEvents()); err != nil {
				t.Fatal(err)
			}
			environ := map[string]string{"MISTBRIDGE_KAFKA_BROKERS": strings.Join(c.ListenAddrs(), ",")}
			run := startTail(t, ctx, []string{"--kafka", "--from-beginning", "--json", "--count", "5"}, environ, nil)
			if code := run.wait(t, ctx); code != 0 {
				t.Fatalf("exit code %d; stderr:\n%s", code, run.stderr)
			}
			checkTailJSON(t, run.stdout.lines(), []int{0, 1, 2, 3, 4}, mode == "binary")
		})
	}
}

// By default tail shows what is published after it started, in the
// topics that existed then and in those created later.
func TestTailKafkaFromNow(t *testing.T) {
	ctx := tailTestCtx(t)
	c, sink := startTailKafka(t, "binary", nil)
	if err := sink.Write(ctx, tailFixtureEvents(0, 1)); err != nil {
		t.Fatal(err)
	}
	// The records' timestamps are taken before Write returns: once the
	// clock has passed that millisecond, they are older than tail's start.
	for ms := time.Now().UnixMilli(); time.Now().UnixMilli() <= ms; {
	}
	environ := map[string]string{"MISTBRIDGE_KAFKA_BROKERS": strings.Join(c.ListenAddrs(), ",")}
	run := startTail(t, ctx, []string{"--kafka", "--count", "2"}, environ, nil)
	// device-events exists already; alarms is created now.
	again := tailEvent("device-events", `{"org_id":"org-1","site_id":"site-a","timestamp":1700000240,"type":"AP_RESTARTED","mac":"5c5b35000001","text":"again"}`)
	if err := sink.Write(ctx, []*codec.Event{tailFixtureEvents(3)[0], again}); err != nil {
		t.Fatal(err)
	}
	if code := run.wait(t, ctx); code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", code, run.stderr)
	}
	want := []string{
		tailLines[3],
		`2023-11-14T22:17:20Z device-events site=site-a type=AP_RESTARTED mac=5c5b35000001 text=again`,
	}
	got := run.stdout.lines()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("tail printed\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// tail authenticates with the bridge's SASL variables; a wrong password
// stops it with exit code 1 and is not printed.
func TestTailKafkaSASL(t *testing.T) {
	ctx := tailTestCtx(t)
	c, sink := startTailKafka(t, "binary", map[string]string{"SASL_MECHANISM": "PLAIN", "SASL_USERNAME": "bridge", "SASL_PASSWORD": "bridge-pw"},
		kfake.EnableSASL(), kfake.Superuser("PLAIN", "bridge", "bridge-pw"), kfake.Superuser("SCRAM-SHA-256", "reader", "reader-pw"))
	if err := sink.Write(ctx, tailFixtureEvents(0, 1)); err != nil {
		t.Fatal(err)
	}
	environ := map[string]string{
		"MISTBRIDGE_KAFKA_BROKERS":        strings.Join(c.ListenAddrs(), ","),
		"MISTBRIDGE_KAFKA_SASL_MECHANISM": "scram-sha-256",
		"MISTBRIDGE_KAFKA_SASL_USERNAME":  "reader",
		"MISTBRIDGE_KAFKA_SASL_PASSWORD":  "reader-pw",
	}
	run := startTail(t, ctx, []string{"--kafka", "--from-beginning", "--count", "2"}, environ, nil)
	if code := run.wait(t, ctx); code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", code, run.stderr)
	}
	got := run.stdout.lines()
	slices.Sort(got)
	if want := tailLines[:2]; !slices.Equal(got, want) {
		t.Errorf("tail printed\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	environ["MISTBRIDGE_KAFKA_SASL_PASSWORD"] = "not-the-reader-pw"
	var stdout, stderr bytes.Buffer
	code := runTail(ctx, []string{"--kafka"}, environ, &stdout, &stderr, nil)
	if code != 1 || !strings.Contains(stderr.String(), "reach Kafka at") {
		t.Errorf("wrong password: code %d, stderr:\n%s", code, stderr.String())
	}
	if strings.Contains(stdout.String()+stderr.String(), "not-the-reader-pw") {
		t.Errorf("the password is printed:\n%s", stderr.String())
	}
}

// SIGINT stops tail with exit code 0, through tailCommand's own signal
// handling and the real environment.
func TestTailStopsOnSIGINT(t *testing.T) {
	ctx := tailTestCtx(t)
	emb, sink := tailNATSServer(t, nil)
	t.Setenv("MISTBRIDGE_NATS_URL", emb.ClientURL())
	stdout, stderr := newTailBuffer(), newTailBuffer()
	done := make(chan int, 1)
	go func() { done <- tailCommand(nil, stdout, stderr) }()
	if !stderr.waitFor(ctx, "tail: subscribed to mist.>") {
		t.Fatalf("tail did not start; stderr:\n%s", stderr)
	}
	if err := sink.Write(ctx, tailFixtureEvents(0)); err != nil {
		t.Fatal(err)
	}
	if !stdout.waitFor(ctx, tailLines[0]) {
		t.Fatalf("tail printed %q", stdout)
	}
	// tailCommand holds SIGINT (signal.NotifyContext) from before it
	// printed that it subscribed, so this does not end the test binary.
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code %d after SIGINT; stderr:\n%s", code, stderr)
		}
	case <-ctx.Done():
		t.Fatal("tail did not stop on SIGINT")
	}
	if !strings.Contains(stderr.String(), "tail: 1 events shown") {
		t.Errorf("stderr:\n%s", stderr)
	}
}

func TestTailUsageAndConfigErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String() // nothing listens there once closed
	ln.Close()
	tests := []struct {
		name     string
		args     []string
		environ  map[string]string
		code     int
		stderr   string
		unwanted string
	}{
		{name: "negative count", args: []string{"--count", "-1"}, code: 2, stderr: "--count=-1"},
		{name: "colour mode", args: []string{"--color", "pink"}, code: 2, stderr: `--color="pink"`},
		{name: "history on NATS", args: []string{"--from-beginning"}, code: 2, stderr: "--from-beginning needs --kafka"},
		{name: "brokers without kafka", args: []string{"--brokers", "k:9092"}, code: 2, stderr: "--brokers needs --kafka"},
		{name: "stray argument", args: []string{"device-events"}, code: 2, stderr: `unexpected argument "device-events"`},
		{name: "bad topic", args: []string{"--topic", "a.b"}, code: 2, stderr: `--topic "a.b"`},
		{name: "no brokers", args: []string{"--kafka"}, environ: map[string]string{}, code: 2, stderr: "MISTBRIDGE_KAFKA_BROKERS"},
		{name: "bad NATS URL", environ: map[string]string{"MISTBRIDGE_NATS_URL": "http://x:4222"}, code: 2, stderr: "MISTBRIDGE_NATS_URL"},
		{name: "bad variable", environ: map[string]string{"MISTBRIDGE_NATS_JETSTREAM": "maybe"}, code: 2, stderr: "MISTBRIDGE_NATS_JETSTREAM"},
		{name: "Kafka down", args: []string{"--kafka", "--brokers", closed}, code: 1, stderr: "reach Kafka at " + closed},
		{name: "NATS down, password hidden", environ: map[string]string{"MISTBRIDGE_NATS_URL": "nats://u:s3cret-pw@" + closed},
			code: 1, stderr: "connect to NATS at nats://<redacted>@" + closed, unwanted: "s3cret-pw"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tailTestCtx(t)
			var stdout, stderr bytes.Buffer
			code := runTail(ctx, tc.args, tc.environ, &stdout, &stderr, nil)
			if code != tc.code || !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("code %d, stderr:\n%s\nwant code %d and %q", code, stderr.String(), tc.code, tc.stderr)
			}
			if tc.unwanted != "" && strings.Contains(stdout.String()+stderr.String(), tc.unwanted) {
				t.Errorf("output shows %q:\n%s", tc.unwanted, stderr.String())
			}
		})
	}
	var stdout, stderr bytes.Buffer
	if code := runTail(context.Background(), []string{"-h"}, nil, &stdout, &stderr, nil); code != 0 || !strings.Contains(stdout.String(), "Usage: mistbridge tail") {
		t.Errorf("-h: code %d, stdout %q", code, stdout.String())
	}
}

func TestTailColour(t *testing.T) {
	ev := tailEvent(tailFixtures[0].topic, tailFixtures[0].raw).CloudEvent()
	var out bytes.Buffer
	p := &tailPrinter{w: &out, color: true}
	if err := p.print(&ev); err != nil {
		t.Fatal(err)
	}
	want := "\x1b[2m2023-11-14T22:13:20Z\x1b[0m \x1b[36mdevice-events\x1b[0m site=\x1b[33msite-a\x1b[0m " +
		`type=AP_RESTARTED mac=5c5b35000001 text="AP restarted by user"` + "\n"
	if out.String() != want {
		t.Errorf("coloured line %q\nwant %q", out.String(), want)
	}

	f, err := os.Create(t.TempDir() + "/out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, tc := range []struct {
		mode    string
		environ map[string]string
		want    bool
	}{
		{"auto", nil, false}, // a file is not a terminal
		{"always", nil, true},
		{"always", map[string]string{"NO_COLOR": "1"}, true},
		{"never", nil, false},
	} {
		if got := tailUseColor(f, tc.mode, tc.environ); got != tc.want {
			t.Errorf("tailUseColor(file, %s, %v) = %v", tc.mode, tc.environ, got)
		}
	}
}

func TestTailSubjectsAndTopics(t *testing.T) {
	long := strings.Repeat("s", 70)
	tests := []struct {
		o    tailOptions
		want []string
	}{
		{tailOptions{}, []string{"mist.>"}},
		{tailOptions{topics: []string{"device-events"}}, []string{"mist.device-events.*.*"}},
		{tailOptions{org: "o1", orgSet: true}, []string{"mist.*.o1.*"}},
		{tailOptions{site: "a b", siteSet: true, topics: []string{"x", "y"}}, []string{
			"mist.x.*." + codec.SubjectToken("a b", true), "mist.y.*." + codec.SubjectToken("a b", true)}},
		{tailOptions{site: long, siteSet: true}, []string{"mist.*.*." + codec.SubjectToken(long, true)}},
	}
	for _, tc := range tests {
		if got := tailNatsSubjects("mist", tc.o); !slices.Equal(got, tc.want) {
			t.Errorf("tailNatsSubjects(%+v) = %q, want %q", tc.o, got, tc.want)
		}
	}
	if got, want := tailKafkaTopicRegex("mist.{topic}"), `^mist\.[A-Za-z0-9_-]+$`; got != want {
		t.Errorf("regex %q, want %q", got, want)
	}
	if got, want := tailEmbeddedURL("0.0.0.0:4222"), "nats://127.0.0.1:4222"; got != want {
		t.Errorf("embedded URL %q, want %q", got, want)
	}
}

// The bridge percent-encodes NATS header values (the NATS binding, section
// 3.1.3.2); the SDK's nats_jetstream binding does not decode them, so tail
// does. When this test fails on the SDK's reading, the SDK decodes by
// itself and tailPercentDecoded can go.
func TestTailPercentDecodesNATSHeaders(t *testing.T) {
	ev := tailFixtureEvents(3)[0]
	h, data, err := codec.NATSMessage(context.Background(), ev, codec.Binary)
	if err != nil {
		t.Fatal(err)
	}
	msg := &nats.Msg{Subject: codec.Subject("mist", ev), Header: nats.Header(h), Data: data}
	sdk, err := binding.ToEvent(context.Background(), cejs.NewMessage(msg))
	if err != nil {
		t.Fatal(err)
	}
	if got := tailExtension(sdk, codec.ExtSite); got != "Site%20With%20Spaces" {
		t.Errorf("the SDK alone reads mistsite %q; it used to read the encoded form", got)
	}
	e, err := binding.ToEvent(context.Background(), cejs.NewMessage(tailPercentDecoded(msg)))
	if err != nil {
		t.Fatal(err)
	}
	if got := tailExtension(e, codec.ExtSite); got != "Site With Spaces" {
		t.Errorf("mistsite %q, want %q", got, "Site With Spaces")
	}
	if got, want := e.Source(), "/mist/orgs/org.odd%2Fid/sites/Site%20With%20Spaces"; got != want {
		t.Errorf("source %q, want %q", got, want)
	}
	if got := tailExtension(e, codec.ExtOrg); got != "org.odd/id" {
		t.Errorf("mistorg %q", got)
	}
}
