//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// secret signs every webhook; badSecret is the one an impostor knows.
const (
	secret    = "e2e-secret-4f1d9c"
	badSecret = "not-the-secret"
	stream    = "MIST"
)

// suite is what TestMain set up for every test.
var suite struct {
	root      string // module root
	tmp       string // scratch: bridge binary, data dirs, logs
	brokersSh string
	kafka     string // host:port
	natsURL   string
	managed   bool  // TestMain started the brokers, and stops them
	setupErr  error // when set every test fails with it
	bin       string
	samples   string
	procs     procTable
	nonce     string // unique per run: topics and event ids of synthetic traffic
}

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) (code int) {
	var err error
	suite.nonce = randHex(4)
	if suite.root, err = moduleRoot(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	suite.brokersSh = filepath.Join(suite.root, "test", "e2e", "brokers.sh")
	if suite.tmp, err = os.MkdirTemp("", "mistbridge-e2e-"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	suite.procs.file = filepath.Join(suite.tmp, "pgids")
	keep := os.Getenv("E2E_KEEP") != ""
	defer func() {
		if code != 0 || keep {
			fmt.Fprintf(os.Stderr, "e2e: logs and data kept in %s\n", suite.tmp)
		} else {
			os.RemoveAll(suite.tmp)
		}
	}()

	suite.samples = os.Getenv("E2E_SAMPLES")
	if suite.samples == "" {
		suite.samples = filepath.Join(suite.root, "..", "shared", "mist-samples")
		if _, err := os.Stat(suite.samples); err != nil {
			suite.samples = filepath.Join(suite.root, "deploy", "samples") // the copy the repository ships
		}
	}

	suite.kafka, suite.natsURL = os.Getenv("E2E_KAFKA"), os.Getenv("E2E_NATS")
	if suite.kafka == "" || suite.natsURL == "" {
		// Nobody started brokers for us: do it, with state of our own.
		suite.managed = true
		if os.Getenv("E2E_STATE") == "" {
			os.Setenv("E2E_STATE", filepath.Join(suite.tmp, "brokers"))
		}
		suite.kafka, suite.natsURL = "127.0.0.1:"+envOr("E2E_KAFKA_PORT", "19092"), "nats://127.0.0.1:"+envOr("E2E_NATS_PORT", "14222")
	}

	// Whatever kills this process (a panic, -timeout, SIGKILL), a watchdog
	// in a session of its own ends the bridges and our brokers after it.
	watchdog := startWatchdog()
	defer func() {
		if watchdog != nil {
			watchdog.Process.Kill()
			watchdog.Wait()
		}
	}()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "e2e: %v: stopping bridges and brokers\n", s)
		suite.procs.killAll()
		if suite.managed {
			brokers("stop")
		}
		os.Exit(2)
	}()
	defer suite.procs.killAll()

	if suite.managed {
		if err := brokers("install", "start"); err != nil {
			suite.setupErr = fmt.Errorf("brokers.sh install start: %w", err)
		}
		defer brokers("stop")
	}
	if suite.setupErr == nil {
		suite.bin, suite.setupErr = buildBridge()
	}
	return m.Run()
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			bytes.Contains(b, []byte("module github.com/mistbridge/mistbridge")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod of github.com/mistbridge/mistbridge above the working directory")
		}
		dir = parent
	}
}

// brokers runs brokers.sh with the given subcommands, its output on stderr.
func brokers(args ...string) error {
	cmd := exec.Command("bash", append([]string{suite.brokersSh}, args...)...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

func buildBridge() (string, error) {
	if bin := os.Getenv("E2E_BRIDGE_BIN"); bin != "" {
		return bin, nil
	}
	if _, err := os.Stat(filepath.Join(suite.root, "cmd", "mistbridge")); err != nil {
		return "", fmt.Errorf("no bridge to test: %w", err)
	}
	bin := filepath.Join(suite.tmp, "mistbridge")
	t0 := time.Now()
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/mistbridge")
	cmd.Dir = suite.root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/mistbridge: %w\n%s", err, out)
	}
	fmt.Fprintf(os.Stderr, "e2e: built %s in %v\n", bin, time.Since(t0).Round(time.Millisecond))
	return bin, nil
}

func startWatchdog() *exec.Cmd {
	script := `
while kill -0 "$1" 2>/dev/null; do sleep 1; done
if [ -f "$2" ]; then while read -r g; do kill -KILL -- "-$g" 2>/dev/null; done <"$2"; fi
if [ "$3" = 1 ]; then bash "$4" stop; fi`
	managed := "0"
	if suite.managed {
		managed = "1"
	}
	cmd := exec.Command("bash", "-c", script, "watchdog", strconv.Itoa(os.Getpid()), suite.procs.file, managed, suite.brokersSh)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: no watchdog:", err)
		return nil
	}
	return cmd
}

// procTable holds the process groups of live bridges, mirrored in a file
// the watchdog reads.
type procTable struct {
	mu   sync.Mutex
	file string
	pgid map[int]bool
}

func (p *procTable) add(pgid int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pgid == nil {
		p.pgid = map[int]bool{}
	}
	p.pgid[pgid] = true
	p.writeLocked()
}

func (p *procTable) remove(pgid int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.pgid, pgid)
	p.writeLocked()
}

func (p *procTable) writeLocked() {
	var b strings.Builder
	for g := range p.pgid {
		fmt.Fprintln(&b, g)
	}
	os.WriteFile(p.file, []byte(b.String()), 0o644)
}

func (p *procTable) killAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for g := range p.pgid {
		syscall.Kill(-g, syscall.SIGKILL)
	}
}

