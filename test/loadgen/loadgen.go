// Package loadgen posts signed, Mist-shaped webhook batches at a bridge and
// measures what comes back: cmd/mistsend and test/macro are built on it, and
// the bridge's tests sign and build their bodies with it.
//
// [Run] sends a load: a fixed rate (open loop, latency from each request's
// scheduled send time, so a stalled server cannot hide its queue) or a
// closed loop; [Traffic] makes the bodies from the Mist samples, every event
// unique; [Auth] signs them with the receiver's scheme; [Result] holds the
// counts and HDR latency histograms.
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
	"time"
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
