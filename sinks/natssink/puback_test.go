package natssink

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var pubAckCases = []struct {
	name string
	data string
	want error // nil, a sentinel, or an *APIError
}{
	{"ack", `{"stream":"MIST","seq":123}`, nil},
	{"duplicate", `{"stream":"MIST","seq":123,"duplicate":true}`, nil},
	{"domain", `{"stream":"MIST","domain":"hub","seq":18446744073709551615}`, nil},
	{"spaces", " {\n\t\"stream\" : \"MIST\" ,\r\"seq\":0 } ", nil},
	{"escaped stream", `{"stream":"M\u0049ST","seq":1}`, nil},
	{"type key", `{"type":"io.nats.jetstream.api.v1.pub_ack","stream":"MIST","seq":1}`, nil},
	{"error", `{"error":{"code":400,"err_code":10054,"description":"message size exceeds maximum allowed"}}`,
		&jetstream.APIError{Code: 400, ErrorCode: 10054, Description: "message size exceeds maximum allowed"}},
	{"error after stream", `{"stream":"MIST","error":{"code":503,"err_code":10077,"description":"resource limits exceeded"}}`,
		&jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "resource limits exceeded"}},
	{"null error", `{"error":null,"stream":"MIST","seq":1}`, nil},
	{"empty stream", `{"stream":"","seq":1}`, jetstream.ErrInvalidJSAck},
	{"null stream", `{"stream":null,"seq":1}`, jetstream.ErrInvalidJSAck},
	{"last stream wins", `{"stream":"MIST","stream":""}`, jetstream.ErrInvalidJSAck},
	{"no stream", `{"seq":1}`, jetstream.ErrInvalidJSAck},
	{"empty object", `{}`, jetstream.ErrInvalidJSAck},
	{"empty", ``, jetstream.ErrInvalidJSAck},
	{"not json", `+OK`, jetstream.ErrInvalidJSAck},
	{"truncated", `{"stream":"MIST","seq":1`, jetstream.ErrInvalidJSAck},
	{"trailing garbage", `{"stream":"MIST"}x`, jetstream.ErrInvalidJSAck},
	{"negative seq", `{"stream":"MIST","seq":-1}`, jetstream.ErrInvalidJSAck},
	{"float seq", `{"stream":"MIST","seq":1.5}`, jetstream.ErrInvalidJSAck},
	{"seq overflow", `{"stream":"MIST","seq":18446744073709551616}`, jetstream.ErrInvalidJSAck},
	{"string seq", `{"stream":"MIST","seq":"1"}`, jetstream.ErrInvalidJSAck},
	{"number stream", `{"stream":1}`, jetstream.ErrInvalidJSAck},
	{"capitalised key", `{"Stream":"MIST"}`, nil}, // encoding/json matches keys case-insensitively, as nats.go does
}

func sameAckError(a, b error) bool {
	var ae, be *jetstream.APIError
	if errors.As(a, &ae) || errors.As(b, &be) {
		return errors.As(a, &ae) && errors.As(b, &be) && reflect.DeepEqual(ae, be)
	}
	return a == b
}

func TestParsePubAck(t *testing.T) {
	for _, tc := range pubAckCases {
		t.Run(tc.name, func(t *testing.T) {
			if got := parsePubAck([]byte(tc.data)); !sameAckError(got, tc.want) {
				t.Errorf("parsePubAck(%s) = %v, want %v", tc.data, got, tc.want)
			}
			// The oracle: what nats.go's decoding answers.
			if got := decodePubAck([]byte(tc.data)); !sameAckError(got, tc.want) {
				t.Errorf("decodePubAck(%s) = %v, want %v", tc.data, got, tc.want)
			}
		})
	}
}

// The hand parser answers what encoding/json answers, whatever the input.
func FuzzParsePubAck(f *testing.F) {
	for _, tc := range pubAckCases {
		f.Add([]byte(tc.data))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if got, want := parsePubAck(data), decodePubAck(data); !sameAckError(got, want) {
			t.Errorf("parsePubAck(%q) = %v, encoding/json says %v", data, got, want)
		}
	})
}

func TestParsePubAckDoesNotAllocate(t *testing.T) {
	data := []byte(`{"stream":"MIST","seq":123,"duplicate":true}`)
	if n := testing.AllocsPerRun(100, func() { _ = parsePubAck(data) }); n != 0 {
		t.Errorf("parsePubAck allocates %v times, want 0", n)
	}
}

