// Command macro is the bridge's macro benchmark: in one run, on one machine,
// the same signed, unique Mist-shaped load (test/loadgen, the engine of
// cmd/mistsend) against
//
//   - the HTTP ceiling: a server that reads the body and answers 200;
//   - the bridge on its embedded NATS JetStream (the default);
//   - the bridge on Kafka: kfake, franz-go's Kafka-protocol broker, in this
//     process (each target gets a fresh one);
//   - the same with MISTBRIDGE_ACK_MODE=broker and =spool (hybrid is the
//     default of the rows above), to show what each answer promise costs;
//   - the real Apache Kafka and nats-server of the e2e suite when E2E_KAFKA
//     and E2E_NATS are set (test/e2e/brokers.sh start; eval "$(brokers.sh
//     env | sed 's/^/export /')").
//
// Each target is a separate process (the bridge built from ./cmd/mistbridge,
// or -bridge-bin), started fresh; its CPU (utime+stime from /proc/<pid>/stat)
// is read before and after each measured point, its peak RSS (VmHWM) after
// the maximum-rate point. Points: "max", a closed loop of -conns connections
// after a warm-up; "half", a fixed rate of half the max events/s, latency
// from each request's scheduled time. With -overload N, a third point offers
// N times the max (from -overload-conns connections) and samples the bridge's memory
// gauges. The events each broker stored during a point are counted too
// (JetStream stream messages, Kafka end offsets over mist.* topics), to show
// that every answered event is there once.
//
//	go run ./test/macro                       # make bench-macro
//	go run ./test/macro -targets ceiling,nats -duration 5s
//
// It prints Markdown tables (and writes them to -out when given): figures
// only compare within one run, as ratios against the ceiling.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mistbridge/mistbridge/test/loadgen"
)

const secret = "macro-benchmark-secret"

type options struct {
	duration, warmup time.Duration
	conns            int
	batch            int
	mix              string
	targets          []string
	bridgeBin        string
	overload         float64
	overloadConns    int
	out              string
	verbose          bool
}

func main() {
	var o options
	ceiling := flag.String("serve-ceiling", "", "internal: serve the read-and-200 ceiling on this address")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured length of each point")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured load before the max point (a second before the others)")
	flag.IntVar(&o.conns, "conns", 32, "connections (requests in flight) of every point")
	flag.IntVar(&o.batch, "batch", 10, "events per request")
	flag.StringVar(&o.mix, "mix", "realistic", "topic mix (see mistsend -mix)")
	targets := flag.String("targets", "ceiling,nats,kafka,kafka-broker,kafka-spool,e2e-kafka,e2e-nats",
		"targets, in order: ceiling, nats, kafka, kafka-broker, kafka-spool, nats-broker, nats-spool, e2e-kafka, e2e-nats (e2e-* only when E2E_KAFKA / E2E_NATS are set)")
	flag.StringVar(&o.bridgeBin, "bridge-bin", "", "a built mistbridge to measure (default: go build ./cmd/mistbridge)")
	flag.Float64Var(&o.overload, "overload", 0, "add a point offering this many times the max rate (0: none)")
	flag.IntVar(&o.overloadConns, "overload-conns", 1000, "connections of the overload point (the bridge's per-address cap is raised to match)")
	flag.StringVar(&o.out, "out", "", "also write the tables to this file")
	flag.BoolVar(&o.verbose, "v", false, "pass the servers' logs through")
	flag.Parse()
	if *ceiling != "" {
		serveCeiling(*ceiling)
		return
	}
	o.targets = strings.Split(*targets, ",")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "macro:", err)
		os.Exit(1)
	}
}

