package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Config describes a load run. The zero value of each field but URL means
// its documented default.
type Config struct {
	// URL is the webhook endpoint, e.g. http://localhost:8080/webhooks/mist.
	URL string

	// Secret is the Mist webhook secret: a shorthand for Auth.Secret when
	// Auth has no secret of its own.
	Secret string

	// Auth signs each request. The default signs with Mist's scheme when a
	// secret is given, and not at all otherwise.
	Auth Auth

	// Rate is the target in events per second: requests are scheduled by
	// the clock, request n at start + n×Batch/Rate (a fixed rate, open
	// loop), and each one's latency runs from its scheduled time, so a
	// request that could not start on time (every request in flight, a
	// stalled server) counts its wait. The default, 0, is a closed loop:
	// Concurrency requests in flight, each sent as soon as the previous
	// answer is read, its latency measured from its own start.
	Rate float64

	// Batch is the number of events per request. The default is 10.
	Batch int

	// Concurrency is the most requests in flight. The default is 32.
	Concurrency int

	// Connections is the most connections open; a request waits for a free
	// one (in a fixed-rate run, that wait counts as latency). The default,
	// and the most that is useful over HTTP/1.1, is Concurrency.
	Connections int

	// Duration is how long requests are sent (after Warmup). The default
	// is 10s. Requests in flight at the end are waited for and counted.
	Duration time.Duration

	// Warmup is sent before Duration on the same connections, and not
	// counted. The default is none.
	Warmup time.Duration

	// Timeout bounds one request, from the write to the end of the answer;
	// a request past it counts as a timeout error and its connection is
	// closed. The default is 30s.
	Timeout time.Duration

	// Traffic makes the bodies. The default is one device-events event
	// (see [Body]) with fresh org, site and timestamp values, or the topic
	// Topic names.
	Traffic *Traffic

	// Topic is the topic of the default Traffic. The default is
	// "device-events".
	Topic string

	// Client is "raw" (a minimal HTTP/1.1 client, several times cheaper in
	// CPU than net/http; http:// only) or "http" (net/http). The default is
	// raw for http:// and http for https://.
	Client string

	// InsecureSkipVerify accepts any TLS certificate (test deployments).
	InsecureSkipVerify bool

	// Progress, when set, is called about every ProgressEvery (default 1s)
	// from a goroutine of the run, and once at the end.
	Progress      func(Progress)
	ProgressEvery time.Duration
}

// defaults returns c with every default filled in.
func (c Config) defaults() Config {
	if c.Auth.Secret == "" {
		c.Auth.Secret = c.Secret
	}
	if c.Batch <= 0 {
		c.Batch = 10
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 32
	}
	if c.Connections <= 0 || c.Connections > c.Concurrency {
		c.Connections = c.Concurrency
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
	if c.Topic == "" {
		c.Topic = "device-events"
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = time.Second
	}
	return c
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	c = c.defaults()
	var errs []error
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("loadgen: URL %q: want http://host[:port]/path or https://...", c.URL))
	}
	if c.Rate < 0 || math.IsInf(c.Rate, 0) || math.IsNaN(c.Rate) {
		errs = append(errs, fmt.Errorf("loadgen: rate %v: want events/s >= 0 (0: closed loop)", c.Rate))
	}
	if c.Warmup < 0 {
		errs = append(errs, fmt.Errorf("loadgen: warm-up %v is negative", c.Warmup))
	}
	switch c.Client {
	case "", "raw", "http":
	default:
		errs = append(errs, fmt.Errorf("loadgen: client %q: want raw or http", c.Client))
	}
	if err := c.Auth.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Run sends load as cfg says until cfg.Warmup+cfg.Duration has passed (or
// ctx is done: the requests in flight are then cut off and not counted) and
// returns what it measured. It fails only on an invalid cfg.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.defaults()
	u, _ := url.Parse(cfg.URL)
	cfg.Auth.applyURL(u)
	if cfg.Traffic == nil {
		t, err := NewTraffic([]Sample{{Name: "built-in", Body: Body(cfg.Topic, 0, 1)}}, TrafficOptions{})
		if err != nil {
			return nil, err
		}
		cfg.Traffic = t
	}
	p, err := newPoster(ctx, u, cfg.Client, cfg.Connections, cfg.Timeout, cfg.InsecureSkipVerify)
	if err != nil {
		return nil, err
	}
	defer p.close()
	return run(ctx, cfg, realClock{}, p), nil
}

// histMax is the largest latency recorded, in µs (an hour); more is
// recorded as an hour.
const histMax = int64(time.Hour / time.Microsecond)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, histMax, 3) }

func micros(d time.Duration) int64 {
	return min(max(d.Microseconds(), 1), histMax)
}

// shard is one lock's share of what the workers record: a few shards, so
// that 32 (or 3000) workers neither contend on one lock nor each hold
// histograms of their own (a few hundred KiB each).
type shard struct {
	mu                     sync.Mutex
	latency, service, lag  *hdrhistogram.Histogram
	codes                  map[int]int
	errs                   map[string]int
	firstErr               string
	answers                map[int]string
	requests, events, sent int
	last                   time.Time
	_                      [64]byte // keep shards on their own cache lines
}

// live is what progress reports while the run goes on.
type live struct {
	requests, events, non2xx, errors atomic.Int64
}

