// Package loadgen posts signed, Mist-shaped webhook batches at a bridge and
// measures what comes back. cmd/mistsend and test/load use it.
package loadgen

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Sign returns the X-Mist-Signature-v2 value of body: HMAC-SHA256, lowercase hex.
func Sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// Post sends body to url signed with secret (unsigned when secret is "")
// and returns the status code and the answer.
func Post(ctx context.Context, c *http.Client, url, secret string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Mist-webhook")
	if secret != "" {
		req.Header.Set("X-Mist-Signature-v2", Sign(secret, body))
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, answer, err
}

// Sample is one file of the samples directory.
type Sample struct {
	Name string
	Body []byte
}

// Samples reads every *.json body in dir, sorted by name.
func Samples(dir string) ([]Sample, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("loadgen: no *.json samples in %s", dir)
	}
	slices.Sort(files)
	out := make([]Sample, 0, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		out = append(out, Sample{Name: filepath.Base(f), Body: b})
	}
	return out, nil
}

// Config describes a load run.
type Config struct {
	URL    string
	Secret string
	// Rate is the target in events per second; 0 sends as fast as
	// Concurrency allows (closed loop).
	Rate float64
	// Batch is the number of events per request. The default is 10.
	Batch int
	// Concurrency caps requests in flight. The default is 64. In an open
	// loop (Rate > 0) a request due while all are busy is counted in
	// Result.Skipped, so a slow server shows up as missed load, not as
	// an ever-growing queue in the generator.
	Concurrency int
	// Duration of the run.
	Duration time.Duration
	// Topic of the batches. The default is "device-events".
	Topic string
}

// Result is what a run measured.
type Result struct {
	Requests  int
	Events    int // events in requests answered 200
	Skipped   int // requests the generator could not start (open loop only)
	Errors    int // transport errors
	Codes     map[int]int
	Latencies []time.Duration // of 200 answers
	Elapsed   time.Duration
}

// EventsPerSec is the rate of events answered 200.
func (r Result) EventsPerSec() float64 { return float64(r.Events) / r.Elapsed.Seconds() }

// Percentile returns the q-th (0..1) latency of 200 answers.
func (r Result) Percentile(q float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	s := slices.Clone(r.Latencies)
	slices.Sort(s)
	i := int(q * float64(len(s)-1))
	return s[i]
}

func (r Result) String() string {
	return fmt.Sprintf("%.0f events/s  p50 %v  p99 %v  requests %d  codes %v  skipped %d  errors %d",
		r.EventsPerSec(), r.Percentile(0.50).Round(10*time.Microsecond), r.Percentile(0.99).Round(10*time.Microsecond),
		r.Requests, r.Codes, r.Skipped, r.Errors)
}

// template is a device-events event; every generated event gets a unique
// "seq" so each has its own CloudEvent id.
const template = `"org_id":"2818e386-8dec-2562-9ede-5b8a0fbbdc71","site_id":"4ac1dcf4-9d8b-7211-65c4-057819f0862b","ap":"5c5b35000001","ap_name":"AP41 Lobby","device_type":"ap","ev_type":"notice","type":"AP_RESTARTED","reason":"power_cycle","text":"AP restarted by power cycle","timestamp":1547235620.89}`

var runID = strconv.FormatInt(time.Now().UnixNano(), 36)

// Body builds a batch of n events numbered from seq.
func Body(topic string, seq, n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"topic":`)
	t, _ := json.Marshal(topic)
	b.Write(t)
	b.WriteString(`,"events":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"seq":"%s-%d",`, runID, seq+i)
		b.WriteString(template)
	}
	b.WriteString("]}")
	return b.Bytes()
}

// Run sends load until cfg.Duration passes or ctx is done.
func Run(ctx context.Context, cfg Config) Result {
	if cfg.Batch <= 0 {
		cfg.Batch = 10
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 64
	}
	if cfg.Topic == "" {
		cfg.Topic = "device-events"
	}
	client := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConns: cfg.Concurrency, MaxIdleConnsPerHost: cfg.Concurrency, MaxConnsPerHost: cfg.Concurrency},
	}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()

	var (
		mu     sync.Mutex
		res    = Result{Codes: map[int]int{}}
		seq    atomic.Int64
		wg     sync.WaitGroup
		slots  = make(chan struct{}, cfg.Concurrency)
		start  = time.Now()
		record = func(code int, lat time.Duration, err error) {
			mu.Lock()
			defer mu.Unlock()
			res.Requests++
			if err != nil {
				res.Errors++
				return
			}
			res.Codes[code]++
			if code == http.StatusOK {
				res.Events += cfg.Batch
				res.Latencies = append(res.Latencies, lat)
			}
		}
	)
	send := func() {
		defer wg.Done()
		defer func() { <-slots }()
		body := Body(cfg.Topic, int(seq.Add(int64(cfg.Batch))), cfg.Batch)
		t0 := time.Now()
		code, _, err := Post(context.WithoutCancel(ctx), client, cfg.URL, cfg.Secret, body)
		if ctx.Err() != nil && err != nil {
			return // cut off by the end of the run
		}
		record(code, time.Since(t0), err)
	}
	if cfg.Rate <= 0 {
		for ctx.Err() == nil {
			select {
			case slots <- struct{}{}:
				wg.Add(1)
				go send()
			case <-ctx.Done():
			}
		}
	} else {
		lim := rate.NewLimiter(rate.Limit(cfg.Rate/float64(cfg.Batch)), 1)
		for lim.Wait(ctx) == nil {
			select {
			case slots <- struct{}{}:
				wg.Add(1)
				go send()
			default:
				mu.Lock()
				res.Skipped++
				mu.Unlock()
			}
		}
	}
	res.Elapsed = time.Since(start)
	wg.Wait()
	return res
}

// SamplesDir finds the Mist sample bodies the repository ships in
// deploy/samples (one real payload per documented topic). It looks up from
// the working directory for the module root.
func SamplesDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("loadgen: no go.mod above the working directory")
		}
		dir = parent
	}
	d := filepath.Join(dir, "deploy", "samples")
	if files, _ := filepath.Glob(filepath.Join(d, "*.json")); len(files) > 0 {
		return d, nil
	}
	return "", fmt.Errorf("loadgen: no samples in %s", d)
}
