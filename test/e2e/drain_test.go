//go:build e2e

package e2e

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestDrainOnSIGTERM: 32 keep-alive senders post while the bridge gets
// SIGTERM. During the drain delay /readyz answers 503 and every answer
// says "Connection: close"; then the listener closes. No request sent on a
// connection the bridge had accepted (a kept-alive one) may fail, and every
// event answered 200 must be at both brokers.
//
// A sender that dials a new connection at the instant the listener closes
// can be reset by the kernel: the connection sat in the accept queue and
// the bridge never read its request. No load balancer sends there after
// /readyz turned 503 (these senders ignore it on purpose); such a request
// got no answer, so its sender knows to send it again, and it is counted
// apart.
func TestDrainOnSIGTERM(t *testing.T) {
	b := newBridge(t, "drain")
	b.env = append(b.env, "MISTBRIDGE_DRAIN_DELAY=2s")
	b.start(t)
	sy := newSynth("drain")

	const workers = 32
	var (
		mu       sync.Mutex
		outs     []outcome
		resets   []string // requests on kept-alive connections that failed
		atClose  []string // requests on new connections the closing listener reset
		closes   int      // answers carrying Connection: close
		refused  int      // dials refused once the listener closed: nothing sent
		others   []string
		okBefore = make(chan struct{})
		okCount  int
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	for range workers {
		client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
		wg.Go(func() {
			defer client.CloseIdleConnections()
			for {
				select {
				case <-stop:
					return
				default:
				}
				body, evs := sy.batch(3)
				req, _ := http.NewRequest(http.MethodPost, "http://"+b.addr+"/webhooks/mist", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-Mist-Signature-v2", signV2(secret, body))
				var reused bool
				req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
					GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused },
				}))
				at := time.Now()
				resp, err := client.Do(req)
				var r postResult
				if err != nil {
					r.err = err
				} else {
					rb, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					r.status, r.body = resp.StatusCode, string(rb)
				}
				mu.Lock()
				outs = append(outs, outcome{at: at, took: time.Since(at), events: evs, res: r})
				switch {
				case err == nil:
					if resp.Close {
						closes++
					}
					if r.status == http.StatusOK {
						okCount++
						if okCount == 200 {
							close(okBefore)
						}
					}
				case errors.Is(err, syscall.ECONNREFUSED):
					refused++
				case reused:
					resets = append(resets, err.Error())
				case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || strings.Contains(err.Error(), "connection reset"):
					atClose = append(atClose, err.Error())
				default:
					others = append(others, err.Error())
				}
				mu.Unlock()
				if err != nil && errors.Is(err, syscall.ECONNREFUSED) {
					return // the listener is gone: the drain is over
				}
			}
		})
	}
	select {
	case <-okBefore:
	case <-time.After(60 * time.Second):
		close(stop)
		wg.Wait()
		t.Fatalf("no 200 answers before SIGTERM")
	}
	b.mu.Lock()
	pgid := b.cmd.Process.Pid
	b.mu.Unlock()
	syscall.Kill(-pgid, syscall.SIGTERM)

	// While draining /readyz must answer 503 (the listener still serves).
	resp, err := http.Get("http://" + b.addr + "/readyz")
	if err != nil {
		t.Errorf("/readyz during the drain: %v (want 503)", err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("/readyz during the drain: %d, want 503", resp.StatusCode)
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		close(stop)
		<-done
		t.Errorf("senders still running 60s after SIGTERM")
	}
	b.mu.Lock()
	bdone := b.done
	b.mu.Unlock()
	select {
	case <-bdone:
	case <-time.After(30 * time.Second):
		t.Fatalf("bridge still running 30s after SIGTERM")
	}
	b.mu.Lock()
	exitErr := b.err
	b.expectExit, b.cmd = true, nil
	b.mu.Unlock()
	if exitErr != nil {
		t.Errorf("bridge exited with %v after SIGTERM, want 0", exitErr)
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("drain: %d requests, %d answered 200, %d with Connection: close, %d refused dials, %d new connections reset as the listener closed, %d failures on kept-alive connections, other errors %d",
		len(outs), okCount, closes, refused, len(atClose), len(resets), len(others))
	if len(resets) > 0 {
		t.Errorf("%d requests on kept-alive connections failed, e.g. %s", len(resets), resets[0])
	}
	if len(others) > 0 {
		t.Errorf("%d requests failed otherwise, e.g. %s", len(others), others[0])
	}
	if closes == 0 {
		t.Errorf("no answer carried Connection: close during the drain")
	}
	checkPromises(t, sy, outs)
}

// TestPoisonEvent: an event whose site_id is 5,000 characters (a subject
// past nats-server's control-line limit, if it were used as is) followed by
// a normal batch, against the real nats-server and Kafka: both are
// answered 200, both arrive, and the bridge stays ready.
func TestPoisonEvent(t *testing.T) {
	b := newBridge(t, "poison")
	b.start(t)
	sy := newSynth("poison")
	long := strings.Repeat("s", 5000)
	poisonEvent := `{"org_id":"` + sy.org + `","site_id":"` + long + `","e2e_seq":0,"timestamp":1}`
	poison := []byte(`{"topic":"` + sy.topic + `","events":[` + poisonEvent + `]}`)
	r := b.postSigned(poison)
	if r.status != http.StatusOK {
		t.Fatalf("poison event: %s, want 200", r)
	}
	outs := []outcome{{at: time.Now(), res: r, events: []sent{{topic: sy.topic, raw: []byte(poisonEvent), org: sy.org, site: long, label: "poison"}}}}
	for range 3 {
		body, evs := sy.batch(5)
		r := b.postSigned(body)
		if r.status != http.StatusOK {
			t.Fatalf("normal batch after the poison event: %s, want 200", r)
		}
		outs = append(outs, outcome{at: time.Now(), events: evs, res: r})
	}
	resp, err := http.Get("http://" + b.addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz after the poison event: %d %s", resp.StatusCode, rb)
	}
	checkPromises(t, sy, outs)
	msgs, err := readNATS("mist."+sy.topic+".>", 0)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, m := range msgs {
		if bytes.Contains(m.Data, []byte(long)) {
			found = true
			if len(m.Subject) > 200 {
				t.Errorf("poison event's subject is %d bytes long, want a bounded token", len(m.Subject))
			}
		}
	}
	if !found {
		t.Errorf("the poison event did not arrive on NATS (%d messages on the topic)", len(msgs))
	}
}
