// Command mistsend posts Mist-shaped webhooks at a bridge (or at any receiver
// of Mist webhooks).
//
// By default it replays every sample body once (deploy/samples, or -samples),
// signed like Mist signs, and prints each answer:
//
//	mistsend -url http://localhost:8080/webhooks/mist -secret s3cret
//
// Any load flag (-rate, -concurrency, -connections, -duration, -warmup,
// -batch, -mix, -orgs, -sites, -seed, -hdr) makes it a load generator
// instead: a mix of the samples' topics with fresh org, site and event ids
// and timestamps, so every event is unique, at a fixed rate or in a closed
// loop, reporting events/s, status counts and latency percentiles measured
// from each request's scheduled send time (see test/loadgen):
//
//	mistsend -secret s3cret -rate 5000 -duration 30s -hdr out.hgrm   # fixed rate, events/s
//	mistsend -secret s3cret -rate 0 -concurrency 32 -duration 30s     # as fast as answers come
//	mistsend -auth bearer -token T -mix location=3,device-events=1 -rate 2000
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/mistbridge/mistbridge/test/loadgen"
)

// loadFlags are the flags that turn replay into load.
var loadFlags = map[string]bool{"rate": true, "concurrency": true, "connections": true, "duration": true,
	"warmup": true, "batch": true, "mix": true, "orgs": true, "sites": true, "seed": true, "hdr": true}

