// Command load measures the bridge under signed 10-event batches and puts
// the figures next to a baseline measured in the same run: an HTTP handler
// that only reads the body and answers 200 (the HTTP ceiling of the machine).
//
//	go run ./test/load [-duration 10s] [-rate 5000]
//
// It builds cmd/mistbridge, runs it as a separate process (so its peak RSS
// is its own) against the embedded NATS default and against an in-process
// Kafka-protocol broker (kfake), and prints one table.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/mistbridge/mistbridge/test/loadgen"
)

const secret = "load-secret"

func main() {
	ceiling := flag.String("serve-ceiling", "", "internal: serve the read-and-200 baseline on this address")
	duration := flag.Duration("duration", 10*time.Second, "length of each measured run")
	target := flag.Float64("rate", 5000, "events/s of the fixed-rate run")
	overload := flag.Float64("overload", 10, "the overload run offers this many times the measured maximum")
	flag.Parse()
	if *ceiling != "" {
		serveCeiling(*ceiling)
		return
	}
	if err := run(*duration, *target, *overload); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

func serveCeiling(addr string) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"accepted":10}` + "\n"))
	})
	_ = http.ListenAndServe(addr, h)
}

type proc struct {
	cmd *exec.Cmd
	url string
}

func (p *proc) peakRSS() string {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return "?"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return fmt.Sprintf("%.0f MB", float64(kb)/1024)
		}
	}
	return "?"
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
	}
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func start(bin string, args []string, envs []string, readyURL string) (*proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), envs...)
	cmd.Stderr = io.Discard
	if os.Getenv("LOAD_VERBOSE") != "" {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(readyURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return &proc{cmd: cmd}, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	return nil, fmt.Errorf("%s did not become ready at %s", bin, readyURL)
}

func run(d time.Duration, target, overload float64) error {
	tmp, err := os.MkdirTemp("", "mistbridge-load-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "mistbridge")
	build := exec.Command("go", "build", "-o", bin, "./cmd/mistbridge")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(3))
	if err != nil {
		return err
	}
	defer kc.Close()

	type target_ struct {
		name  string
		start func(addr string) (*proc, error)
	}
	bridgeEnv := func(addr string, extra ...string) []string {
		return append([]string{
			"MISTBRIDGE_LISTEN_ADDR=" + addr, "MISTBRIDGE_WEBHOOK_SECRET=" + secret,
			"MISTBRIDGE_DATA_DIR=" + filepath.Join(tmp, "data-"+strings.ReplaceAll(addr, ":", "_")),
			"MISTBRIDGE_NATS_EMBEDDED_ADDR=" + freeAddr(), "MISTBRIDGE_LOG_LEVEL=warn",
		}, extra...)
	}
	targets := []target_{
		{"ceiling (read body, answer 200)", func(addr string) (*proc, error) {
			return start(self, []string{"-serve-ceiling", addr}, nil, "http://"+addr+"/")
		}},
		{"bridge, embedded NATS JetStream", func(addr string) (*proc, error) {
			return start(bin, nil, bridgeEnv(addr), "http://"+addr+"/readyz")
		}},
		{"bridge, Kafka (kfake)", func(addr string) (*proc, error) {
			return start(bin, nil, bridgeEnv(addr, "MISTBRIDGE_SINKS=kafka", "MISTBRIDGE_KAFKA_BROKERS="+strings.Join(kc.ListenAddrs(), ",")), "http://"+addr+"/readyz")
		}},
	}
	ctx := context.Background()
	fmt.Printf("%d-event signed batches, %v per run, GOMAXPROCS of this machine: %d cores\n\n", 10, d, numCPU())
	fmt.Printf("%-34s %-10s %12s %10s %10s %9s  %s\n", "target", "run", "events/s", "p50", "p99", "peak RSS", "answers")
	var ceilingMax float64
	for i, tg := range targets {
		addr := freeAddr()
		p, err := tg.start(addr)
		if err != nil {
			return err
		}
		url := "http://" + addr + "/webhooks/mist"
		loadgen.Run(ctx, loadgen.Config{URL: url, Secret: secret, Rate: 1000, Duration: time.Second}) // warm-up
		fixed := loadgen.Run(ctx, loadgen.Config{URL: url, Secret: secret, Rate: target, Concurrency: 256, Duration: d})
		report(tg.name, fmt.Sprintf("%.0f/s", target), fixed, p, 0)
		maxRun := loadgen.Run(ctx, loadgen.Config{URL: url, Secret: secret, Concurrency: 32, Duration: d})
		ratio := ""
		if i == 0 {
			ceilingMax = maxRun.EventsPerSec()
		} else if ceilingMax > 0 {
			ratio = fmt.Sprintf("  = %.2f x ceiling", maxRun.EventsPerSec()/ceilingMax)
		}
		report(tg.name, "max", maxRun, p, 0)
		if ratio != "" {
			fmt.Printf("%-34s %s\n", "", ratio)
		}
		if i > 0 {
			// Overload: offer many times what it can take, with more
			// requests in flight than the admission limit allows.
			offered := overload * maxRun.EventsPerSec()
			peaks := watchMetrics("http://"+addr+"/metrics", d)
			over := loadgen.Run(ctx, loadgen.Config{URL: url, Secret: secret, Rate: offered, Concurrency: 3000, Duration: d})
			report(tg.name, fmt.Sprintf("%.0fx", overload), over, p, offered)
			fmt.Printf("%-34s peaks during overload: %s\n", "", <-peaks)
		}
		p.stop()
	}
	return nil
}

func report(name, runName string, r loadgen.Result, p *proc, offered float64) {
	extra := ""
	if offered > 0 {
		extra = fmt.Sprintf("  offered %.0f events/s", offered)
	}
	fmt.Printf("%-34s %-10s %12.0f %10v %10v %9s  %v skipped=%d errors=%d%s\n", name, runName, r.EventsPerSec(),
		r.Percentile(.5).Round(10*time.Microsecond), r.Percentile(.99).Round(10*time.Microsecond), p.peakRSS(), r.Codes, r.Skipped, r.Errors, extra)
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}

// watchMetrics samples the bridge's Go memory gauges for d and sends their
// peaks, so an RSS figure can be explained (heap, stacks, goroutines).
func watchMetrics(url string, d time.Duration) <-chan string {
	out := make(chan string, 1)
	names := []string{"go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes", "go_goroutines", "mistbridge_inflight_events", "mistbridge_inflight_bytes"}
	go func() {
		peak := map[string]float64{}
		deadline := time.Now().Add(d)
		for time.Now().Before(deadline) {
			resp, err := http.Get(url)
			if err == nil {
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
		var b strings.Builder
		for _, n := range names {
			v := peak[n]
			if strings.HasSuffix(n, "bytes") {
				fmt.Fprintf(&b, "%s=%.0fMB ", strings.TrimPrefix(strings.TrimPrefix(n, "go_memstats_"), "mistbridge_"), v/(1<<20))
			} else {
				fmt.Fprintf(&b, "%s=%.0f ", strings.TrimPrefix(strings.TrimPrefix(n, "go_"), "mistbridge_"), v)
			}
		}
		out <- b.String()
	}()
	return out
}