func requireSetup(t *testing.T) {
	t.Helper()
	if suite.setupErr != nil {
		t.Fatal(suite.setupErr)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// ---------------------------------------------------------------- the bridge

type bridge struct {
	name    string
	addr    string
	dataDir string
	logPath string
	env     []string
	client  *http.Client

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	err  error // from Wait
	// expectExit is set while we are stopping or killing the process.
	expectExit bool
}

// newBridge prepares a bridge on a free loopback port with a data dir of its
// own, stopped (and checked alive) when t ends.
func newBridge(t *testing.T, name string) *bridge {
	t.Helper()
	requireSetup(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := filepath.Join(suite.tmp, name)
	b := &bridge{
		name:    name,
		addr:    addr,
		dataDir: filepath.Join(dir, "data"),
		logPath: filepath.Join(dir, "bridge.log"),
		client:  &http.Client{Timeout: 30 * time.Second},
	}
	if err := os.MkdirAll(b.dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MISTBRIDGE_") {
			b.env = append(b.env, kv)
		}
	}
	b.env = append(b.env,
		"MISTBRIDGE_LISTEN_ADDR="+addr,
		"MISTBRIDGE_DATA_DIR="+b.dataDir,
		"MISTBRIDGE_WEBHOOK_SECRET="+secret,
		"MISTBRIDGE_SINKS=nats,kafka",
		"MISTBRIDGE_NATS_URL="+suite.natsURL,
		"MISTBRIDGE_KAFKA_BROKERS="+suite.kafka,
	)
	t.Cleanup(func() {
		b.mu.Lock()
		died := b.cmd != nil && !b.expectExit && b.exited()
		b.mu.Unlock()
		if died {
			t.Errorf("bridge %s exited on its own: %v\n%s", name, b.err, b.logTail(40))
		}
		b.stop(t)
		if t.Failed() {
			t.Logf("bridge %s log (%s), last lines:\n%s", name, b.logPath, b.logTail(60))
		}
	})
	return b
}

func (b *bridge) exited() bool {
	if b.done == nil {
		return false
	}
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// start runs the bridge and waits for GET /readyz to answer 200.
func (b *bridge) start(t *testing.T) {
	t.Helper()
	logf, err := os.OpenFile(b.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(logf, "===== e2e: start %s at %s\n", b.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(suite.bin)
	cmd.Dir = filepath.Dir(b.dataDir)
	cmd.Env = b.env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start bridge: %v", err)
	}
	suite.procs.add(cmd.Process.Pid)
	done := make(chan struct{})
	b.mu.Lock()
	b.cmd, b.done, b.err, b.expectExit = cmd, done, nil, false
	b.mu.Unlock()
	go func() {
		err := cmd.Wait()
		logf.Close()
		suite.procs.remove(cmd.Process.Pid)
		b.mu.Lock()
		b.err = err
		b.mu.Unlock()
		close(done)
	}()

	t0 := time.Now()
	deadline := t0.Add(60 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-done:
			t.Fatalf("bridge %s exited while starting: %v\n%s", b.name, b.err, b.logTail(40))
		default:
		}
		resp, err := b.client.Get("http://" + b.addr + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Logf("bridge %s ready on %s in %v", b.name, b.addr, time.Since(t0).Round(time.Millisecond))
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(body))
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("bridge %s: /readyz not 200 after 60s (last: %s)\n%s", b.name, last, b.logTail(40))
}

// stop sends SIGTERM and waits, then SIGKILLs the group.
func (b *bridge) stop(t *testing.T) {
	b.signal(t, syscall.SIGTERM, 30*time.Second)
}

// kill SIGKILLs the bridge's process group and waits for it.
func (b *bridge) kill(t *testing.T) {
	b.signal(t, syscall.SIGKILL, 10*time.Second)
}

func (b *bridge) signal(t *testing.T, sig syscall.Signal, wait time.Duration) {
	b.mu.Lock()
	cmd, done := b.cmd, b.done
	if cmd == nil {
		b.mu.Unlock()
		return
	}
	b.expectExit = true
	b.mu.Unlock()
	pgid := cmd.Process.Pid
	syscall.Kill(-pgid, sig)
	select {
	case <-done:
	case <-time.After(wait):
		t.Errorf("bridge %s still running %v after %v: SIGKILL", b.name, wait, sig)
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-done
	}
	syscall.Kill(-pgid, syscall.SIGKILL) // anything left in the group
	b.mu.Lock()
	b.cmd = nil
	b.mu.Unlock()
}

func (b *bridge) logTail(n int) string {
	data, err := os.ReadFile(b.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

type postResult struct {
	status int // 0 when the request failed before an answer
	body   string
	err    error
}

func (r postResult) String() string {
	if r.err != nil {
		return "error: " + r.err.Error()
	}
	return fmt.Sprintf("%d %s", r.status, r.body)
}

// post sends body to POST /webhooks/mist with the given headers.
func (b *bridge) post(body []byte, headers map[string]string) postResult {
	req, err := http.NewRequest(http.MethodPost, "http://"+b.addr+"/webhooks/mist", bytes.NewReader(body))
	if err != nil {
		return postResult{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Mist-webhook")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return postResult{err: err}
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return postResult{status: resp.StatusCode, body: string(bytes.TrimSpace(rb))}
}

// postSigned sends body signed the way Mist does: HMAC-SHA256 hex of the raw
// body in X-Mist-Signature-v2.
func (b *bridge) postSigned(body []byte) postResult {
	return b.post(body, map[string]string{"X-Mist-Signature-v2": signV2(secret, body)})
}

func signV2(key string, body []byte) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

func signV1(key string, body []byte) string {
	m := hmac.New(sha1.New, []byte(key))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// ---------------------------------------------------------------- expectations

// sent is one event as posted, with what the contract says about it.
type sent struct {
	topic string
	raw   []byte // the event's bytes exactly as in the body
	org   string
	site  string
	label string // for messages: file#index or seq
}

func (s sent) kafkaTopic() string { return "mist." + s.topic }

func (s sent) subject() string {
	return "mist." + token(s.topic) + "." + token(s.org) + "." + token(s.site)
}

// key is the record key: the site, else the org, bounded as the README
// says: an id over 256 bytes becomes its first 256 bytes (cut back to the
// start of a UTF-8 sequence), "~" and 12 chars of lowercase unpadded base32
// of its SHA-256.
func (s sent) key() string {
	k := s.site
	if k == "" {
		k = s.org
	}
	if len(k) <= 256 {
		return k
	}
	cut := 256
	for cut > 0 && !utf8.RuneStart(k[cut]) {
		cut--
	}
	sum := sha256.Sum256([]byte(k))
	return k[:cut] + "~" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:]))[:12]
}

// token is the subject token of an org or site id, written from the
// README's contract (not the bridge's code): "_" when missing (the samples
// have no empty ids); a clean value (1-64 ASCII letters, digits, '-', '_',
// not starting with '_') as is; else "_" + its first 24 bytes with other
// bytes turned to '-' + "_" + 12 chars of lowercase unpadded base32 of its
// SHA-256.
func token(s string) string {
	if s == "" {
		return "_"
	}
	clean := len(s) <= 64 && s[0] != '_'
	var prefix []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
		if !ok {
			clean = false
			c = '-'
		}
		if i < 24 {
			prefix = append(prefix, c)
		}
	}
	if clean {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	h := strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:]))
	return "_" + string(prefix) + "_" + h[:12]
}

// splitBody returns the events of a Mist body, each as the exact sub-slice
// of body, with org and site read the way the contract says: org_id else
// orgid, site_id else siteid, strings only.
func splitBody(t *testing.T, body []byte, label string) (string, []sent) {
	t.Helper()
	var env struct {
		Topic  string            `json:"topic"`
		Events []json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("%s: %v", label, err)
	}
	out := make([]sent, len(env.Events))
	for i, raw := range env.Events {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s: events[%d]: %v", label, i, err)
		}
		out[i] = sent{
			topic: env.Topic,
			raw:   raw,
			org:   firstString(m["org_id"], m["orgid"]),
			site:  firstString(m["site_id"], m["siteid"]),
			label: fmt.Sprintf("%s#%d", label, i),
		}
	}
	return env.Topic, out
}

func firstString(vals ...json.RawMessage) string {
	for _, v := range vals {
		var s string
		if len(v) > 0 && v[0] == '"' && json.Unmarshal(v, &s) == nil && s != "" {
			return s
		}
	}
	return ""
}

// ---------------------------------------------------------------- kafka via kcat

type kafkaMsg struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       *string
	Headers   map[string][]string
	Payload   *string
}

func (m kafkaMsg) header(k string) string {
	if v := m.Headers[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// readKafka reads every record of topic from the beginning with
// `kcat -C -o beginning -e -J`. A topic that does not exist reads as empty.
func readKafka(topic string) ([]kafkaMsg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kcat", "-C", "-b", suite.kafka, "-t", topic,
		"-o", "beginning", "-e", "-J", "-q",
		"-X", "topic.metadata.refresh.interval.ms=1000")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if strings.Contains(stderr.String(), "Unknown topic or partition") {
			return nil, nil
		}
		return nil, fmt.Errorf("kcat -C -t %s: %v: %s", topic, err, strings.TrimSpace(stderr.String()))
	}
	var msgs []kafkaMsg
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var j struct {
			Topic     string          `json:"topic"`
			Partition int32           `json:"partition"`
			Offset    int64           `json:"offset"`
			Headers   json.RawMessage `json:"headers"`
			Key       *string         `json:"key"`
			Payload   *string         `json:"payload"`
		}
		if err := json.Unmarshal(line, &j); err != nil {
			return nil, fmt.Errorf("kcat -J line %q: %v", truncate(string(line), 200), err)
		}
		h, err := parseKcatHeaders(j.Headers)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, kafkaMsg{Topic: j.Topic, Partition: j.Partition, Offset: j.Offset, Key: j.Key, Headers: h, Payload: j.Payload})
	}
	return msgs, sc.Err()
}

