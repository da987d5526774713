// Package sinktest is the conformance suite every [sinks.Sink] passes. A
// sink's own test describes how to start its broker, open a sink on it and
// read back what landed with a real client of that broker ([Setup]); [Run]
// then checks, through those readers and through the CloudEvents SDK's own
// protocol bindings, that what the sink wrote is what the contracts in
// DESIGN.md promise. Declared [Features] tune the cases to what the broker
// can do (deduplication, persistence, record keys, a message size limit).
package sinktest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/mistbridge/mistbridge/codec"
	"github.com/mistbridge/mistbridge/sinks"
	"github.com/mistbridge/mistbridge/test/loadgen"
)

// Features declares what the broker under test does, so that [Run] expects
// exactly that.
type Features struct {
	// HeaderPrefix is the prefix of CloudEvent attribute headers: "ce_" for
	// Kafka, "ce-" for NATS.
	HeaderPrefix string

	// PercentEncoded means header values are percent-encoded (NATS binding).
	PercentEncoded bool

	// Keyed means every message carries the event's partition key as its
	// key (Kafka).
	Keyed bool

	// Dedup means the broker stores one message per event id however often
	// it is written (JetStream, within its duplicate window).
	Dedup bool

	// Persistent means messages are stored: a reader that starts after the
	// write still sees them (Kafka, JetStream; not core NATS).
	Persistent bool

	// MaxMessageBytes is the broker's limit on one message. When set, the
	// suite writes an event larger than that and expects a permanent error
	// for it alone.
	MaxMessageBytes int
}

// Options say how to open a sink or a reader.
type Options struct {
	// Namespace is unique per call to [Run]'s cases: lowercase letters and
	// digits. The sink must write only under it (topic template, subject
	// prefix, stream, dead-letter destination), and the reader must see
	// only what was written under it.
	Namespace string

	// Mode is the CloudEvents content mode the sink writes.
	Mode codec.Mode
}

// Broker is a running broker of the kind under test.
type Broker interface {
	// Open returns a new sink writing under o.Namespace. The suite closes it.
	Open(t *testing.T, o Options) sinks.Sink

	// Reader returns a reader of what lands under o.Namespace. On a broker
	// that is not [Features.Persistent], it sees only what is written after
	// this call.
	Reader(t *testing.T, o Options) Reader

	// Stop stops the broker. Sinks opened on it must then fail their writes.
	Stop()
}

// Reader reads back what a sink wrote, with the broker's own client.
type Reader interface {
	// Destination is the topic or subject where ev must land.
	Destination(ev *codec.Event) string

	// DeadLetterDestination is where DeadLetter must write.
	DeadLetterDestination() string

	// Read waits until at least n messages have landed under the
	// namespace, or ctx ends, and returns all of them in the order they
	// landed (it returns what it has, without error, when ctx ends).
	Read(ctx context.Context, n int) ([]Message, error)
}

// Message is one message as the broker's client read it.
type Message struct {
	Destination string // Kafka topic or NATS subject
	Key         []byte // Kafka record key; nil on NATS
	Headers     []Header
	Data        []byte

	// Binding is the message as the CloudEvents SDK's protocol binding for
	// this broker reads it (kafka_sarama, nats_jetstream).
	Binding binding.Message
}

// Header is one message header, as it was on the wire.
type Header struct{ Key, Value string }

// Setup describes the sink under test.
type Setup struct {
	Features Features

	// StartBroker starts a broker; the suite calls it once for the shared
	// cases and once more for the case that stops its broker. The broker
	// is stopped in t.Cleanup by the Setup (Stop may be called twice).
	StartBroker func(t *testing.T) Broker
}

// readTimeout bounds how long the suite waits for messages to land, and
// settle how long it waits to be sure that no more land.
const (
	readTimeout = 15 * time.Second
	settle      = 150 * time.Millisecond
)

