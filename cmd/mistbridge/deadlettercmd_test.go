package main

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mistbridge/mistbridge/codec"
	"github.com/mistbridge/mistbridge/sinks"
)

func deadletter(args ...string) (int, string, string) {
	return runCmd(func(a []string, o, e *bytes.Buffer) int { return deadletterCommand(a, o, e) }, args...)
}

// oversized is an event of about 4 KiB, more than the event destinations
// of these tests take (2 KiB) until "the fix"; small is one that fits.
func oversized() (big, small codec.Event) {
	big = codec.Map("device-events", []byte(`{"org_id":"org-1","site_id":"site-1","timestamp":1772366400,"type":"AP_CONFIG_CHANGED","config":"`+strings.Repeat("c", 4096)+`"}`))
	small = codec.Map("device-events", []byte(`{"org_id":"org-1","site_id":"site-1","timestamp":1772366401,"type":"AP_RESTARTED"}`))
	return big, small
}

// deliver sends events through the bridge's delivery policy
// (sinks.Retrying) for the sink the test configured: a permanent refusal
// goes to the dead letter, and Deliver returns nil.
func deliver(t *testing.T, evs ...codec.Event) {
	t.Helper()
	cfg, _, err := loadConfig(environMap())
	if err != nil {
		t.Fatal(err)
	}
	router, ss := bridgeSinks(t, cfg)
	ptrs := make([]*codec.Event, len(evs))
	for i := range evs {
		ptrs[i] = &evs[i]
	}
	if err := router.Deliver(testCtx(t), ptrs); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	for _, s := range ss {
		if err := s.Close(testCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
}

// checkList: `deadletter list` shows the one dead letter, of event id,
// refused by sink for its size, in a table and in JSON lines.
func checkList(t *testing.T, sink, id, where string) {
	t.Helper()
	code, out, errs := deadletter("list")
	if code != 0 {
		t.Fatalf("deadletter list = %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ID") {
		t.Fatalf("deadletter list printed %q, want a header and one dead letter", out)
	}
	for _, want := range []string{id, sink, "com.juniper.mist.device-events"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("deadletter list line %q lacks %q", lines[1], want)
		}
	}
	code, out, errs = deadletter("list", "--json")
	if code != 0 {
		t.Fatalf("deadletter list --json = %d: %s", code, errs)
	}
	var d deadLetter
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("deadletter list --json printed %q: %v", out, err)
	}
	if d.ID != id || d.Sink != sink || d.Topic != "device-events" || d.Reason == "" || !strings.Contains(d.Where, where) ||
		time.Since(d.Time) > time.Minute || d.EventTime.Unix() != 1772366400 || d.Bytes < 4096 {
		t.Errorf("deadletter list --json = %+v", d)
	}
	if code, out, _ := deadletter("list", "--limit", "1", "--sink", sink); code != 0 || !strings.Contains(out, id) {
		t.Errorf("deadletter list --limit 1 --sink %s = %d: %s", sink, code, out)
	}
}

// TestDeadletterKafka: an event Kafka refuses for its size goes to the
// dead-letter topic through sinks.Retrying; `deadletter list` shows it;
// `deadletter replay` before the fix reports it refused again and leaves
// it there (no second dead letter), and after the topic takes larger
// records publishes it, with its CloudEvent id, key and data.
func TestDeadletterKafka(t *testing.T) {
	b := startBrokers(t)
	b.setenv(t, "kafka")
	const topic = "mist.device-events"
	admin, err := kgo.NewClient(kgo.SeedBrokers(b.kafka.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	create := kmsg.NewPtrCreateTopicsRequest()
	ct := kmsg.NewCreateTopicsRequestTopic()
	ct.Topic, ct.NumPartitions, ct.ReplicationFactor = topic, 1, 1
	cc := kmsg.NewCreateTopicsRequestTopicConfig()
	cc.Name, cc.Value = "max.message.bytes", kmsg.StringPtr("2048")
	ct.Configs = append(ct.Configs, cc)
	create.Topics = append(create.Topics, ct)
	cresp, err := create.RequestWith(testCtx(t), admin)
	if err != nil || kerr.ErrorForCode(cresp.Topics[0].ErrorCode) != nil {
		t.Fatalf("create %s: %v %v", topic, err, cresp)
	}

	big, small := oversized()
	deliver(t, small, big)
	checkList(t, "kafka", big.ID, "topic mistbridge.deadletter partition 0 offset 0")

	// Before the fix: refused again, reported, still one dead letter.
	code, out, errs := deadletter("replay", "--all")
	if code != 1 || !strings.Contains(out, "replayed 0, failed 1") || !strings.Contains(errs, big.ID+" refused again by kafka") ||
		!strings.Contains(out, "never deletes") {
		t.Fatalf("deadletter replay before the fix = %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	if got := kafkaRecords(t, b.kafka, "mistbridge.deadletter", 1); len(got) != 1 {
		t.Fatalf("%d dead letters", len(got))
	}

	// The fix: the topic takes larger records.
	alter := kmsg.NewPtrIncrementalAlterConfigsRequest()
	ar := kmsg.NewIncrementalAlterConfigsRequestResource()
	ar.ResourceType, ar.ResourceName = kmsg.ConfigResourceTypeTopic, topic
	ac := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
	ac.Name, ac.Value = "max.message.bytes", kmsg.StringPtr("1048576")
	ar.Configs = append(ar.Configs, ac)
	alter.Resources = append(alter.Resources, ar)
	aresp, err := alter.RequestWith(testCtx(t), admin)
	if err != nil || kerr.ErrorForCode(aresp.Resources[0].ErrorCode) != nil {
		t.Fatalf("alter %s: %v %v", topic, err, aresp)
	}

	code, out, errs = deadletter("replay", "--id", big.ID)
	if code != 0 || !strings.Contains(out, "dead letters 1 (1 events), replayed 1, failed 0") {
		t.Fatalf("deadletter replay after the fix = %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	recs := kafkaRecords(t, b.kafka, topic, 2)
	if id := header(recs[0], "ce_id"); id != small.ID {
		t.Errorf("first record %s, want the event that fitted, %s", id, small.ID)
	}
	r := recs[1]
	if header(r, "ce_id") != big.ID || !bytes.Equal(r.Value, big.Data) || string(r.Key) != "site-1" ||
		header(r, "ce_mistorg") != "org-1" || header(r, "ce_time") != "2026-03-01T12:00:00Z" || header(r, "mistbridge-error") != "" {
		t.Errorf("replayed record: key %q, headers %v, %d bytes; want the event %s as the bridge writes it", r.Key, r.Headers, len(r.Value), big.ID)
	}
	// Still there: replay deletes nothing.
	checkList(t, "kafka", big.ID, "offset 0")

	if code, _, errs := deadletter("replay", "--id", "no-such-id"); code != 1 || !strings.Contains(errs, "no dead letter of event no-such-id") {
		t.Errorf("deadletter replay of an unknown id = %d: %s", code, errs)
	}
}

// TestDeadletterNATS: the same on JetStream, where the dead-letter subject
// has a stream of its own that takes what the event stream refuses for
// its size (max_msg_size).
func TestDeadletterNATS(t *testing.T) {
	b := startBrokers(t)
	b.setenv(t, "nats")
	nc, err := nats.Connect(b.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	events := jetstream.StreamConfig{Name: "MIST", Subjects: []string{"mist.>"}, MaxMsgSize: 2048, Duplicates: 2 * time.Minute}
	if _, err := js.CreateStream(testCtx(t), events); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(testCtx(t), jetstream.StreamConfig{Name: "DEADLETTER", Subjects: []string{"mistbridge.deadletter"}}); err != nil {
		t.Fatal(err)
	}

	big, small := oversized()
	deliver(t, small, big)
	checkList(t, "nats", big.ID, "stream DEADLETTER seq 1")

	code, out, errs := deadletter("replay", "--all", "--sink", "nats")
	if code != 1 || !strings.Contains(out, "replayed 0, failed 1") || !strings.Contains(errs, big.ID+" refused again by nats") {
		t.Fatalf("deadletter replay before the fix = %d\nstdout: %s\nstderr: %s", code, out, errs)
	}

	events.MaxMsgSize = -1 // the fix
	if _, err := js.UpdateStream(testCtx(t), events); err != nil {
		t.Fatal(err)
	}
	code, out, errs = deadletter("replay", "--all")
	if code != 0 || !strings.Contains(out, "replayed 1, failed 0") {
		t.Fatalf("deadletter replay after the fix = %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	if ids := natsIDs(t, b.natsURL, "MIST", "mist.>"); len(ids) != 2 || ids[0] != small.ID || ids[1] != big.ID {
		t.Fatalf("stream MIST holds %v, want %s then the replayed %s", ids, small.ID, big.ID)
	}
	msg, err := js.Stream(testCtx(t), "MIST")
	if err != nil {
		t.Fatal(err)
	}
	last, err := msg.GetLastMsgForSubject(testCtx(t), "mist.device-events.org-1.site-1")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(last.Data, big.Data) || last.Header.Get("ce-type") != "com.juniper.mist.device-events" || last.Header.Get(sinks.HeaderDeadLetterReason) != "" {
		t.Errorf("replayed message: headers %v, %d bytes; want the event %s as the bridge writes it", last.Header, len(last.Data), big.ID)
	}
	checkList(t, "nats", big.ID, "seq 1")

	// Within the duplicate window a second replay is stored once.
	if code, out, _ := deadletter("replay", "--all"); code != 0 || !strings.Contains(out, "replayed 1") {
		t.Errorf("second replay = %d: %s", code, out)
	}
	if ids := natsIDs(t, b.natsURL, "MIST", "mist.>"); len(ids) != 2 {
		t.Errorf("after a second replay the stream holds %d events, want 2 (a duplicate dropped)", len(ids))
	}
}

// TestDeadletterRebuildsStructuredEvents: a dead letter in the structured
// content mode gives back the same event as one in binary mode.
func TestDeadletterRebuildsStructuredEvents(t *testing.T) {
	big, _ := oversized()
	for _, mode := range []codec.Mode{codec.Binary, codec.Structured} {
		hs, value, err := codec.KafkaRecord(context.Background(), &big, mode)
		if err != nil {
			t.Fatal(err)
		}
		r := &kgo.Record{Topic: "mistbridge.deadletter", Value: value, Timestamp: time.Now()}
		for _, h := range hs {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
		}
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: sinks.HeaderDeadLetterSink, Value: []byte("kafka")})
		d := kafkaDeadLetter(r)
		ev, err := d.event()
		if err != nil {
			t.Fatalf("%v: %v", mode, err)
		}
		if ev.ID != big.ID || !bytes.Equal(ev.Data, big.Data) || ev.Site != "site-1" || !ev.Time.Equal(big.Time) {
			t.Errorf("%v: rebuilt %s (site %q, %d bytes), want %s", mode, ev.ID, ev.Site, len(ev.Data), big.ID)
		}

		nh, data, err := codec.NATSMessage(context.Background(), &big, mode)
		if err != nil {
			t.Fatal(err)
		}
		nd := natsDeadLetter(nats.Header(nh), data)
		if ev, err := nd.event(); err != nil || ev.ID != big.ID || !bytes.Equal(ev.Data, big.Data) {
			t.Errorf("%v over NATS: rebuilt %v, %v", mode, ev.ID, err)
		}
	}
	// An event whose data no longer maps to its id (another codec version)
	// is rebuilt from its headers, percent-encoding undone: written again,
	// it has the headers and data it had.
	odd := codec.Event{ID: "hand-made", Type: "com.juniper.mist.alarms", Source: "/mist/orgs/o 1", Topic: "alarms", Org: "o 1",
		Time: time.Date(2026, 3, 1, 12, 0, 0, 5, time.UTC), Data: []byte(`{"x":1}`)}
	nh, data, err := codec.NATSMessage(context.Background(), &odd, codec.Binary)
	if err != nil {
		t.Fatal(err)
	}
	nd := natsDeadLetter(nats.Header(nh), data)
	ev, err := nd.event()
	if err != nil || ev.ID != odd.ID || ev.Org != "o 1" || !ev.OrgSet || ev.SiteSet || !ev.Time.Equal(odd.Time) || !bytes.Equal(ev.Data, odd.Data) {
		t.Errorf("rebuilt from headers: %+v, %v", ev, err)
	}
	again, _, err := codec.NATSMessage(context.Background(), &ev, codec.Binary)
	if err != nil || !reflect.DeepEqual(again, nh) {
		t.Errorf("rebuilt event's headers %v, want the original's %v (%v)", again, nh, err)
	}
	if empty := natsDeadLetter(nats.Header{}, []byte("{}")); empty.err == nil {
		t.Error("a message without CloudEvent headers was taken for a dead letter")
	}
}

func TestDeadletterUsage(t *testing.T) {
	t.Setenv("MISTBRIDGE_WEBHOOK_SECRET", "s")
	tests := []struct {
		args     []string
		code     int
		out, err string
	}{
		{nil, 2, "", "Usage: mistbridge deadletter list"},
		{[]string{"-h"}, 0, "never deleted", ""},
		{[]string{"list", "-h"}, 0, "never deleted", ""},
		{[]string{"purge"}, 2, "", `unknown subcommand "purge"`},
		{[]string{"replay"}, 2, "", "give --id ID (repeatable) or --all"},
		{[]string{"replay", "--all", "--id", "x"}, 2, "", "give --id ID"},
		{[]string{"replay", "--all", "--json"}, 2, "", "--json and --limit are for list"},
		{[]string{"list", "--all"}, 2, "", "--id and --all are for replay"},
		{[]string{"list", "--limit", "-1"}, 2, "", "--limit -1"},
		{[]string{"list", "--sink", "kafka"}, 2, "", `--sink "kafka" is not a configured sink`},
		{[]string{"list", "stray"}, 2, "", `unexpected argument "stray"`},
	}
	for _, tt := range tests {
		code, out, errs := deadletter(tt.args...)
		if code != tt.code || !strings.Contains(out, tt.out) || !strings.Contains(errs, tt.err) {
			t.Errorf("deadletter %s = %d\nstdout: %s\nstderr: %s\nwant %d, stdout with %q, stderr with %q", strings.Join(tt.args, " "), code, out, errs, tt.code, tt.out, tt.err)
		}
	}
}