// parseKcatHeaders reads kcat's "headers": kcat 1.7 writes a flat array
// [name, value, name, value, ...]; its help text documents an object.
func parseKcatHeaders(raw json.RawMessage) (map[string][]string, error) {
	h := map[string][]string{}
	if len(raw) == 0 || string(raw) == "null" {
		return h, nil
	}
	if raw[0] == '{' {
		var m map[string]*string
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("kcat headers %s: %v", raw, err)
		}
		for k, v := range m {
			if v != nil {
				h[k] = append(h[k], *v)
			} else {
				h[k] = append(h[k], "")
			}
		}
		return h, nil
	}
	var a []*string
	if err := json.Unmarshal(raw, &a); err != nil || len(a)%2 != 0 {
		return nil, fmt.Errorf("kcat headers %s: want [name, value, ...]: %v", raw, err)
	}
	for i := 0; i < len(a); i += 2 {
		if a[i] == nil {
			continue
		}
		v := ""
		if a[i+1] != nil {
			v = *a[i+1]
		}
		h[*a[i]] = append(h[*a[i]], v)
	}
	return h, nil
}

// kafkaEndOffsets returns, for every topic named, the end offset of each
// partition (absent when the topic does not exist): records below it were
// there before.
func kafkaEndOffsets(topics []string) (map[string]map[int32]int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "kcat", "-L", "-J", "-b", suite.kafka).Output()
	if err != nil {
		return nil, fmt.Errorf("kcat -L: %v", err)
	}
	var md struct {
		Topics []struct {
			Topic      string `json:"topic"`
			Partitions []struct {
				Partition int32 `json:"partition"`
			} `json:"partitions"`
		} `json:"topics"`
	}
	if err := json.Unmarshal(out, &md); err != nil {
		return nil, fmt.Errorf("kcat -L -J: %v", err)
	}
	want := map[string]bool{}
	for _, tp := range topics {
		want[tp] = true
	}
	args := []string{"-Q", "-b", suite.kafka}
	for _, tp := range md.Topics {
		if want[tp.Topic] {
			for _, p := range tp.Partitions {
				args = append(args, "-t", fmt.Sprintf("%s:%d:-1", tp.Topic, p.Partition))
			}
		}
	}
	res := map[string]map[int32]int64{}
	if len(args) == 3 {
		return res, nil
	}
	out, err = exec.CommandContext(ctx, "kcat", args...).Output()
	if err != nil {
		return nil, fmt.Errorf("kcat -Q: %v", err)
	}
	// "mist.x [2] offset 5"
	for _, line := range strings.Split(string(out), "\n") {
		var topic string
		var p int32
		var off int64
		if n, _ := fmt.Sscanf(line, "%s [%d] offset %d", &topic, &p, &off); n == 3 {
			if res[topic] == nil {
				res[topic] = map[int32]int64{}
			}
			res[topic][p] = off
		}
	}
	return res, nil
}

func kafkaPartitions(topic string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "kcat", "-L", "-J", "-b", suite.kafka, "-t", topic).Output()
	if err != nil {
		return 0, fmt.Errorf("kcat -L -t %s: %v", topic, err)
	}
	var md struct {
		Topics []struct {
			Partitions []json.RawMessage `json:"partitions"`
		} `json:"topics"`
	}
	if err := json.Unmarshal(out, &md); err != nil || len(md.Topics) != 1 {
		return 0, fmt.Errorf("kcat -L -J -t %s: %v %s", topic, err, truncate(string(out), 200))
	}
	return len(md.Topics[0].Partitions), nil
}