// Run runs the conformance suite.
func Run(t *testing.T, s Setup) {
	t.Helper()
	if s.Features.HeaderPrefix == "" {
		t.Fatal("sinktest: Features.HeaderPrefix is required")
	}
	samples := loadSamples(t)
	b := s.StartBroker(t)
	var seq atomic.Int32
	open := func(t *testing.T, mode codec.Mode) (sinks.Sink, Reader, Options) {
		o := Options{Namespace: fmt.Sprintf("ns%d", seq.Add(1)), Mode: mode}
		r := b.Reader(t, o)
		sk := b.Open(t, o)
		t.Cleanup(func() { _ = sk.Close(context.Background()) })
		return sk, r, o
	}
	f := s.Features

	t.Run("Samples", func(t *testing.T) {
		sk, r, _ := open(t, codec.Binary)
		var all []*codec.Event
		for _, sm := range samples {
			if err := sk.Write(ctxT(t), sm.events); err != nil {
				t.Fatalf("Write(%s): %v", sm.file, err)
			}
			all = append(all, sm.events...)
		}
		got := readExactly(t, r, expectedCount(f, all, 1))
		byID := indexByID(t, got)
		for _, sm := range samples {
			t.Run(sm.file, func(t *testing.T) {
				for _, ev := range sm.events {
					ms := byID[ev.ID]
					if len(ms) != 1 {
						t.Fatalf("event %s: %d messages landed, want 1", ev.ID, len(ms))
					}
					checkBinary(t, f, r.Destination(ev), ev, ms[0])
				}
			})
		}
	})

	t.Run("Structured", func(t *testing.T) {
		sk, r, _ := open(t, codec.Structured)
		evs := someEvents(samples, 8)
		if err := sk.Write(ctxT(t), evs); err != nil {
			t.Fatalf("Write: %v", err)
		}
		got := readExactly(t, r, expectedCount(f, evs, 1))
		byID := indexByID(t, got)
		for _, ev := range evs {
			ms := byID[ev.ID]
			if len(ms) != 1 {
				t.Fatalf("event %s: %d messages landed, want 1", ev.ID, len(ms))
			}
			checkStructured(t, f, r.Destination(ev), ev, ms[0])
		}
	})

	t.Run("WriteTwice", func(t *testing.T) {
		sk, r, _ := open(t, codec.Binary)
		evs := someEvents(samples, 6)
		for range 2 {
			if err := sk.Write(ctxT(t), evs); err != nil {
				t.Fatalf("Write: %v", err)
			}
		}
		got := readExactly(t, r, expectedCount(f, evs, 2))
		byID := indexByID(t, got)
		want := 2
		if f.Dedup {
			want = 1
		}
		for _, ev := range evs {
			if n := len(byID[ev.ID]); n != want {
				t.Errorf("event %s: %d messages landed, want %d (Dedup=%v)", ev.ID, n, want, f.Dedup)
			}
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		sk, r, _ := open(t, codec.Binary)
		const writers, writes, per = 8, 5, 4
		var wg sync.WaitGroup
		errs := make(chan error, writers*writes)
		var all []*codec.Event
		batches := make([][][]*codec.Event, writers)
		for w := range writers {
			batches[w] = make([][]*codec.Event, writes)
			for i := range writes {
				batches[w][i] = syntheticEvents(fmt.Sprintf("w%di%d", w, i), per, 200)
				all = append(all, batches[w][i]...)
			}
		}
		for w := range writers {
			wg.Go(func() {
				for _, evs := range batches[w] {
					if err := sk.Write(ctxT(t), evs); err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("Write: %v", err)
		}
		got := readExactly(t, r, len(all))
		byID := indexByID(t, got)
		for _, ev := range all {
			ms := byID[ev.ID]
			if len(ms) != 1 {
				t.Fatalf("event %s: %d messages landed, want 1", ev.ID, len(ms))
			}
			checkBinary(t, f, r.Destination(ev), ev, ms[0])
		}
	})

	t.Run("EmptyWrite", func(t *testing.T) {
		sk, r, _ := open(t, codec.Binary)
		if err := sk.Write(ctxT(t), nil); err != nil {
			t.Fatalf("Write(nil) = %v, want nil", err)
		}
		readExactly(t, r, 0)
	})

	t.Run("Ready", func(t *testing.T) {
		sk, _, _ := open(t, codec.Binary)
		if err := sk.Ready(ctxT(t)); err != nil {
			t.Fatalf("Ready on a running broker: %v", err)
		}
	})

	t.Run("WriteAfterClose", func(t *testing.T) {
		sk, r, _ := open(t, codec.Binary)
		evs := syntheticEvents("closed", 2, 100)
		if err := sk.Close(ctxT(t)); err != nil {
			t.Fatalf("Close: %v", err)
		}
		err := sk.Write(ctxT(t), evs)
		if !errors.Is(err, sinks.ErrClosed) {
			t.Fatalf("Write after Close = %v, want an error wrapping sinks.ErrClosed", err)
		}
		if err := sk.DeadLetter(ctxT(t), evs[0], errors.New("x")); err == nil {
			t.Fatal("DeadLetter after Close = nil, want an error")
		}
		if err := sk.Close(ctxT(t)); err != nil {
			t.Fatalf("second Close = %v, want nil", err)
		}
		readExactly(t, r, 0)
	})

	t.Run("DeadLetter", func(t *testing.T) {
		sk, r, _ := open(t, codec.Binary)
		ev := someEvents(samples, 1)[0]
		cause := sinks.Permanent(fmt.Errorf("broker refused:\n  %w", errors.New("record is 101% of the limit")))
		if err := sk.DeadLetter(ctxT(t), ev, cause); err != nil {
			t.Fatalf("DeadLetter: %v", err)
		}
		got := readExactly(t, r, 1)
		m := got[0]
		checkBinary(t, f, r.DeadLetterDestination(), ev, m)
		h := headerMap(t, m)
		// The mistbridge- headers are the bridge's own, not CloudEvents
		// attributes: their values are never percent-encoded.
		if v, want := h[sinks.HeaderDeadLetterReason], sinks.DeadLetterReason(cause); v != want {
			t.Errorf("%s = %q, want %q", sinks.HeaderDeadLetterReason, v, want)
		}
		if v := h[sinks.HeaderDeadLetterSink]; v != sk.Name() {
			t.Errorf("%s = %q, want %q", sinks.HeaderDeadLetterSink, v, sk.Name())
		}
	})

	t.Run("TooLargeIsPermanent", func(t *testing.T) {
		if f.MaxMessageBytes == 0 {
			t.Skip("Features.MaxMessageBytes is not set")
		}
		sk, r, _ := open(t, codec.Binary)
		small := syntheticEvents("small", 2, 100)
		big := syntheticEvents("big", 1, f.MaxMessageBytes+1024)[0]
		evs := []*codec.Event{small[0], big, small[1]}
		err := sk.Write(ctxT(t), evs)
		var werrs sinks.WriteErrors
		if !errors.As(err, &werrs) || len(werrs) != len(evs) {
			t.Fatalf("Write = %v (%T), want a sinks.WriteErrors of %d", err, err, len(evs))
		}
		if werrs[0] != nil || werrs[2] != nil {
			t.Errorf("the small events failed: %v, %v", werrs[0], werrs[2])
		}
		if werrs[1] == nil || !sinks.IsPermanent(werrs[1]) {
			t.Errorf("the big event: %v, want a permanent error", werrs[1])
		}
		got := readExactly(t, r, 2)
		for _, m := range got {
			if bytes.Equal(m.Data, big.Data) {
				t.Error("the big event landed")
			}
		}
	})

	t.Run("Persistent", func(t *testing.T) {
		if !f.Persistent {
			t.Skip("the broker does not store messages")
		}
		o := Options{Namespace: fmt.Sprintf("ns%d", seq.Add(1)), Mode: codec.Binary}
		sk := b.Open(t, o)
		t.Cleanup(func() { _ = sk.Close(context.Background()) })
		evs := syntheticEvents("stored", 3, 100)
		if err := sk.Write(ctxT(t), evs); err != nil {
			t.Fatalf("Write: %v", err)
		}
		r := b.Reader(t, o)
		got := readExactly(t, r, len(evs))
		byID := indexByID(t, got)
		for _, ev := range evs {
			if len(byID[ev.ID]) != 1 {
				t.Errorf("event %s: %d messages, want 1", ev.ID, len(byID[ev.ID]))
			}
		}
	})

	t.Run("StoppedBroker", func(t *testing.T) {
		b2 := s.StartBroker(t)
		o := Options{Namespace: "stopped", Mode: codec.Binary}
		sk := b2.Open(t, o)
		t.Cleanup(func() { _ = sk.Close(context.Background()) })
		if err := sk.Write(ctxT(t), syntheticEvents("before", 2, 100)); err != nil {
			t.Fatalf("Write before Stop: %v", err)
		}
		b2.Stop()
		const deadline = 3 * time.Second
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		start := time.Now()
		err := sk.Write(ctx, syntheticEvents("after", 2, 100))
		elapsed := time.Since(start)
		if err == nil {
			t.Fatal("Write to a stopped broker = nil, want an error")
		}
		if elapsed > deadline+time.Second {
			t.Errorf("Write to a stopped broker took %v, past the ctx deadline of %v", elapsed, deadline)
		}
		if sinks.IsPermanent(err) {
			t.Errorf("Write to a stopped broker = %v: permanent, want transient", err)
		}
		rctx, rcancel := context.WithTimeout(context.Background(), deadline)
		defer rcancel()
		if err := sk.Ready(rctx); err == nil {
			t.Error("Ready on a stopped broker = nil, want an error")
		}
		cctx, ccancel := context.WithTimeout(context.Background(), deadline)
		defer ccancel()
		start = time.Now()
		_ = sk.Close(cctx)
		if elapsed := time.Since(start); elapsed > deadline+time.Second {
			t.Errorf("Close after Stop took %v, past the ctx deadline of %v", elapsed, deadline)
		}
	})
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), readTimeout)
	t.Cleanup(cancel)
	return ctx
}

// readExactly reads n messages, then waits [settle] to be sure no more land.
func readExactly(t *testing.T, r Reader, n int) []Message {
	t.Helper()
	got, err := r.Read(ctxT(t), n)
	if err != nil {
		t.Fatalf("Read(%d): %v", n, err)
	}
	if len(got) < n {
		t.Fatalf("Read: %d messages landed within %v, want %d", len(got), readTimeout, n)
	}
	ctx, cancel := context.WithTimeout(t.Context(), settle)
	defer cancel()
	got, err = r.Read(ctx, n+1)
	if err != nil {
		t.Fatalf("Read(%d): %v", n+1, err)
	}
	if len(got) != n {
		t.Fatalf("%d messages landed, want exactly %d", len(got), n)
	}
	return got
}

// expectedCount is how many messages land when events are each written
// times times.
func expectedCount(f Features, events []*codec.Event, times int) int {
	if !f.Dedup {
		return len(events) * times
	}
	ids := make(map[string]bool)
	for _, ev := range events {
		ids[ev.ID] = true
	}
	return len(ids)
}

// indexByID groups messages by the id the CloudEvents SDK reads from them.
func indexByID(t *testing.T, ms []Message) map[string][]Message {
	t.Helper()
	out := make(map[string][]Message)
	for _, m := range ms {
		e, err := binding.ToEvent(context.Background(), m.Binding)
		if err != nil {
			t.Fatalf("binding.ToEvent(message on %s): %v", m.Destination, err)
		}
		out[e.ID()] = append(out[e.ID()], m)
	}
	return out
}

func headerMap(t *testing.T, m Message) map[string]string {
	t.Helper()
	h := make(map[string]string, len(m.Headers))
	for _, kv := range m.Headers {
		if _, dup := h[kv.Key]; dup {
			t.Errorf("header %q appears twice", kv.Key)
		}
		h[kv.Key] = kv.Value
	}
	return h
}

func decode(f Features, v string) string {
	if !f.PercentEncoded {
		return v
	}
	s, err := url.PathUnescape(v)
	if err != nil {
		return "<bad percent-encoding: " + v + ">"
	}
	return s
}

// checkHeaderCase fails when a CloudEvents header is not spelled in
// lowercase: Kafka and NATS headers are case-sensitive, and the SDKs read
// lowercase names.
func checkHeaderCase(t *testing.T, f Features, m Message) {
	t.Helper()
	for _, kv := range m.Headers {
		low := strings.ToLower(kv.Key)
		if (strings.HasPrefix(low, f.HeaderPrefix) || low == codec.ContentTypeHeader || strings.HasPrefix(low, "mistbridge-")) && kv.Key != low {
			t.Errorf("header %q is not lowercase", kv.Key)
		}
	}
}

func checkBinary(t *testing.T, f Features, dest string, ev *codec.Event, m Message) {
	t.Helper()
	if m.Destination != dest {
		t.Errorf("event %s landed on %q, want %q", ev.ID, m.Destination, dest)
	}
	if f.Keyed && string(m.Key) != ev.PartitionKey() {
		t.Errorf("event %s: key %q, want %q", ev.ID, m.Key, ev.PartitionKey())
	}
	checkHeaderCase(t, f, m)
	h := headerMap(t, m)
	p := f.HeaderPrefix
	want := map[string]string{
		p + "specversion":         "1.0",
		p + "id":                  ev.ID,
		p + "type":                ev.Type,
		p + "source":              ev.Source,
		p + codec.ExtTopic:        ev.Topic,
		p + codec.ExtPartitionKey: ev.PartitionKey(),
		codec.ContentTypeHeader:   event.ApplicationJSON,
	}
	if ev.Org != "" {
		want[p+codec.ExtOrg] = ev.Org
	}
	if ev.Site != "" {
		want[p+codec.ExtSite] = ev.Site
	}
	if !ev.Time.IsZero() {
		want[p+"time"] = "" // compared as a time below
	}
	for k, v := range h {
		if !strings.HasPrefix(k, p) && k != codec.ContentTypeHeader {
			continue
		}
		w, ok := want[k]
		if !ok {
			t.Errorf("event %s: unexpected header %s: %q", ev.ID, k, v)
			continue
		}
		if k == p+"time" {
			tm, err := time.Parse(time.RFC3339Nano, decode(f, v))
			if err != nil || !tm.Equal(ev.Time) {
				t.Errorf("event %s: %s = %q, want %s", ev.ID, k, v, ev.Time.Format(time.RFC3339Nano))
			}
			continue
		}
		if got := decode(f, v); got != w {
			t.Errorf("event %s: %s = %q, want %q", ev.ID, k, got, w)
		}
	}
	for k := range want {
		if _, ok := h[k]; !ok {
			t.Errorf("event %s: header %s is missing", ev.ID, k)
		}
	}
	if !bytes.Equal(m.Data, ev.Data) {
		t.Errorf("event %s: data differs from the event's bytes:\n got %.200q\nwant %.200q", ev.ID, m.Data, ev.Data)
	}
	if enc := m.Binding.ReadEncoding(); enc != binding.EncodingBinary {
		t.Errorf("event %s: the SDK reads encoding %v, want binary", ev.ID, enc)
	}
	checkSDKEvent(t, ev, m)
}

func checkStructured(t *testing.T, f Features, dest string, ev *codec.Event, m Message) {
	t.Helper()
	if m.Destination != dest {
		t.Errorf("event %s landed on %q, want %q", ev.ID, m.Destination, dest)
	}
	if f.Keyed && string(m.Key) != ev.PartitionKey() {
		t.Errorf("event %s: key %q, want %q", ev.ID, m.Key, ev.PartitionKey())
	}
	checkHeaderCase(t, f, m)
	h := headerMap(t, m)
	if ct := h[codec.ContentTypeHeader]; decode(f, ct) != event.ApplicationCloudEventsJSON {
		t.Errorf("event %s: content-type %q, want %q", ev.ID, ct, event.ApplicationCloudEventsJSON)
	}
	for k := range h {
		if strings.HasPrefix(k, f.HeaderPrefix) {
			t.Errorf("event %s: structured message has attribute header %s", ev.ID, k)
		}
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(m.Data, &doc); err != nil {
		t.Fatalf("event %s: structured body is not JSON: %v", ev.ID, err)
	}
	if !jsonEqual(doc["data"], ev.Data) {
		t.Errorf("event %s: structured data differs:\n got %.200s\nwant %.200s", ev.ID, doc["data"], ev.Data)
	}
	if enc := m.Binding.ReadEncoding(); enc != binding.EncodingStructured {
		t.Errorf("event %s: the SDK reads encoding %v, want structured", ev.ID, enc)
	}
	checkSDKEvent(t, ev, m)
}

// checkSDKEvent reads m with the CloudEvents SDK and compares the event to ev.
func checkSDKEvent(t *testing.T, ev *codec.Event, m Message) {
	t.Helper()
	e, err := binding.ToEvent(context.Background(), m.Binding)
	if err != nil {
		t.Fatalf("event %s: binding.ToEvent: %v", ev.ID, err)
	}
	if err := e.Validate(); err != nil {
		t.Errorf("event %s: the SDK finds the event invalid: %v", ev.ID, err)
	}
	if e.SpecVersion() != event.CloudEventsVersionV1 {
		t.Errorf("event %s: specversion %q", ev.ID, e.SpecVersion())
	}
	if e.ID() != ev.ID || e.Type() != ev.Type || e.Source() != ev.Source {
		t.Errorf("event %s: SDK reads id/type/source %q %q %q, want %q %q %q", ev.ID, e.ID(), e.Type(), e.Source(), ev.ID, ev.Type, ev.Source)
	}
	if !e.Time().Equal(ev.Time) {
		t.Errorf("event %s: SDK reads time %v, want %v", ev.ID, e.Time(), ev.Time)
	}
	if e.DataContentType() != event.ApplicationJSON {
		t.Errorf("event %s: SDK reads datacontenttype %q, want %q", ev.ID, e.DataContentType(), event.ApplicationJSON)
	}
	exts := e.Extensions()
	for name, want := range map[string]string{
		codec.ExtOrg: ev.Org, codec.ExtSite: ev.Site, codec.ExtTopic: ev.Topic, codec.ExtPartitionKey: ev.PartitionKey(),
	} {
		got, ok := exts[name]
		if want == "" {
			if ok {
				t.Errorf("event %s: SDK reads extension %s = %v, want none", ev.ID, name, got)
			}
			continue
		}
		if s, _ := got.(string); s != want {
			t.Errorf("event %s: SDK reads extension %s = %v, want %q", ev.ID, name, got, want)
		}
	}
	if !jsonEqual(e.Data(), ev.Data) {
		t.Errorf("event %s: SDK reads data %.200s, want %.200s", ev.ID, e.Data(), ev.Data)
	}
}

func jsonEqual(a, b []byte) bool {
	var ca, cb bytes.Buffer
	if json.Compact(&ca, a) != nil || json.Compact(&cb, b) != nil {
		return false
	}
	return bytes.Equal(ca.Bytes(), cb.Bytes())
}

type sample struct {
	file   string
	events []*codec.Event
}

// loadSamples splits and maps every sample body (see loadgen.SamplesDir).
func loadSamples(t *testing.T) []sample {
	t.Helper()
	dir, err := loadgen.SamplesDir()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("sinktest: %s holds no *.json sample", dir)
	}
	sort.Strings(files)
	var out []sample
	for _, file := range files {
		body, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		b, err := codec.Split(body, "")
		if err != nil {
			t.Fatalf("codec.Split(%s): %v", file, err)
		}
		sm := sample{file: filepath.Base(file)}
		for _, raw := range b.Events {
			ev := codec.Map(b.Topic, raw)
			sm.events = append(sm.events, &ev)
		}
		out = append(out, sm)
	}
	return out
}

// someEvents returns up to n sample events from different files, or
// synthetic ones when there are no samples.
func someEvents(samples []sample, n int) []*codec.Event {
	var out []*codec.Event
	for _, sm := range samples {
		if len(out) == n {
			break
		}
		out = append(out, sm.events[0])
	}
	if len(out) < n {
		out = append(out, syntheticEvents("some", n-len(out), 200)...)
	}
	return out
}

// syntheticEvents returns n distinct events of about size bytes each, in
// several sites of one org so they spread over partitions.
func syntheticEvents(tag string, n, size int) []*codec.Event {
	out := make([]*codec.Event, n)
	for i := range out {
		pad := max(size-200, 0)
		raw := fmt.Sprintf(`{"org_id":"org-%s","site_id":"site-%d","timestamp":%d,"type":"AP_RESTARTED","text":"%s %d","pad":"%s"}`,
			tag, i%3, 1700000000+i, tag, i, strings.Repeat("x", pad))
		ev := codec.Map("device-events", []byte(raw))
		out[i] = &ev
	}
	return out
}