func main() {
	fs := flag.NewFlagSet("mistsend", flag.ExitOnError)
	var (
		url    = fs.String("url", "http://localhost:8080/webhooks/mist", "webhook URL of the receiver")
		dir    = fs.String("samples", "", "directory of Mist sample bodies (default: deploy/samples of the repository, found from the working directory)")
		every  = fs.Duration("every", 0, "replay: send the samples again at this interval (0: once)")
		a      loadgen.Auth
		cfg    loadgen.Config
		mix    = fs.String("mix", "realistic", "load: topics and their weights: realistic, even, a topic, or topic=weight,...")
		orgs   = fs.Int("orgs", 3, "load: organisations the events are spread over")
		sites  = fs.Int("sites", 30, "load: sites the events are spread over (dealt to the orgs in turn)")
		seed   = fs.Uint64("seed", 0, "load: fixes the org and site ids and the random choices (0: new ones each run)")
		hdr    = fs.String("hdr", "", "load: write the latency histogram (HdrHistogram .hgrm, ms) to this file")
		client = fs.String("client", "", "load: raw (own HTTP/1.1 client, cheapest; http:// only) or http (net/http); default raw for http://, http for https://")
	)
	fs.StringVar(&a.Secret, "secret", os.Getenv("MISTBRIDGE_WEBHOOK_SECRET"), "HMAC secret of mist and hmac (default $MISTBRIDGE_WEBHOOK_SECRET)")
	fs.StringVar(&a.Scheme, "auth", "", "the receiver's scheme: mist, hmac, basic, bearer, jwt, header, authheader, querystring, splunk or none (default mist with a secret, else none)")
	fs.BoolVar(&a.MistV2Only, "mist-v2-only", false, "mist: send X-Mist-Signature-v2 alone (Mist also sends the SHA-1 X-Mist-Signature)")
	fs.StringVar(&a.Token, "token", os.Getenv("MISTBRIDGE_AUTH_TOKEN"), "token of bearer, jwt, header, authheader, querystring, splunk (default $MISTBRIDGE_AUTH_TOKEN)")
	fs.StringVar(&a.User, "user", "", "basic: user name")
	fs.StringVar(&a.Password, "password", os.Getenv("MISTBRIDGE_AUTH_PASSWORD"), "basic: password (default $MISTBRIDGE_AUTH_PASSWORD)")
	fs.StringVar(&a.Header, "header", "", "hmac: the signature header; header: the token header")
	fs.StringVar(&a.Algorithm, "hmac-algorithm", "sha256", "hmac: sha1, sha256 or sha512")
	fs.StringVar(&a.Encoding, "hmac-encoding", "hex", "hmac: hex or base64")
	fs.StringVar(&a.Prefix, "hmac-prefix", "", `hmac: signature prefix, e.g. "sha256="`)
	fs.StringVar(&a.Template, "hmac-template", "{body}", `hmac: signed content with {body}, {timestamp}, {id}, e.g. "v0:{timestamp}:{body}"`)
	fs.StringVar(&a.TimestampHeader, "hmac-timestamp-header", "", "hmac: send the Unix time of sending in this header")
	fs.StringVar(&a.IDHeader, "hmac-id-header", "", "hmac: send a fresh delivery id in this header")
	fs.StringVar(&a.QueryParam, "query-param", "token", "querystring: the parameter that carries the token")
	fs.Float64Var(&cfg.Rate, "rate", 0, "load: events per second, scheduled by the clock (fixed rate); 0: closed loop, -concurrency requests in flight")
	fs.IntVar(&cfg.Batch, "batch", 10, "load: events per request")
	fs.IntVar(&cfg.Concurrency, "concurrency", 32, "load: requests in flight at most")
	fs.IntVar(&cfg.Connections, "connections", 0, "load: connections at most (default -concurrency)")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "load: how long to send (measured)")
	fs.DurationVar(&cfg.Warmup, "warmup", 0, "load: send this long first, not measured")
	fs.DurationVar(&cfg.Timeout, "timeout", 30*time.Second, "per-request limit")
	fs.BoolVar(&cfg.InsecureSkipVerify, "insecure", false, "accept any TLS certificate (test deployments only)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: mistsend [flags]\n\nReplays every Mist sample once (the default), or, with any of -%s,\nsends a load of unique Mist-shaped events and reports what came back.\n\n",
			strings.Join(sortedKeys(loadFlags), ", -"))
		fs.PrintDefaults()
	}
	_ = fs.Parse(os.Args[1:])
	load := false
	fs.Visit(func(f *flag.Flag) { load = load || loadFlags[f.Name] })
	if err := a.Validate(); err != nil {
		fail(2, err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *dir == "" {
		d, err := loadgen.SamplesDir()
		if err != nil {
			fail(2, fmt.Errorf("-samples not given and %w", err))
		}
		*dir = d
	}
	samples, err := loadgen.Samples(*dir)
	if err != nil {
		fail(2, err)
	}
	if !load {
		os.Exit(replay(ctx, *url, a, samples, *every, cfg.Timeout))
	}

	m, err := loadgen.ParseMix(*mix)
	if err != nil {
		fail(2, err)
	}
	traffic, err := loadgen.NewTraffic(samples, loadgen.TrafficOptions{Mix: m, Orgs: *orgs, Sites: *sites, Seed: *seed})
	if err != nil {
		fail(2, err)
	}
	cfg.URL, cfg.Auth, cfg.Traffic, cfg.Client = *url, a, traffic, *client
	if term.IsTerminal(int(os.Stderr.Fd())) {
		cfg.Progress = func(p loadgen.Progress) {
			if p.Done {
				fmt.Fprint(os.Stderr, "\r\033[K")
				return
			}
			fmt.Fprintf(os.Stderr, "\r\033[K%s", p)
		}
	}
	res, err := loadgen.Run(ctx, cfg)
	if err != nil {
		fail(2, err)
	}
	fmt.Printf("mistsend: POST %s, %s\n", *url, describeMix(traffic))
	fmt.Print(res)
	if *hdr != "" {
		if err := writeFile(*hdr, res.WriteHDR); err != nil {
			fail(1, err)
		}
	}
	if ctx.Err() != nil {
		fmt.Println("  (interrupted)")
	}
	if res.Events == 0 {
		os.Exit(1)
	}
}

// replay sends every sample as it is, once or every interval, and prints
// each answer; it returns the exit code (1 when any answer was not 200).
func replay(ctx context.Context, url string, a loadgen.Auth, samples []loadgen.Sample, every, timeout time.Duration) int {
	u, err := a.URL(url)
	if err != nil {
		fail(2, err)
	}
	client := &http.Client{Timeout: timeout}
	failed := 0
	for {
		for _, s := range samples {
			code, answer, err := post(ctx, client, u, a, s.Body)
			if err != nil {
				fmt.Fprintf(os.Stderr, "%-36s error: %v\n", s.Name, err)
				failed++
				continue
			}
			fmt.Printf("%-36s %d %s", s.Name, code, answer)
			if !strings.HasSuffix(string(answer), "\n") {
				fmt.Println()
			}
			if code != http.StatusOK {
				failed++
			}
		}
		if every <= 0 || ctx.Err() != nil {
			break
		}
		select {
		case <-time.After(every):
		case <-ctx.Done():
		}
	}
	if failed > 0 {
		return 1
	}
	return 0
}

func post(ctx context.Context, c *http.Client, url string, a loadgen.Auth, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(string(body)))
	if err != nil {
		return 0, nil, err
	}
	h, err := a.Headers(body)
	if err != nil {
		return 0, nil, err
	}
	req.Header = h
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Mist-webhook")
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, answer, err
}

func describeMix(t *loadgen.Traffic) string {
	shares := t.Topics()
	topics := sortedKeys(shares)
	sort.SliceStable(topics, func(i, j int) bool { return shares[topics[i]] > shares[topics[j]] })
	parts := make([]string, 0, len(topics))
	for _, tp := range topics {
		parts = append(parts, fmt.Sprintf("%s %.0f%%", tp, 100*shares[tp]))
	}
	return fmt.Sprintf("%d topics: %s", len(topics), strings.Join(parts, ", "))
}

func writeFile(name string, write func(io.Writer) error) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func fail(code int, err error) {
	var lines []string
	for _, e := range unjoin(err) {
		lines = append(lines, "mistsend: "+e.Error())
	}
	fmt.Fprintln(os.Stderr, strings.Join(lines, "\n"))
	os.Exit(code)
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
