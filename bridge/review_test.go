package bridge_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mistbridge/mistbridge/bridge/auth"
	"github.com/mistbridge/mistbridge/test/loadgen"
)

// TestReplayRetryAfterFailure: a GitHub-style delivery that failed because
// the broker refused it is accepted when the sender retries it with the
// same delivery id, and only a delivered one is refused as a replay.
func TestReplayRetryAfterFailure(t *testing.T) {
	cfg := defaults[auth.Config](t, map[string]string{
		"AUTH_TYPE": "hmac", "WEBHOOK_SECRET": "gh", "AUTH_HMAC_HEADER": "X-Hub-Signature-256",
		"AUTH_HMAC_PREFIX": "sha256=", "AUTH_HMAC_ID_HEADER": "X-GitHub-Delivery",
	})
	v, err := cfg.Verifier(nil)
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, rigOptions{noNATS: true, verifier: v, bridgeVars: map[string]string{"DELIVERY_TIMEOUT": "1s"}})
	body := loadgen.Body("device-events", 0, 2)
	headers := map[string]string{"X-Hub-Signature-256": "sha256=" + hmacHex("gh", string(body)), "X-GitHub-Delivery": "d-1"}
	if a := post(t, r.url+"/webhooks/mist", loadgen.Body("device-events", 100, 1), map[string]string{"X-Hub-Signature-256": "sha256=" + hmacHex("gh", string(loadgen.Body("device-events", 100, 1))), "X-GitHub-Delivery": "warm"}); a.code != 200 {
		t.Fatalf("warm-up: %d %v", a.code, a.body)
	}
	// The broker refuses every produce with a transient error for now.
	var refusing atomic.Bool
	refusing.Store(true)
	r.kafka.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		r.kafka.KeepControl()
		if !refusing.Load() {
			return nil, nil, false
		}
		preq := req.(*kmsg.ProduceRequest)
		resp := preq.ResponseKind().(*kmsg.ProduceResponse)
		resp.Version = preq.Version
		for _, rt := range preq.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, kerr.NotEnoughReplicas.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	if a := post(t, r.url+"/webhooks/mist", body, headers); a.code != http.StatusServiceUnavailable {
		t.Fatalf("with the broker refusing: %d %v, want 503", a.code, a.body)
	}
	refusing.Store(false)
	if a := post(t, r.url+"/webhooks/mist", body, headers); a.code != 200 {
		t.Fatalf("the sender's retry of a failed delivery: %d %v, want 200", a.code, a.body)
	}
	if a := post(t, r.url+"/webhooks/mist", body, headers); a.code != 401 || a.body["reason"] != auth.ReasonReplayed {
		t.Fatalf("a delivered delivery sent again: %d %v, want 401 replayed", a.code, a.body)
	}
}

// TestSlowBodyIsNotShed: a body that takes longer than ADMIT_WAIT to
// arrive on an idle bridge is accepted: the wait for room is not spent
// reading.
func TestSlowBodyIsNotShed(t *testing.T) {
	r := newRig(t, rigOptions{noKafka: true, bridgeVars: map[string]string{"ADMIT_WAIT": "100ms"}})
	body := loadgen.Body("device-events", 0, 3)
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write(body[:10])
		time.Sleep(300 * time.Millisecond)
		_, _ = pw.Write(body[10:])
		_ = pw.Close()
	}()
	if code, raw := postStream(t, r.url+"/webhooks/mist", pr, int64(len(body)), body); code != 200 {
		t.Fatalf("slow body on an idle bridge: %d %s, want 200", code, raw)
	}
}

// postStream posts a signed body read from rd, of the given length (-1:
// chunked), and returns the status and the answer.
func postStream(t *testing.T, url string, rd io.Reader, length int64, body []byte) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, url, rd)
	req.ContentLength = length
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Mist-Signature-v2", loadgen.Sign(secret, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// TestUnauthenticatedSendersHoldNoRoom: with a token scheme, requests
// without the token are refused before their bodies take admission room,
// so they cannot starve an authenticated sender.
func TestUnauthenticatedSendersHoldNoRoom(t *testing.T) {
	acfg := defaults[auth.Config](t, map[string]string{"AUTH_TYPE": "bearer", "AUTH_TOKEN": "tok"})
	v, err := acfg.Verifier(nil)
	if err != nil {
		t.Fatal(err)
	}
	// Room for exactly one largest body.
	r := newRig(t, rigOptions{noKafka: true, verifier: v, bridgeVars: map[string]string{
		"MAX_BODY_BYTES": "1048576", "MAX_INFLIGHT_BYTES": strconv.Itoa(2*1048576 + 512), "ADMIT_WAIT": "100ms",
	}})
	addr := r.url[len("http://"):]
	for i := 0; i < 4; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// Announce a 1 MiB body, send one byte, and stall: the answer, 401
		// before the body is read, comes at once.
		fmt.Fprintf(c, "POST /webhooks/mist HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n{")
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("no answer to an unauthenticated request before its body: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("unauthenticated request: %d, want 401", resp.StatusCode)
		}
	}
	body := loadgen.Body("device-events", 0, 2)
	if a := post(t, r.url+"/webhooks/mist", body, map[string]string{"Authorization": "Bearer tok"}); a.code != 200 {
		t.Fatalf("authenticated request while unauthenticated ones stall: %d %v, want 200", a.code, a.body)
	}
}

// TestChunkedBodyAtTheSmallestValidLimits: the smallest configuration that
// validates still takes a body of unknown length.
func TestChunkedBodyAtTheSmallestValidLimits(t *testing.T) {
	r := newRig(t, rigOptions{noKafka: true, bridgeVars: map[string]string{
		"MAX_BODY_BYTES": "1048576", "MAX_INFLIGHT_BYTES": strconv.Itoa(2*1048576 + 512),
	}})
	body := loadgen.Body("device-events", 0, 1)
	if code, raw := postStream(t, r.url+"/webhooks/mist", io.MultiReader(bytesReader(body)), -1, body); code != 200 {
		t.Fatalf("chunked body: %d %s, want 200", code, raw)
	}
}

// TestReceiverTopics: a receiver limited to some topics refuses others
// with 422 and publishes nothing of them.
func TestReceiverTopics(t *testing.T) {
	r := newRig(t, rigOptions{noKafka: true, topics: []string{"device-*", "alarms"}})
	ok := loadgen.Body("device-updowns", 0, 1)
	if a := post(t, r.url+"/webhooks/mist", ok, signed(ok)); a.code != 200 {
		t.Fatalf("allowed topic: %d %v", a.code, a.body)
	}
	no := loadgen.Body("location", 0, 2)
	a := post(t, r.url+"/webhooks/mist", no, signed(no))
	if a.code != http.StatusUnprocessableEntity || a.body["reason"] != "topic_not_allowed" {
		t.Fatalf("other topic: %d %v, want 422 topic_not_allowed", a.code, a.body)
	}
	if msgs := natsMessages(t, r.nats.ClientURL(), "mist.location.>", 0); len(msgs) != 0 {
		t.Fatalf("a refused topic published %d messages", len(msgs))
	}
}