func TestReplySubjectRoundTrip(t *testing.T) {
	const prefix = "_INBOX.abc."
	for _, c := range []struct {
		seq uint64
		i   int
	}{{1, 0}, {35, 36}, {1 << 63, 4095}, {^uint64(0), 1<<31 - 1}} {
		s := string(appendReply(nil, prefix, c.seq, c.i))
		seq, i, ok := parseReply(s, prefix)
		if !ok || seq != c.seq || i != c.i {
			t.Errorf("parseReply(%q) = %d, %d, %v, want %d, %d", s, seq, i, ok, c.seq, c.i)
		}
	}
	for _, s := range []string{"_INBOX.abd.1_0", "_INBOX.abc.1", "_INBOX.abc._1", "_INBOX.abc.1_", "_INBOX.abc.1_-1", "_INBOX.abc.zzzzzzzzzzzzzzz_0"} {
		if _, _, ok := parseReply(s, prefix); ok {
			t.Errorf("parseReply(%q) ok, want a refusal", s)
		}
	}
}

func newWaiter(pending ...bool) *waiter {
	return &waiter{pending: pending, errs: make([]error, len(pending))}
}

// A publisher keeps at most its window of messages in flight, hands each
// reply to the slot it names, and drops the replies of a waiter that gave
// up.
func TestPublisherMatchesRepliesWithinItsWindow(t *testing.T) {
	b := startNATS(t, false)
	nc, err := nats.Connect(b.e.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	p := &publisher{nc: nc, window: 2}
	ctx := testCtx(t)

	w1 := newWaiter(true, true)
	prefix, err := p.register(ctx, w1, 2, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.register(ctx, newWaiter(true), 1, 20*time.Millisecond); !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
		t.Fatalf("register into a full window = %v, want ErrTooManyStalledMsgs", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := p.register(cctx, newWaiter(true), 1, time.Minute); !errors.Is(err, context.Canceled) {
		t.Fatalf("register into a full window with an ended ctx = %v, want context.Canceled", err)
	}
	w2 := newWaiter(true)
	registered := make(chan error, 1)
	go func() {
		_, err := p.register(ctx, w2, 1, time.Minute)
		registered <- err
	}()
	reply := func(seq uint64, i int, hdr nats.Header, data string) {
		t.Helper()
		m := &nats.Msg{Subject: string(appendReply(nil, prefix, seq, i)), Header: hdr, Data: []byte(data)}
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	reply(w1.seq, 0, nil, `{"stream":"S","seq":1}`)
	if err := <-registered; err != nil {
		t.Fatalf("register once the window has room = %v", err)
	}
	p.abandon(w1)
	if n := p.pending(); n != 1 {
		t.Fatalf("%d messages pending after w1 gave up, want w2's 1", n)
	}
	if w1.errs[0] != nil || !errors.Is(w1.errs[1], errUnacked) {
		t.Fatalf("w1's outcomes = %v, want [nil errUnacked]", w1.errs)
	}
	// A late reply to w1 is dropped; w2's reaches it.
	reply(w1.seq, 1, nil, `{"error":{"code":500,"err_code":1,"description":"late"}}`)
	reply(w2.seq, 0, nil, `{"stream":"S","seq":2,"duplicate":true}`)
	select {
	case <-w2.done:
	case <-ctx.Done():
		t.Fatal("w2 got no outcome")
	}
	if w2.errs[0] != nil || !errors.Is(w1.errs[1], errUnacked) {
		t.Fatalf("w2 = %v, w1 = %v: want w2 acked and w1 untouched", w2.errs, w1.errs)
	}

	w3 := newWaiter(true, true, true, false)
	if _, err := p.register(ctx, w3, 3, time.Second); err != nil {
		t.Fatal(err)
	}
	reply(w3.seq, 2, nil, `{"error":{"code":400,"err_code":10054,"description":"message size exceeds maximum allowed"}}`)
	reply(w3.seq, 9, nil, `{"stream":"S","seq":3}`) // no such slot
	reply(w3.seq, 3, nil, `{"stream":"S","seq":3}`) // not pending
	reply(w3.seq, 1, nats.Header{"Status": []string{"503"}}, ``)
	reply(w3.seq, 0, nil, `{"stream":"S","seq":3}`)
	select {
	case <-w3.done:
	case <-ctx.Done():
		t.Fatal("w3 got no outcome")
	}
	var apiErr *jetstream.APIError
	if w3.errs[0] != nil || !errors.Is(w3.errs[1], jetstream.ErrNoStreamResponse) ||
		!errors.As(w3.errs[2], &apiErr) || apiErr.ErrorCode != 10054 || w3.errs[3] != nil {
		t.Fatalf("w3's outcomes = %v, want [nil ErrNoStreamResponse 10054 nil]", w3.errs)
	}
	if n := p.pending(); n != 0 {
		t.Fatalf("%d messages pending, want 0", n)
	}

	// A dropped connection fails what waits.
	w4 := newWaiter(true)
	if _, err := p.register(ctx, w4, 1, time.Second); err != nil {
		t.Fatal(err)
	}
	p.failAll(nats.ErrDisconnected)
	<-w4.done
	if !errors.Is(w4.errs[0], nats.ErrDisconnected) || p.pending() != 0 {
		t.Fatalf("after failAll: %v, %d pending", w4.errs, p.pending())
	}
}