// murmur2 is Kafka's Utils.murmur2; the Java default partitioner puts a
// keyed record on toPositive(murmur2(key)) % partitions.
func murmur2(data []byte) int32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	n := len(data)
	h := seed ^ uint32(n)
	for i := 0; i+4 <= n; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := n &^ 3
	switch n % 4 {
	case 3:
		h ^= uint32(data[tail+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[tail+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[tail])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

func javaPartition(key string, partitions int) int32 {
	return int32(int64(murmur2([]byte(key))&0x7fffffff) % int64(partitions))
}

// ---------------------------------------------------------------- nats via JetStream

type natsMsg struct {
	Subject string
	Seq     uint64
	Header  nats.Header
	Data    []byte
}

func connectNATS() (*nats.Conn, error) {
	return nats.Connect(suite.natsURL, nats.Name("mistbridge-e2e"), nats.Timeout(5*time.Second),
		nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
}

// streamLastSeq is the last sequence of the MIST stream, 0 when it does not
// exist yet.
func streamLastSeq() (uint64, error) {
	nc, err := connectNATS()
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
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
	return info.State.LastSeq, nil
}

// readNATS reads the messages of the MIST stream on filter with a sequence
// above after, through an ordered consumer.
func readNATS(filter string, after uint64) ([]natsMsg, error) {
	nc, err := connectNATS()
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("JetStream stream %s: %w", stream, err)
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, InactiveThreshold: 30 * time.Second}
	if after > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, after+1
	}
	cons, err := s.OrderedConsumer(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("ordered consumer on %s: %w", filter, err)
	}
	var out []natsMsg
	for {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return nil, fmt.Errorf("fetch %s: %w", filter, err)
		}
		got, pending := 0, uint64(1)
		for msg := range batch.Messages() {
			got++
			md, err := msg.Metadata()
			if err != nil {
				return nil, err
			}
			pending = md.NumPending
			out = append(out, natsMsg{Subject: msg.Subject(), Seq: md.Sequence.Stream, Header: msg.Headers(), Data: slices.Clone(msg.Data())})
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, fmt.Errorf("fetch %s: %w", filter, err)
		}
		if got == 0 || pending == 0 {
			return out, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
}

func natsHeader(h nats.Header, k string) string {
	if v := h[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// ---------------------------------------------------------------- checks

// checkKafka verifies one record against the event it carries.
func checkKafka(t *testing.T, s sent, m kafkaMsg, partitions int) {
	t.Helper()
	where := fmt.Sprintf("%s: kafka %s[%d]@%d", s.label, m.Topic, m.Partition, m.Offset)
	if m.Topic != s.kafkaTopic() {
		t.Errorf("%s: topic %q, want %q", where, m.Topic, s.kafkaTopic())
	}
	if m.Key == nil || *m.Key != s.key() {
		t.Errorf("%s: key %s, want %q (site id, else org id)", where, strp(m.Key), s.key())
	} else if partitions > 0 {
		if want := javaPartition(*m.Key, partitions); m.Partition != want {
			t.Errorf("%s: key %q is on partition %d, Java's murmur2 partitioner puts it on %d of %d", where, *m.Key, m.Partition, want, partitions)
		}
	}
	for k, want := range map[string]string{
		"ce_specversion": "1.0",
		"ce_type":        "com.juniper.mist." + s.topic,
		"content-type":   "application/json",
	} {
		if got := m.Headers[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s: header %s = %q, want [%q]", where, k, got, want)
		}
	}
	for _, k := range []string{"ce_id", "ce_source"} {
		if got := m.Headers[k]; len(got) != 1 || got[0] == "" {
			t.Errorf("%s: header %s = %q, want one non-empty value", where, k, got)
		}
	}
	if m.Payload == nil || !bytes.Equal([]byte(*m.Payload), s.raw) {
		t.Errorf("%s: value differs from the event as sent\n got: %s\nwant: %s", where, truncate(strp(m.Payload), 300), truncate(string(s.raw), 300))
	}
}

// checkNATS verifies one JetStream message against the event it carries.
func checkNATS(t *testing.T, s sent, m natsMsg) {
	t.Helper()
	where := fmt.Sprintf("%s: nats %s seq %d", s.label, m.Subject, m.Seq)
	if m.Subject != s.subject() {
		t.Errorf("%s: subject %q, want %q", where, m.Subject, s.subject())
	}
	for k, want := range map[string]string{
		"ce-specversion": "1.0",
		"ce-type":        "com.juniper.mist." + s.topic,
		"content-type":   "application/json",
	} {
		if got := m.Header[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s: header %s = %q, want [%q] (headers: %v)", where, k, got, want, m.Header)
		}
	}
	for _, k := range []string{"ce-id", "ce-source"} {
		if got := m.Header[k]; len(got) != 1 || got[0] == "" {
			t.Errorf("%s: header %s = %q, want one non-empty value", where, k, got)
		}
	}
	if id := natsHeader(m.Header, "ce-id"); natsHeader(m.Header, "Nats-Msg-Id") != id {
		t.Errorf("%s: Nats-Msg-Id %q, want the ce-id %q", where, natsHeader(m.Header, "Nats-Msg-Id"), id)
	}
	if !bytes.Equal(m.Data, s.raw) {
		t.Errorf("%s: data differs from the event as sent\n got: %s\nwant: %s", where, truncate(string(m.Data), 300), truncate(string(s.raw), 300))
	}
}

func strp(p *string) string {
	if p == nil {
		return "<null>"
	}
	return strconv.Quote(*p)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// ---------------------------------------------------------------- synthetic traffic

// synth makes unique, Mist-shaped device events for one scenario: topic
// e2e-<scenario>-<run>, a handful of sites, and a sequence number in the
// data that identifies each event when it comes back.
type synth struct {
	topic string
	org   string
	sites []string
	seq   atomic.Int64
}

// synths counts newSynth calls, so that a test run again (-count) gets a
// topic of its own.
var synths atomic.Int64

func newSynth(scenario string) *synth {
	topic := "e2e-" + scenario + "-" + suite.nonce
	if n := synths.Add(1); n > 1 {
		topic += "-" + strconv.FormatInt(n, 10)
	}
	s := &synth{topic: topic, org: uuidish()}
	for range 4 {
		s.sites = append(s.sites, uuidish())
	}
	return s
}

func uuidish() string {
	h := randHex(16)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// batch returns a signed-ready body of n new events and the events.
func (s *synth) batch(n int) ([]byte, []sent) {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"topic":%q,"events":[`, s.topic)
	evs := make([]sent, n)
	for i := range n {
		seq := s.seq.Add(1)
		site := s.sites[int(seq)%len(s.sites)]
		if i > 0 {
			b.WriteString(",\n  ")
		}
		start := b.Len()
		fmt.Fprintf(&b, `{"ap":"5c5b35%06x","device_name":"e2e-ap-%d","device_type":"ap","ev_type":"NOTICE","mac":"5c5b35%06x","org_id":%q,"site_id":%q,"text":"e2e %s seq %d","timestamp":%d,"type":"AP_RESTARTED","e2e_seq":%d}`,
			seq, seq, seq, s.org, site, s.topic, seq, time.Now().Unix(), seq)
		evs[i] = sent{topic: s.topic, raw: slices.Clone(b.Bytes()[start:]), org: s.org, site: site, label: fmt.Sprintf("seq %d", seq)}
	}
	b.WriteString("]}")
	return b.Bytes(), evs
}

func seqOf(data []byte) (int64, bool) {
	var v struct {
		Seq *int64 `json:"e2e_seq"`
	}
	if json.Unmarshal(data, &v) != nil || v.Seq == nil {
		return 0, false
	}
	return *v.Seq, true
}

// ---------------------------------------------------------------- scenarios

// TestSamples posts every Mist sample, signed, and reads each event back
// from both brokers.
func TestSamples(t *testing.T) {
	requireSetup(t)
	files, err := filepath.Glob(filepath.Join(suite.samples, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples in %s (set E2E_SAMPLES): %v", suite.samples, err)
	}
	sort.Strings(files)
	b := newBridge(t, "samples")
	b.start(t)

	type sample struct {
		file   string
		body   []byte
		topic  string
		events []sent
	}
	var samples []sample
	topics := map[string]bool{}
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		topic, evs := splitBody(t, body, filepath.Base(f))
		samples = append(samples, sample{file: filepath.Base(f), body: body, topic: topic, events: evs})
		topics["mist."+topic] = true
	}
	topicList := make([]string, 0, len(topics))
	for tp := range topics {
		topicList = append(topicList, tp)
	}
	sort.Strings(topicList)

	// Where each topic ended before: brokers kept from an earlier run may
	// hold these samples already.
	before, err := kafkaEndOffsets(topicList)
	if err != nil {
		t.Fatal(err)
	}
	natsBefore, err := streamLastSeq()
	if err != nil {
		t.Fatal(err)
	}

	total := 0
	for _, s := range samples {
		r := b.postSigned(s.body)
		if r.status != http.StatusOK {
			t.Errorf("%s (topic %s, %d events): want 200, got %s", s.file, s.topic, len(s.events), r)
		}
		total += len(s.events)
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("posted %d samples, %d events, %d topics", len(samples), total, len(topicList))

	// Kafka: one kcat per topic, in parallel.
	type kres struct {
		msgs       []kafkaMsg
		partitions int
		err        error
	}
	kafka := make(map[string]*kres, len(topicList))
	var wg sync.WaitGroup
	for _, tp := range topicList {
		r := &kres{}
		kafka[tp] = r
		wg.Go(func() {
			msgs, err := readKafka(tp)
			if err != nil {
				r.err = err
				return
			}
			for _, m := range msgs {
				if m.Offset >= before[tp][m.Partition] {
					r.msgs = append(r.msgs, m)
				}
			}
			r.partitions, r.err = kafkaPartitions(tp)
		})
	}
	wg.Wait()

	natsMsgs, err := readNATS("mist.>", natsBefore)
	if err != nil {
		t.Fatal(err)
	}

	ceIDs := map[string]string{} // ce id -> label: distinct events, distinct ids
	for _, s := range samples {
		for _, ev := range s.events {
			kr := kafka[ev.kafkaTopic()]
			if kr.err != nil {
				t.Errorf("%s: %v", ev.label, kr.err)
				continue
			}
			var km []kafkaMsg
			for _, m := range kr.msgs {
				if m.Payload != nil && bytes.Equal([]byte(*m.Payload), ev.raw) {
					km = append(km, m)
				}
			}
			// Samples of different topics may hold the same bytes (the
			// location-* and wifi-*-raw examples do): match on the topic
			// token of the subject too.
			var nm []natsMsg
			for _, m := range natsMsgs {
				if bytes.Equal(m.Data, ev.raw) && strings.HasPrefix(m.Subject, "mist."+token(ev.topic)+".") {
					nm = append(nm, m)
				}
			}
			if len(km) != 1 {
				t.Errorf("%s: %d records on kafka topic %s carry this event, want 1 (the topic has %d new records)", ev.label, len(km), ev.kafkaTopic(), len(kr.msgs))
			}
			if len(nm) != 1 {
				subjects := map[string]int{}
				for _, m := range natsMsgs {
					subjects[m.Subject]++
				}
				t.Errorf("%s: %d JetStream messages carry this event, want 1 on %s (new messages by subject: %v)", ev.label, len(nm), ev.subject(), subjects)
			}
			for _, m := range km {
				checkKafka(t, ev, m, kr.partitions)
			}
			for _, m := range nm {
				checkNATS(t, ev, m)
			}
			if len(km) == 1 && len(nm) == 1 {
				kid, nid := km[0].header("ce_id"), natsHeader(nm[0].Header, "ce-id")
				if kid != nid {
					t.Errorf("%s: kafka ce_id %q, nats ce-id %q: want the same id", ev.label, kid, nid)
				}
				if other, dup := ceIDs[kid]; dup {
					t.Errorf("%s and %s, different events, share ce id %s", other, ev.label, kid)
				}
				ceIDs[kid] = ev.label
			}
		}
	}
	// Nothing but these events.
	kafkaNew := 0
	for _, r := range kafka {
		kafkaNew += len(r.msgs)
	}
	if kafkaNew != total {
		t.Errorf("kafka: %d new records on the sample topics, want %d", kafkaNew, total)
	}
	if len(natsMsgs) != total {
		t.Errorf("JetStream: %d new messages on mist.>, want %d", len(natsMsgs), total)
	}
	t.Logf("kafka: %d records, JetStream: %d messages, %d distinct ce ids", kafkaNew, len(natsMsgs), len(ceIDs))
}

// TestDedup posts one batch twice: same ce ids everywhere, two copies on
// Kafka (it keeps what it is given), one in JetStream (Nats-Msg-Id).
func TestDedup(t *testing.T) {
	requireSetup(t)
	b := newBridge(t, "dedup")
	b.start(t)
	sy := newSynth("dedup")
	body, evs := sy.batch(10)
	for i := range 2 {
		if r := b.postSigned(body); r.status != http.StatusOK {
			t.Fatalf("post %d of the same batch: want 200, got %s", i+1, r)
		}
	}
	km, err := readKafka("mist." + sy.topic)
	if err != nil {
		t.Fatal(err)
	}
	nm, err := readNATS("mist."+sy.topic+".>", 0)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := kafkaPartitions("mist." + sy.topic)
	if err != nil {
		t.Fatal(err)
	}
	bySeqK := map[int64][]kafkaMsg{}
	for _, m := range km {
		if m.Payload == nil {
			t.Errorf("kafka record %d@%d has no value", m.Partition, m.Offset)
			continue
		}
		seq, _ := seqOf([]byte(*m.Payload))
		bySeqK[seq] = append(bySeqK[seq], m)
	}
	bySeqN := map[int64][]natsMsg{}
	for _, m := range nm {
		seq, _ := seqOf(m.Data)
		bySeqN[seq] = append(bySeqN[seq], m)
	}
	for _, ev := range evs {
		seq, _ := seqOf(ev.raw)
		k, n := bySeqK[seq], bySeqN[seq]
		if len(k) != 2 {
			t.Errorf("%s: %d kafka records, want 2 (posted twice)", ev.label, len(k))
		}
		if len(n) != 1 {
			t.Errorf("%s: %d JetStream messages, want 1 (the second has the same Nats-Msg-Id)", ev.label, len(n))
		}
		for _, m := range k {
			checkKafka(t, ev, m, parts)
		}
		for _, m := range n {
			checkNATS(t, ev, m)
		}
		if len(k) == 2 && len(n) == 1 {
			a, b2, c := k[0].header("ce_id"), k[1].header("ce_id"), natsHeader(n[0].Header, "ce-id")
			if a != b2 || a != c {
				t.Errorf("%s: ce ids %q and %q on kafka, %q on nats: want one id", ev.label, a, b2, c)
			}
		}
	}
	if len(km) != 2*len(evs) || len(nm) != len(evs) {
		t.Errorf("kafka %d records (want %d), JetStream %d messages (want %d)", len(km), 2*len(evs), len(nm), len(evs))
	}

	// An alarm update reuses the alarm's "id" with new content: a new event.
	t.Run("alarm-update", func(t *testing.T) {
		topic := "e2e-alarm-" + suite.nonce
		site := uuidish()
		mk := func(count int, update string) []byte {
			return fmt.Appendf(nil, `{"topic":%q,"events":[{"id":"a1b2c3d4-0000-4000-8000-%s","org_id":%q,"site_id":%q,"type":"rogue-ap-detected","count":%d,"timestamp":%d%s}]}`,
				topic, suite.nonce+"0000", sy.org, site, count, 1700000000+count, update)
		}
		first, update := mk(1, ""), mk(2, `,"update":true`)
		for _, body := range [][]byte{first, update} {
			if r := b.postSigned(body); r.status != http.StatusOK {
				t.Fatalf("want 200, got %s", r)
			}
		}
		nm, err := readNATS("mist."+topic+".>", 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(nm) != 2 {
			t.Fatalf("JetStream holds %d messages for an alarm and its update, want 2 (same \"id\" member, different content)", len(nm))
		}
		if a, b := natsHeader(nm[0].Header, "ce-id"), natsHeader(nm[1].Header, "ce-id"); a == b {
			t.Errorf("alarm and its update share ce-id %s", a)
		}
	})
}

// TestBadSignature: wrong, missing and downgraded signatures are 401 and
// nothing reaches a broker.
func TestBadSignature(t *testing.T) {
	requireSetup(t)
	b := newBridge(t, "badsig")
	b.start(t)
	sy := newSynth("badsig")
	body, _ := sy.batch(3)
	cases := []struct {
		name    string
		headers map[string]string
	}{
		{"wrong-secret", map[string]string{"X-Mist-Signature-v2": signV2(badSecret, body)}},
		{"garbage", map[string]string{"X-Mist-Signature-v2": "zz" + strings.Repeat("0", 62)}},
		{"missing", nil},
		{"body-changed", map[string]string{"X-Mist-Signature-v2": signV2(secret, append(slices.Clone(body), ' '))}},
		// A wrong v2 decides even when v1 is right: no downgrade.
		{"v2-wrong-v1-right", map[string]string{"X-Mist-Signature-v2": signV2(badSecret, body), "X-Mist-Signature": signV1(secret, body)}},
	}
	for _, c := range cases {
		if r := b.post(body, c.headers); r.status != http.StatusUnauthorized {
			t.Errorf("%s: want 401, got %s", c.name, r)
		}
	}
	// The same bytes, rightly signed, go through: the 401s were about the
	// signature. Their events go to another topic so the check below holds.
	other := newSynth("badsig-control")
	good, _ := other.batch(3)
	if r := b.postSigned(good); r.status != http.StatusOK {
		t.Errorf("control batch, signed: want 200, got %s", r)
	}
	time.Sleep(time.Second)
	km, err := readKafka("mist." + sy.topic)
	if err != nil {
		t.Fatal(err)
	}
	if len(km) != 0 {
		t.Errorf("kafka topic mist.%s has %d records after 401s, want none", sy.topic, len(km))
	}
	nm, err := readNATS("mist."+sy.topic+".>", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(nm) != 0 {
		t.Errorf("JetStream has %d messages on mist.%s.> after 401s, want none", len(nm), sy.topic)
	}
}

// outcome is one request of a sender and what the bridge answered.
type outcome struct {
	at     time.Time
	took   time.Duration
	events []sent
	res    postResult
}

// sender posts batches from workers goroutines until stop is closed, at most
// maxRequests in all and for 4 minutes at most. Errors do not stop it: they
// are the point; after one a worker pauses 200ms.
type sender struct {
	sy       *synth
	b        *bridge
	stop     chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	outcomes []outcome
	ok       atomic.Int64
}

func startSender(sy *synth, b *bridge, workers, batch int, every time.Duration, maxRequests int) *sender {
	s := &sender{sy: sy, b: b, stop: make(chan struct{})}
	var budget atomic.Int64
	budget.Store(int64(maxRequests))
	end := time.Now().Add(4 * time.Minute)
	for range workers {
		s.wg.Go(func() {
			tick := time.NewTicker(every)
			defer tick.Stop()
			for budget.Add(-1) >= 0 {
				select {
				case <-s.stop:
					return
				case <-tick.C:
				}
				body, evs := sy.batch(batch)
				at := time.Now()
				r := b.postSigned(body)
				if r.status == http.StatusOK {
					s.ok.Add(1)
				}
				s.mu.Lock()
				s.outcomes = append(s.outcomes, outcome{at: at, took: time.Since(at), events: evs, res: r})
				s.mu.Unlock()
				if time.Now().After(end) {
					return
				}
				if r.status != http.StatusOK {
					time.Sleep(200 * time.Millisecond) // an outage: no busy loop
				}
			}
		})
	}
	return s
}

// waitOK waits until the sender has n more 200s than when called.
func (s *sender) waitOK(t *testing.T, n int64, within time.Duration) {
	t.Helper()
	base := s.ok.Load()
	deadline := time.Now().Add(within)
	for s.ok.Load() < base+n {
		if time.Now().After(deadline) {
			s.mu.Lock()
			last := s.outcomes[max(0, len(s.outcomes)-5):]
			s.mu.Unlock()
			var b strings.Builder
			for _, o := range last {
				fmt.Fprintf(&b, "\n  %s %s", o.at.Format("15:04:05.000"), o.res)
			}
			t.Fatalf("no %d new 200s within %v; last answers:%s", n, within, b.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *sender) finish() []outcome {
	close(s.stop)
	s.wg.Wait()
	return s.outcomes
}

// checkPromises reads the scenario's topic from both brokers until every
// event answered 200 is there, or the deadline passes.
func checkPromises(t *testing.T, sy *synth, outs []outcome) {
	t.Helper()
	promised := map[int64]sent{}
	answers := map[string]int{}
	var okReqs, otherEvents int
	for _, o := range outs {
		switch {
		case o.res.err != nil:
			answers["transport error"]++
		default:
			answers[strconv.Itoa(o.res.status)]++
		}
		if o.res.status == http.StatusOK {
			okReqs++
			for _, ev := range o.events {
				seq, _ := seqOf(ev.raw)
				promised[seq] = ev
			}
		} else {
			otherEvents += len(o.events)
		}
	}
	t.Logf("%d requests: %v; %d events promised (200), %d not", len(outs), answers, len(promised), otherEvents)
	if okReqs == 0 {
		t.Fatal("no request was answered 200")
	}
	topic := "mist." + sy.topic
	parts, err := kafkaPartitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	var missK, missN []int64
	var km []kafkaMsg
	var nm []natsMsg
	for {
		// A broker just restarted may refuse a read for a moment: retry.
		km, err = readKafka(topic)
		if err == nil {
			nm, err = readNATS("mist."+sy.topic+".>", 0)
		}
		if err != nil {
			if time.Now().After(deadline) {
				t.Fatal(err)
			}
			t.Logf("reading back (will retry): %v", err)
			time.Sleep(2 * time.Second)
			continue
		}
		haveK, haveN := map[int64]bool{}, map[int64]bool{}
		for _, m := range km {
			if m.Payload != nil {
				if seq, ok := seqOf([]byte(*m.Payload)); ok {
					haveK[seq] = true
				}
			}
		}
		for _, m := range nm {
			if seq, ok := seqOf(m.Data); ok {
				haveN[seq] = true
			}
		}
		missK, missN = missK[:0], missN[:0]
		for seq := range promised {
			if !haveK[seq] {
				missK = append(missK, seq)
			}
			if !haveN[seq] {
				missN = append(missN, seq)
			}
		}
		if len(missK) == 0 && len(missN) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	slices.Sort(missK)
	slices.Sort(missN)
	describe := func(seqs []int64) string {
		var b strings.Builder
		for i, seq := range seqs {
			if i == 10 {
				fmt.Fprintf(&b, "\n  … and %d more", len(seqs)-10)
				break
			}
			for _, o := range outs {
				for _, ev := range o.events {
					if s, _ := seqOf(ev.raw); s == seq {
						fmt.Fprintf(&b, "\n  seq %d: posted %s, answered %s", seq, o.at.Format("15:04:05.000"), o.res)
					}
				}
			}
		}
		return b.String()
	}
	if len(missK) > 0 {
		t.Errorf("LOST: %d of %d events answered 200 are not on kafka topic %s (90s after the end):%s", len(missK), len(promised), topic, describe(missK))
	}
	if len(missN) > 0 {
		t.Errorf("LOST: %d of %d events answered 200 are not in JetStream on mist.%s.> (90s after the end):%s", len(missN), len(promised), sy.topic, describe(missN))
	}

	// Whatever arrived, promised or not, arrived intact; JetStream holds
	// each event once (Nats-Msg-Id), Kafka at least once.
	bySeq := map[int64]sent{}
	for _, o := range outs {
		for _, ev := range o.events {
			seq, _ := seqOf(ev.raw)
			bySeq[seq] = ev
		}
	}
	// Every copy carries the bytes sent; the first few get the full header
	// check (a systematic fault shows there without thousands of lines).
	kafkaCopies, natsCopies := map[int64]int{}, map[int64]int{}
	idOf := map[int64]string{}
	for i, m := range km {
		seq, ok := int64(0), false
		if m.Payload != nil {
			seq, ok = seqOf([]byte(*m.Payload))
		}
		ev, known := bySeq[seq]
		if !ok || !known {
			t.Errorf("kafka %s[%d]@%d: a record that was never sent: %s", m.Topic, m.Partition, m.Offset, truncate(strp(m.Payload), 200))
			continue
		}
		kafkaCopies[seq]++
		if i < 20 || !bytes.Equal([]byte(*m.Payload), ev.raw) {
			checkKafka(t, ev, m, parts)
		}
		if id, seen := idOf[seq]; seen && id != m.header("ce_id") {
			t.Errorf("%s: kafka copies with ce ids %q and %q", ev.label, id, m.header("ce_id"))
		}
		idOf[seq] = m.header("ce_id")
	}
	for i, m := range nm {
		seq, ok := seqOf(m.Data)
		ev, known := bySeq[seq]
		if !ok || !known {
			t.Errorf("JetStream %s seq %d: a message that was never sent: %s", m.Subject, m.Seq, truncate(string(m.Data), 200))
			continue
		}
		natsCopies[seq]++
		if i < 20 || !bytes.Equal(m.Data, ev.raw) {
			checkNATS(t, ev, m)
		}
		if id, seen := idOf[seq]; seen && id != natsHeader(m.Header, "ce-id") {
			t.Errorf("%s: ce_id %q on kafka, ce-id %q on nats", ev.label, id, natsHeader(m.Header, "ce-id"))
		}
	}
	dupK, dupN := 0, 0
	for _, n := range kafkaCopies {
		dupK += max(0, n-1)
	}
	for seq, n := range natsCopies {
		if n > 1 {
			dupN += n - 1
			if dupN <= 5 {
				t.Errorf("%s: %d copies in JetStream, want 1 (Nats-Msg-Id dedup)", bySeq[seq].label, n)
			}
		}
	}
	t.Logf("kafka: %d records (%d duplicates, allowed), JetStream: %d messages (%d duplicates); %d not-200 events delivered anyway",
		len(km), dupK, len(nm), dupN, countUnpromised(kafkaCopies, promised))
}

func countUnpromised(have map[int64]int, promised map[int64]sent) int {
	n := 0
	for seq := range have {
		if _, ok := promised[seq]; !ok {
			n++
		}
	}
	return n
}

// requireBrokerControl fails when the brokers are not brokers.sh's to
// restart (E2E_KAFKA/E2E_NATS pointing at brokers of someone else): an
// outage test that cannot make its outage must not pass.
func requireBrokerControl(t *testing.T, name string) {
	t.Helper()
	out, err := exec.Command("bash", suite.brokersSh, "status").Output()
	if err != nil || !strings.Contains(string(out), name+": running") {
		t.Fatalf("%s is not run by brokers.sh here (status: %q, %v): cannot restart it", name, strings.TrimSpace(string(out)), err)
	}
}

// outage is how long each broker is down in the restart tests: long
// enough that a bridge without a spool would have refused most of it.
const outage = 30 * time.Second

// TestKafkaRestart: Kafka is down for 30s while a sender that never
// retries posts. With the spool (MISTBRIDGE_ACK_MODE=hybrid, the default)
// every request is answered 200 and every event arrives.
func TestKafkaRestart(t *testing.T) {
	requireSetup(t)
	requireBrokerControl(t, "kafka")
	restartScenario(t, "kafka-restart", true, func(t *testing.T, b *bridge) {
		if err := brokers("stop-kafka"); err != nil {
			t.Fatalf("stop kafka: %v", err)
		}
		time.Sleep(outage) // the outage itself: nothing to wait for
		if err := brokers("start-kafka"); err != nil {
			t.Fatalf("start kafka: %v", err)
		}
	})
}

// TestNATSRestart: nats-server is down for 30s while a sender posts; as
// for Kafka, every request is answered 200 and every event arrives.
func TestNATSRestart(t *testing.T) {
	requireSetup(t)
	requireBrokerControl(t, "nats")
	restartScenario(t, "nats-restart", true, func(t *testing.T, b *bridge) {
		if err := brokers("stop-nats"); err != nil {
			t.Fatalf("stop nats: %v", err)
		}
		time.Sleep(outage)
		if err := brokers("start-nats"); err != nil {
			t.Fatalf("start nats: %v", err)
		}
	})
}

// TestBridgeSIGKILL: the bridge dies without warning and is started again
// on the same data dir and address; what it answered 200 must survive.
func TestBridgeSIGKILL(t *testing.T) {
	requireSetup(t)
	restartScenario(t, "bridge-sigkill", false, func(t *testing.T, b *bridge) {
		b.kill(t)
		b.start(t)
	})
}

// TestSpoolSurvivesSIGKILL: nats-server is down, so the bridge spools the
// NATS copies of what it answers 200; it is then killed with SIGKILL and
// started again while NATS is still down, and NATS comes back: every
// spooled event arrives.
func TestSpoolSurvivesSIGKILL(t *testing.T) {
	requireSetup(t)
	requireBrokerControl(t, "nats")
	b := newBridge(t, "spool-sigkill")
	b.start(t)
	sy := newSynth("spool-sigkill")
	if err := brokers("stop-nats"); err != nil {
		t.Fatalf("stop nats: %v", err)
	}
	natsUp := false
	defer func() {
		if !natsUp {
			_ = brokers("start-nats")
		}
	}()
	s := startSender(sy, b, 2, 5, 50*time.Millisecond, 6000)
	s.waitOK(t, 30, 60*time.Second)
	outs := s.finish()
	out, err := exec.Command(suite.bin, "spool", "status", "--json", "--data-dir", b.dataDir).Output()
	if err != nil {
		t.Fatalf("mistbridge spool status: %v", err)
	}
	var st struct {
		Sinks []struct {
			Sink   string `json:"sink"`
			Events int64  `json:"events"`
		} `json:"sinks"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("spool status --json: %v: %s", err, out)
	}
	var spooled int64
	for _, sk := range st.Sinks {
		if sk.Sink == "nats" {
			spooled = sk.Events
		}
	}
	t.Logf("spool-sigkill: %d requests answered, %d NATS events spooled before SIGKILL", len(outs), spooled)
	if spooled == 0 {
		t.Fatalf("nothing spooled for NATS while it was down: %s", out)
	}
	b.kill(t)
	b.start(t) // NATS still down: the spool keeps the bridge ready
	if err := brokers("start-nats"); err != nil {
		t.Fatalf("start nats: %v", err)
	}
	natsUp = true
	for _, o := range outs {
		if o.res.status != http.StatusOK {
			t.Errorf("a request was answered %s while NATS was down, want 200 (spooled)", o.res)
			break
		}
	}
	checkPromises(t, sy, outs)
}

// restartScenario runs a steady sender (2 workers, 5 events a request, a
// request every 50ms each) across disrupt. With all200 every request must
// be answered 200 (the bridge stayed up and spooled what a broker could
// not take); without, only the promise is checked: every event answered
// 200 arrives.
func restartScenario(t *testing.T, name string, all200 bool, disrupt func(*testing.T, *bridge)) {
	b := newBridge(t, name)
	b.start(t)
	sy := newSynth(name)
	// 2 workers, 5 events a request, a request every 50ms each at most.
	s := startSender(sy, b, 2, 5, 50*time.Millisecond, 6000)
	stopped := false
	defer func() {
		if !stopped {
			s.finish()
		}
	}()
	s.waitOK(t, 20, 30*time.Second)
	down := time.Now()
	t.Logf("%s: disrupting after %d 200s", name, s.ok.Load())
	disrupt(t, b)
	up := time.Now()
	t.Logf("%s: back after %v; waiting for the bridge to answer 200 again", name, up.Sub(down).Round(time.Millisecond))
	s.waitOK(t, 20, 90*time.Second)
	time.Sleep(2 * time.Second)
	outs := s.finish()
	stopped = true
	during := map[string]int{}
	var slowest time.Duration
	for _, o := range outs {
		if o.at.Before(down) || o.at.After(up) {
			continue
		}
		slowest = max(slowest, o.took)
		if o.res.err != nil {
			during["transport error"]++
		} else {
			during[strconv.Itoa(o.res.status)]++
		}
	}
	t.Logf("%s: requests sent during the outage: %v, slowest answer %v", name, during, slowest.Round(time.Millisecond))
	// An upper bound of the spool's drain: the outage's backlog is at the
	// brokers by the time every promised event has been read back.
	defer func() {
		t.Logf("%s: every promised event read back %v after the disruption ended", name, time.Since(up).Round(time.Millisecond))
	}()
	if all200 {
		for _, o := range outs {
			if o.res.status != http.StatusOK {
				t.Errorf("%s: a request at %s was answered %s, want every request 200 while the bridge is up", name, o.at.Format("15:04:05.000"), o.res)
				break
			}
		}
	}
	checkPromises(t, sy, outs)
}