// serveCeiling is the ceiling: net/http, the whole body read, 200, nothing else.
func serveCeiling(addr string) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"accepted":10}` + "\n"))
	})
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	_ = srv.ListenAndServe()
}

// target is one server under load and how to count what it stored.
type target struct {
	key, name string
	env       []string // nil: the ceiling
	count     func(context.Context) (int64, error)
	setup     func() error // before start: e.g. a fresh kfake
	cleanup   func()
}

type point struct {
	name    string
	res     *loadgen.Result
	cpu     float64 // the server's CPU seconds during the point
	selfCPU float64 // this process's (load generator, and kfake when in process)
	stored  int64   // events the broker gained; -1 when not counted
	peaks   string
}

type outcome struct {
	t      *target
	points []point
	rss    float64 // MiB, VmHWM after the max point
	rssEnd float64 // MiB, VmHWM at the end
	err    error
}

func run(ctx context.Context, o options) error {
	began, loadBefore := time.Now(), loadAverage()
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "mistbridge-macro-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := o.bridgeBin
	if bin == "" {
		bin = filepath.Join(tmp, "mistbridge")
		fmt.Fprintln(os.Stderr, "macro: go build ./cmd/mistbridge")
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/mistbridge")
		build.Dir, build.Stdout, build.Stderr = root, os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("go build ./cmd/mistbridge: %w (or give -bridge-bin)", err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	samples, err := loadgen.Samples(filepath.Join(root, "deploy", "samples"))
	if err != nil {
		return err
	}
	mix, err := loadgen.ParseMix(o.mix)
	if err != nil {
		return err
	}
	traffic, err := loadgen.NewTraffic(samples, loadgen.TrafficOptions{Mix: mix})
	if err != nil {
		return err
	}

	var outcomes []outcome
	for _, key := range o.targets {
		t, ok, err := makeTarget(strings.TrimSpace(key), tmp, o)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(os.Stderr, "macro: %s\n", t.name)
		oc := measureTarget(ctx, t, o, bin, self, tmp, traffic)
		if oc.err != nil {
			fmt.Fprintf(os.Stderr, "macro: %s: %v\n", t.name, oc.err)
		}
		outcomes = append(outcomes, oc)
	}
	report := render(o, traffic, outcomes, time.Since(began), loadBefore, loadAverage())
	fmt.Print(report)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(report), 0o644); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

// makeTarget returns the target a key names; ok is false for an e2e target
// whose broker is not configured.
func makeTarget(key, tmp string, o options) (*target, bool, error) {
	base := func(extra ...string) []string {
		env := []string{
			"MISTBRIDGE_WEBHOOK_SECRET=" + secret, "MISTBRIDGE_LOG_LEVEL=warn",
			"MISTBRIDGE_DATA_DIR=" + filepath.Join(tmp, "data-"+key),
			"MISTBRIDGE_NATS_EMBEDDED_ADDR=" + freeAddr(),
			"MISTBRIDGE_DRAIN_DELAY=0s", "MISTBRIDGE_SHUTDOWN_TIMEOUT=10s",
		}
		if o.overload > 0 {
			// One client address opens them all in the overload point.
			env = append(env, fmt.Sprintf("MISTBRIDGE_MAX_CONNECTIONS_PER_IP=%d", o.overloadConns),
				fmt.Sprintf("MISTBRIDGE_MAX_CONNECTIONS=%d", max(o.overloadConns, 1024)))
		}
		return append(env, extra...)
	}
	embeddedNATS := func(t *target) {
		for _, kv := range t.env {
			if a, ok := strings.CutPrefix(kv, "MISTBRIDGE_NATS_EMBEDDED_ADDR="); ok {
				t.count = natsCounter("nats://" + a)
			}
		}
	}
	withKfake := func(t *target) {
		var kc *kfake.Cluster
		t.setup = func() error {
			var err error
			kc, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(3))
			if err != nil {
				return err
			}
			t.env = append(t.env, "MISTBRIDGE_KAFKA_BROKERS="+strings.Join(kc.ListenAddrs(), ","))
			t.count = kafkaCounter(kc.ListenAddrs())
			return nil
		}
		t.cleanup = func() {
			if kc != nil {
				kc.Close()
			}
		}
	}
	t := &target{}
	switch key {
	case "ceiling":
		*t = target{key: key, name: "HTTP ceiling (read body, answer 200)"}
	case "nats", "nats-broker", "nats-spool":
		mode := ackMode(key)
		*t = target{key: key, name: "bridge -> JetStream (embedded), ack " + mode, env: base("MISTBRIDGE_SINKS=nats", "MISTBRIDGE_ACK_MODE="+mode)}
		embeddedNATS(t)
	case "kafka", "kafka-broker", "kafka-spool":
		mode := ackMode(key)
		*t = target{key: key, name: "bridge -> Kafka (kfake, in process), ack " + mode, env: base("MISTBRIDGE_SINKS=kafka", "MISTBRIDGE_ACK_MODE="+mode)}
		withKfake(t)
	case "e2e-kafka":
		addr := os.Getenv("E2E_KAFKA")
		if addr == "" {
			fmt.Fprintln(os.Stderr, "macro: e2e-kafka skipped: E2E_KAFKA is not set (test/e2e/brokers.sh start, then env)")
			return nil, false, nil
		}
		*t = target{key: key, name: "bridge -> Apache Kafka (e2e), ack hybrid", env: base("MISTBRIDGE_SINKS=kafka", "MISTBRIDGE_KAFKA_BROKERS="+addr)}
		t.count = kafkaCounter(strings.Split(addr, ","))
	case "e2e-nats":
		url := os.Getenv("E2E_NATS")
		if url == "" {
			fmt.Fprintln(os.Stderr, "macro: e2e-nats skipped: E2E_NATS is not set (test/e2e/brokers.sh start, then env)")
			return nil, false, nil
		}
		*t = target{key: key, name: "bridge -> nats-server JetStream (e2e), ack hybrid", env: base("MISTBRIDGE_SINKS=nats", "MISTBRIDGE_NATS_URL="+url)}
		t.count = natsCounter(url)
	default:
		return nil, false, fmt.Errorf("unknown target %q", key)
	}
	return t, true, nil
}

func ackMode(key string) string {
	if _, mode, ok := strings.Cut(key, "-"); ok {
		return mode
	}
	return "hybrid"
}

func measureTarget(ctx context.Context, t *target, o options, bin, self, tmp string, traffic *loadgen.Traffic) (oc outcome) {
	oc.t = t
	if t.cleanup != nil {
		defer t.cleanup()
	}
	if t.setup != nil {
		if oc.err = t.setup(); oc.err != nil {
			return oc
		}
	}
	addr := freeAddr()
	logPath := filepath.Join(tmp, t.key+".log")
	var p *proc
	if t.env == nil {
		p, oc.err = start(ctx, self, []string{"-serve-ceiling", addr}, nil, "http://"+addr+"/readyz", logPath, o.verbose)
	} else {
		p, oc.err = start(ctx, bin, nil, append(t.env, "MISTBRIDGE_LISTEN_ADDR="+addr), "http://"+addr+"/readyz", logPath, o.verbose)
	}
	if oc.err != nil {
		return oc
	}
	defer p.stop()
	url := "http://" + addr + "/webhooks/mist"
	cfg := loadgen.Config{URL: url, Secret: secret, Batch: o.batch, Concurrency: o.conns, Traffic: traffic, Timeout: 30 * time.Second}

	warm := cfg
	warm.Duration = o.warmup
	if _, err := loadgen.Run(ctx, warm); err != nil {
		oc.err = err
		return oc
	}
	maxCfg := cfg
	maxCfg.Duration = o.duration
	pt, err := measure(ctx, p, t, "max", maxCfg)
	if err != nil {
		oc.err = err
		return oc
	}
	oc.points = append(oc.points, pt)
	oc.rss = p.peakRSS()
	maxRate := pt.res.EventsPerSec()
	if maxRate <= 0 {
		oc.err = fmt.Errorf("no event answered 2xx at max rate (%s; %v); log: %s", pt.res.CodeList(), pt.res.Answers, logPath)
		return oc
	}

	half := cfg
	half.Rate = maxRate / 2
	warm = half
	warm.Duration = time.Second
	if _, err := loadgen.Run(ctx, warm); err != nil {
		oc.err = err
		return oc
	}
	half.Duration = o.duration
	if pt, err = measure(ctx, p, t, "half", half); err != nil {
		oc.err = err
		return oc
	}
	oc.points = append(oc.points, pt)

	if o.overload > 0 && t.env != nil {
		over := cfg
		over.Rate, over.Concurrency, over.Duration = o.overload*maxRate, o.overloadConns, o.duration
		peaks := watchMetrics(ctx, "http://"+addr+"/metrics", o.duration)
		pt, err = measure(ctx, p, t, fmt.Sprintf("%gx", o.overload), over)
		if err != nil {
			oc.err = err
			return oc
		}
		pt.peaks = <-peaks
		oc.points = append(oc.points, pt)
	}
	oc.rssEnd = p.peakRSS()
	return oc
}

// measure runs one point and reads the server's CPU and the broker's count
// around it.
func measure(ctx context.Context, p *proc, t *target, name string, cfg loadgen.Config) (point, error) {
	pt := point{name: name, stored: -1}
	var before int64
	var countErr error
	if t.count != nil {
		// What an earlier point left to deliver (the spool's backlog) must
		// not count in this one.
		before, countErr = steady(ctx, t.count)
	}
	c0, s0 := p.cpu(), selfCPU()
	res, err := loadgen.Run(ctx, cfg)
	if err != nil {
		return pt, err
	}
	pt.cpu, pt.selfCPU, pt.res = p.cpu()-c0, selfCPU()-s0, res
	if t.count != nil && countErr == nil {
		pt.stored = settle(ctx, t.count, before, int64(res.Events))
	}
	return pt, nil
}

// settle waits (up to 15s) until the broker holds want events more than
// before, or its count stops moving for a second, and returns the gain.
func settle(ctx context.Context, count func(context.Context) (int64, error), before, want int64) int64 {
	deadline := time.Now().Add(15 * time.Second)
	last, still := int64(-1), time.Now()
	for {
		n, err := count(ctx)
		if err != nil {
			return -1
		}
		gain := n - before
		if gain >= want || time.Now().After(deadline) || ctx.Err() != nil {
			return gain
		}
		if gain != last {
			last, still = gain, time.Now()
		} else if time.Since(still) > time.Second {
			return gain
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// steady returns the broker's count once it has not moved for half a
// second (at most 15s).
func steady(ctx context.Context, count func(context.Context) (int64, error)) (int64, error) {
	deadline := time.Now().Add(15 * time.Second)
	last, err := count(ctx)
	for err == nil && time.Now().Before(deadline) && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
		var n int64
		if n, err = count(ctx); err == nil && n == last {
			return n, nil
		}
		last = n
	}
	return last, err
}

// natsCounter counts the messages of the bridge's stream, MIST.
func natsCounter(url string) func(context.Context) (int64, error) {
	var js jetstream.JetStream
	return func(ctx context.Context) (int64, error) {
		if js == nil {
			nc, err := nats.Connect(url, nats.Name("macro-count"))
			if err != nil {
				return 0, err
			}
			if js, err = jetstream.New(nc); err != nil {
				return 0, err
			}
		}
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, "MIST")
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return 0, err
		}
		return int64(info.State.Msgs), nil
	}
}

// kafkaCounter sums the end offsets of every mist.* topic's partitions.
func kafkaCounter(brokers []string) func(context.Context) (int64, error) {
	var cl *kgo.Client
	return func(ctx context.Context) (int64, error) {
		if cl == nil {
			var err error
			if cl, err = kgo.NewClient(kgo.SeedBrokers(brokers...)); err != nil {
				return 0, err
			}
		}
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		meta, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl)
		if err != nil {
			return 0, err
		}
		req := kmsg.NewPtrListOffsetsRequest()
		for _, mt := range meta.Topics {
			if mt.Topic == nil || !strings.HasPrefix(*mt.Topic, "mist.") {
				continue
			}
			rt := kmsg.NewListOffsetsRequestTopic()
			rt.Topic = *mt.Topic
			for _, mp := range mt.Partitions {
				rp := kmsg.NewListOffsetsRequestTopicPartition()
				rp.Partition, rp.Timestamp, rp.CurrentLeaderEpoch = mp.Partition, -1, -1
				rt.Partitions = append(rt.Partitions, rp)
			}
			req.Topics = append(req.Topics, rt)
		}
		if len(req.Topics) == 0 {
			return 0, nil
		}
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return 0, err
		}
		var n int64
		for _, rt := range resp.Topics {
			for _, rp := range rt.Partitions {
				if rp.ErrorCode != 0 {
					return 0, fmt.Errorf("list offsets %s/%d: error code %d", rt.Topic, rp.Partition, rp.ErrorCode)
				}
				n += rp.Offset
			}
		}
		return n, nil
	}
}

// proc is a server under test, run as a child process so that its CPU and
// memory are its own.
type proc struct {
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
}

func start(ctx context.Context, bin string, args, env []string, readyURL, logPath string, verbose bool) (*proc, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if verbose {
		cmd.Stdout, cmd.Stderr = io.MultiWriter(lf, os.Stderr), io.MultiWriter(lf, os.Stderr)
	}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	p := &proc{cmd: cmd, log: lf, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		select {
		case <-p.done:
			return nil, fmt.Errorf("%s exited at start: %s", filepath.Base(bin), tail(logPath))
		default:
		}
		if resp, err := http.Get(readyURL); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.stop()
	return nil, fmt.Errorf("%s was not ready at %s within 60s: %s", filepath.Base(bin), readyURL, tail(logPath))
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.log.Close()
}

// cpu returns the process's user+system CPU seconds so far.
func (p *proc) cpu() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces): state is
	// field 3, utime 14, stime 15.
	rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// peakRSS returns VmHWM in MiB.
func (p *proc) peakRSS() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(len(lines)-5, 0):], " | ")
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory: run from the repository")
		}
		dir = parent
	}
}

// watchMetrics samples the bridge's memory gauges for d and sends their
// peaks, so that an RSS figure under overload can be explained.
func watchMetrics(ctx context.Context, url string, d time.Duration) <-chan string {
	out := make(chan string, 1)
	names := []string{"go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes", "go_goroutines", "mistbridge_inflight_events", "mistbridge_inflight_bytes"}
	go func() {
		peak := map[string]float64{}
		deadline := time.Now().Add(d)
		for time.Now().Before(deadline) && ctx.Err() == nil {
			if resp, err := http.Get(url); err == nil {
				sc := bufio.NewScanner(resp.Body)
				for sc.Scan() {
					for _, n := range names {
						if v, ok := strings.CutPrefix(sc.Text(), n+" "); ok {
							f, _ := strconv.ParseFloat(v, 64)
							peak[n] = max(peak[n], f)
						}
					}
				}
				resp.Body.Close()
			}
			time.Sleep(250 * time.Millisecond)
		}
		var parts []string
		for _, n := range names {
			short := strings.TrimPrefix(strings.TrimPrefix(strings.TrimPrefix(n, "go_memstats_"), "go_"), "mistbridge_")
			if strings.HasSuffix(n, "bytes") {
				parts = append(parts, fmt.Sprintf("%s %.0f MiB", short, peak[n]/(1<<20)))
			} else {
				parts = append(parts, fmt.Sprintf("%s %.0f", short, peak[n]))
			}
		}
		out <- strings.Join(parts, ", ")
	}()
	return out
}

// render writes the results as Markdown.
func render(o options, traffic *loadgen.Traffic, outcomes []outcome, took time.Duration, loadBefore, loadAfter string) string {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "## Macro benchmark, %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "%d CPUs (GOMAXPROCS %d), %s/%s, host %s; %d connections, %d-event requests of %d Mist topics (-mix %s), every event unique and signed (X-Mist-Signature-v2 and v1); %v per point after a warm-up; the run took %v; load average (1, 5, 15 min) %s before, %s after.\n\n",
		numCPU(), runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, host, o.conns, o.batch, len(traffic.Topics()), o.mix, o.duration, took.Round(time.Second), loadBefore, loadAfter)
	var ceil *outcome
	for i := range outcomes {
		if outcomes[i].t.env == nil && len(outcomes[i].points) > 0 {
			ceil = &outcomes[i]
		}
	}
	ratio := func(v, c float64) string {
		if c <= 0 || v <= 0 {
			return "–"
		}
		return fmt.Sprintf("%.2fx", v/c)
	}
	perM := func(pt point) float64 {
		if pt.res.Events == 0 {
			return 0
		}
		return pt.cpu / float64(pt.res.Events) * 1e6
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d.Microseconds())/1000) }

	b.WriteString("| target | max events/s | x ceiling | CPU-s per M events (max) | x ceiling | half rate: events/s | p50 ms | p99 ms | CPU-s per M events | peak RSS MiB |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, oc := range outcomes {
		if len(oc.points) < 2 {
			fmt.Fprintf(&b, "| %s | failed: %v |||||||||\n", oc.t.name, oc.err)
			continue
		}
		mx, hf := oc.points[0], oc.points[1]
		var cmx point
		if ceil != nil {
			cmx = ceil.points[0]
		}
		xEv, xCPU := "1.00x", "1.00x"
		if oc.t.env != nil {
			xEv, xCPU = "–", "–"
			if ceil != nil {
				xEv, xCPU = ratio(mx.res.EventsPerSec(), cmx.res.EventsPerSec()), ratio(perM(mx), perM(cmx))
			}
		}
		fmt.Fprintf(&b, "| %s | %.0f | %s | %.1f | %s | %.0f | %s | %s | %.1f | %.0f |\n",
			oc.t.name, mx.res.EventsPerSec(), xEv, perM(mx), xCPU,
			hf.res.EventsPerSec(), ms(hf.res.Percentile(.50)), ms(hf.res.Percentile(.99)), perM(hf), oc.rss)
	}
	b.WriteString("\nEvery point (latency of 2xx answers: at max rate from the send, so it is latency at saturation; at a fixed rate from the scheduled send time; \"stored\" is what the broker gained over the events answered 2xx; \"gen CPU\" is this process's, the load generator and, for kfake rows, the broker):\n\n")
	b.WriteString("| target | point | events/s | p50 ms | p99 ms | max ms | requests by status | errors | unsent | server CPU s | gen CPU s | stored / answered |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|\n")
	for _, oc := range outcomes {
		for _, pt := range oc.points {
			r := pt.res
			stored := "–"
			if pt.stored >= 0 && r.Events > 0 {
				stored = fmt.Sprintf("%d / %d", pt.stored, r.Events)
			}
			target := pt.name
			if r.Rate > 0 {
				target = fmt.Sprintf("%s (%.0f/s)", pt.name, r.Rate)
			}
			fmt.Fprintf(&b, "| %s | %s | %.0f | %s | %s | %s | %s | %d | %d | %.2f | %.2f | %s |\n",
				oc.t.name, target, r.EventsPerSec(), ms(r.Percentile(.5)), ms(r.Percentile(.99)),
				ms(time.Duration(r.Latency.Max())*time.Microsecond), r.CodeList(), r.Errors, r.Unsent, pt.cpu, pt.selfCPU, stored)
		}
	}
	var notes []string
	for _, oc := range outcomes {
		if oc.err != nil && len(oc.points) >= 2 {
			notes = append(notes, fmt.Sprintf("%s: %v", oc.t.name, oc.err))
		}
		for _, pt := range oc.points {
			if pt.peaks != "" {
				notes = append(notes, fmt.Sprintf("%s, %s: peak RSS %.0f MiB; peaks: %s", oc.t.name, pt.name, oc.rssEnd, pt.peaks))
			}
			for code, body := range pt.res.Answers {
				notes = append(notes, fmt.Sprintf("%s, %s: %d says %s", oc.t.name, pt.name, code, strings.TrimSpace(body)))
			}
			if pt.res.FirstError != "" {
				notes = append(notes, fmt.Sprintf("%s, %s: first error: %s", oc.t.name, pt.name, pt.res.FirstError))
			}
		}
	}
	if len(notes) > 0 {
		slices.Sort(notes)
		b.WriteString("\n")
		for _, n := range slices.Compact(notes) {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}

// loadAverage is the machine's load average, which says how much else ran
// on the CPUs the figures share.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	if n := strings.Count(string(b), "processor\t:"); n > 0 {
		return n
	}
	return runtime.NumCPU()
}