func run(ctx context.Context, cfg Config, clk clock, p poster) *Result {
	open := cfg.Rate > 0
	start := clk.Now().Add(10 * time.Millisecond) // every worker waits by then
	measure := start.Add(cfg.Warmup)
	deadline := measure.Add(cfg.Duration)
	var interval float64 // ns between scheduled requests
	if open {
		interval = float64(time.Second) * float64(cfg.Batch) / cfg.Rate
	}
	shards := make([]*shard, min(cfg.Concurrency, 8))
	for i := range shards {
		shards[i] = &shard{latency: newHist(), service: newHist(), lag: newHist(),
			codes: map[int]int{}, errs: map[string]int{}, answers: map[int]string{}}
	}
	var (
		next  atomic.Int64
		lv    live
		wg    sync.WaitGroup
		seeds = cfg.Traffic.seed
	)
	for i := range cfg.Concurrency {
		wg.Go(func() {
			src := cfg.Traffic.NewSource()
			sig := cfg.Auth.newSigner(seeds + uint64(i))
			wt := clk.newWaiter()
			defer wt.close()
			sh := shards[i%len(shards)]
			var body, keep []byte
			wt.until(ctx, start)
			for ctx.Err() == nil {
				var sched time.Time
				if open {
					n := next.Add(1) - 1
					sched = start.Add(time.Duration(float64(n) * interval))
					if !sched.Before(deadline) || !clk.Now().Before(deadline) {
						return // past the window, or behind at its end: unsent
					}
				} else if !clk.Now().Before(deadline) {
					return
				}
				body, _ = src.AppendBody(body[:0], cfg.Batch)
				hdrs := sig.sign(body)
				if open {
					wt.until(ctx, sched)
				}
				t0 := clk.Now()
				if !open {
					sched = t0
				}
				keep = keep[:0]
				status, err := p.post(ctx, hdrs, body, &keep)
				t1 := clk.Now()
				if err != nil && !open && errorKind(err) == ErrConnect {
					wt.until(ctx, t1.Add(10*time.Millisecond)) // nothing listens: do not spin
				}
				if sched.Before(measure) || (err != nil && ctx.Err() != nil) {
					continue // warm-up, or cut off by the caller
				}
				ok := err == nil && status >= 200 && status <= 299
				switch {
				case err != nil:
					lv.errors.Add(1)
				case ok:
					lv.requests.Add(1)
					lv.events.Add(int64(cfg.Batch))
				default:
					lv.requests.Add(1)
					lv.non2xx.Add(1)
				}
				sh.mu.Lock()
				sh.sent++
				if t1.After(sh.last) {
					sh.last = t1
				}
				if err != nil {
					kind := errorKind(err)
					sh.errs[kind]++
					if sh.firstErr == "" {
						sh.firstErr = err.Error()
					}
				} else {
					sh.requests++
					sh.codes[status]++
					if ok {
						sh.events += cfg.Batch
						_ = sh.latency.RecordValue(micros(t1.Sub(sched)))
						_ = sh.service.RecordValue(micros(t1.Sub(t0)))
						if open {
							_ = sh.lag.RecordValue(micros(t0.Sub(sched)))
						}
					} else if _, seen := sh.answers[status]; !seen {
						sh.answers[status] = string(keep)
					}
				}
				sh.mu.Unlock()
			}
		})
	}

	done := make(chan struct{})
	var pg sync.WaitGroup
	if cfg.Progress != nil {
		pg.Go(func() { reportProgress(cfg, clk, start, measure, deadline, &lv, done) })
	}
	wg.Wait()
	close(done)
	pg.Wait()

	res := &Result{Rate: cfg.Rate, Batch: cfg.Batch, Concurrency: cfg.Concurrency, Connections: cfg.Connections,
		Duration: cfg.Duration, Codes: map[int]int{}, ErrorKinds: map[string]int{}, Answers: map[int]string{},
		Latency: newHist(), Service: newHist(), Lag: newHist()}
	var last time.Time
	sent := 0
	for _, sh := range shards {
		res.Requests += sh.requests
		res.Events += sh.events
		sent += sh.sent
		for k, v := range sh.codes {
			res.Codes[k] += v
		}
		for k, v := range sh.errs {
			res.ErrorKinds[k] += v
			res.Errors += v
		}
		for k, v := range sh.answers {
			res.Answers[k] = v
		}
		if res.FirstError == "" {
			res.FirstError = sh.firstErr
		}
		res.Latency.Merge(sh.latency)
		res.Service.Merge(sh.service)
		res.Lag.Merge(sh.lag)
		if sh.last.After(last) {
			last = sh.last
		}
	}
	res.Elapsed = cfg.Duration
	if last.After(measure) {
		res.Elapsed = last.Sub(measure)
	}
	if open {
		first := int(math.Ceil(float64(measure.Sub(start)) / interval))
		end := int(math.Ceil(float64(deadline.Sub(start)) / interval))
		res.Unsent = max(end-first-sent, 0)
	}
	return res
}

func reportProgress(cfg Config, clk clock, start, measure, deadline time.Time, lv *live, done <-chan struct{}) {
	t := time.NewTicker(cfg.ProgressEvery)
	defer t.Stop()
	prevAt, prevEvents := clk.Now(), int64(0)
	snap := func() Progress {
		now := clk.Now()
		ev := lv.events.Load()
		p := Progress{Elapsed: max(now.Sub(start), 0), Total: deadline.Sub(start), Warmup: now.Before(measure),
			Requests: lv.requests.Load(), Events: ev, Non2xx: lv.non2xx.Load(), Errors: lv.errors.Load()}
		if dt := now.Sub(prevAt).Seconds(); dt > 0 {
			p.Rate = float64(ev-prevEvents) / dt
		}
		prevAt, prevEvents = now, ev
		return p
	}
	for {
		select {
		case <-t.C:
			cfg.Progress(snap())
		case <-done:
			p := snap()
			p.Done = true
			cfg.Progress(p)
			return
		}
	}
}
