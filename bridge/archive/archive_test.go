package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mistbridge/mistbridge/bridge"
)

// t0 is a bucket boundary the tests count from.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is a settable time source.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock { c := &clock{}; c.set(t); return c }
func (c *clock) set(t time.Time)  { c.ns.Store(t.UnixNano()) }
func (c *clock) now() time.Time   { return time.Unix(0, c.ns.Load()).UTC() }

// rig is an archive in a temp dir whose pruning passes the test can wait for.
type rig struct {
	a      *Archive
	dir    string
	reg    *prometheus.Registry
	clock  *clock
	pruned chan struct{}
}

func openRig(t *testing.T, cfg Config) *rig { t.Helper(); return openRigAt(t, cfg, t0) }

// openRigAt opens an archive whose clock reads at.
func openRigAt(t *testing.T, cfg Config, at time.Time) *rig {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(t.TempDir(), "archive")
	}
	if cfg.Retention == 0 {
		cfg.Retention = 24 * time.Hour
	}
	r := &rig{dir: cfg.Dir, reg: prometheus.NewRegistry(), clock: newClock(at), pruned: make(chan struct{}, 64)}
	a, err := open(cfg, slog.New(slog.DiscardHandler), r.reg, options{
		now:     r.clock.now,
		onPrune: func() { r.pruned <- struct{}{} },
	})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	r.a = a
	t.Cleanup(func() { _ = a.Close() })
	r.waitPrune(t) // the pass Open starts with
	return r
}

// prune runs a pruning pass now, as the pruner does (passes are serialised).
func (r *rig) prune() { r.a.prune() }

// waitPrune waits for the pruner to finish a pass.
func (r *rig) waitPrune(t *testing.T) {
	t.Helper()
	select {
	case <-r.pruned:
	case <-time.After(10 * time.Second):
		t.Fatal("the pruner did not run")
	}
}

// metric is the value of the unlabelled metric name, as /metrics serves it.
func (r *rig) metric(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) != 1 {
			continue
		}
		m := mf.GetMetric()[0]
		if m.GetCounter() != nil {
			return m.GetCounter().GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("metric %s is not registered", name)
	return 0
}

func record(recv time.Time, body string) bridge.ArchiveRecord {
	return bridge.ArchiveRecord{
		Receiver: "mist", Received: recv, Topic: "device-events",
		ContentType: "application/json", UserAgent: "Mist-webhook/1.0", Body: []byte(body),
	}
}

func (r *rig) append(t *testing.T, recs ...bridge.ArchiveRecord) {
	t.Helper()
	for _, rec := range recs {
		if err := r.a.Archive(context.Background(), rec); err != nil {
			t.Fatalf("Archive: %v", err)
		}
	}
}

// readAll reads every record of dir received in [since, until).
func readAll(t *testing.T, dir string, since, until time.Time) ([]bridge.ArchiveRecord, []Skipped) {
	t.Helper()
	rd, err := NewReader(dir, since, until)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var out []bridge.ArchiveRecord
	for rd.Next() {
		rec := rd.Record()
		rec.Body = bytes.Clone(rec.Body)
		out = append(out, rec)
	}
	if err := rd.Err(); err != nil {
		t.Fatalf("Reader: %v", err)
	}
	if rd.Offset() < rd.Size() {
		t.Errorf("Offset %d after the end, of Size %d", rd.Offset(), rd.Size())
	}
	return out, rd.Skipped()
}

func segmentNames(t *testing.T, dir string) []string {
	t.Helper()
	segs, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range segs {
		names = append(names, filepath.Base(s.Path))
	}
	return names
}

func diskBytes(t *testing.T, dir string) int64 {
	t.Helper()
	segs, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, s := range segs {
		n += s.Size
	}
	return n
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings; none means valid
	}{
		{"off", Config{}, nil},
		{"off needs no dir", Config{Segment: time.Hour}, nil},
		{"on", Config{Retention: 168 * time.Hour, Dir: "d"}, nil},
		{"ten minutes", Config{Retention: time.Hour, Dir: "d", Segment: 10 * time.Minute}, nil},
		{"negative retention", Config{Retention: -time.Hour}, []string{"MISTBRIDGE_ARCHIVE_RETENTION=-1h0m0s is invalid"}},
		{"no dir", Config{Retention: time.Hour}, []string{"MISTBRIDGE_ARCHIVE_DIR"}},
		{"segment too short", Config{Retention: time.Hour, Dir: "d", Segment: time.Second}, []string{"MISTBRIDGE_ARCHIVE_SEGMENT=1s"}},
		{"segment does not divide a day", Config{Retention: time.Hour, Dir: "d", Segment: 7 * time.Minute}, []string{"MISTBRIDGE_ARCHIVE_SEGMENT=7m0s"}},
		{"segment too long", Config{Retention: time.Hour, Dir: "d", Segment: 48 * time.Hour}, []string{"MISTBRIDGE_ARCHIVE_SEGMENT"}},
		{"max bytes", Config{Retention: time.Hour, Dir: "d", MaxBytes: 1000}, []string{"MISTBRIDGE_ARCHIVE_MAX_BYTES=1000"}},
		{"every problem at once", Config{Retention: time.Hour, Segment: time.Second, MaxBytes: -1},
			[]string{"MISTBRIDGE_ARCHIVE_DIR", "MISTBRIDGE_ARCHIVE_SEGMENT", "MISTBRIDGE_ARCHIVE_MAX_BYTES"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestDefaultsMatchTags: one source per default; the envDefault tags say
// what the constants say.
func TestDefaultsMatchTags(t *testing.T) {
	want := map[string]string{
		"Retention": "0",
		"Segment":   DefaultSegment.String(),
		"MaxBytes":  strconv.Itoa(DefaultMaxBytes),
	}
	typ := reflect.TypeOf(Config{})
	for i := range typ.NumField() {
		f := typ.Field(i)
		def, has := f.Tag.Lookup("envDefault")
		if w, ok := want[f.Name]; ok {
			if d, err := time.ParseDuration(def); err == nil && f.Type == reflect.TypeOf(time.Duration(0)) {
				def = d.String()
				if w == "0" {
					w = "0s"
				}
			}
			if !has || def != w {
				t.Errorf("%s: envDefault %q, want %q", f.Name, def, w)
			}
		} else if has {
			t.Errorf("%s has an envDefault %q the test does not know", f.Name, def)
		}
	}
}

func TestOpenRefusesAnArchiveThatIsOff(t *testing.T) {
	_, err := Open(Config{Dir: t.TempDir()}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "MISTBRIDGE_ARCHIVE_RETENTION") {
		t.Fatalf("Open with Retention 0 = %v, want an error naming MISTBRIDGE_ARCHIVE_RETENTION", err)
	}
}

// TestAppendRead: concurrent appends all come back, every field intact,
// and the metrics count them.
func TestAppendRead(t *testing.T) {
	r := openRig(t, Config{})
	const writers, each = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				rec := record(t0.Add(time.Duration(w*each+i)*time.Millisecond), fmt.Sprintf(`{"topic":"device-events","events":[{"w":%d,"i":%d}]}`, w, i))
				rec.Receiver = fmt.Sprintf("r%d", w)
				rec.UserAgent = ""
				if err := r.a.Archive(context.Background(), rec); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Archive: %v", err)
	}
	if got := r.metric(t, "mistbridge_archive_requests_total"); got != writers*each {
		t.Errorf("mistbridge_archive_requests_total = %v, want %d", got, writers*each)
	}
	if got, want := r.metric(t, "mistbridge_archive_bytes"), float64(diskBytes(t, r.dir)); got != want {
		t.Errorf("mistbridge_archive_bytes = %v, files hold %v", got, want)
	}
	if err := r.a.Close(); err != nil {
		t.Fatal(err)
	}
	got, skipped := readAll(t, r.dir, time.Time{}, time.Time{})
	if len(skipped) > 0 {
		t.Errorf("skipped %v", skipped)
	}
	if len(got) != writers*each {
		t.Fatalf("read %d records, want %d", len(got), writers*each)
	}
	seen := map[string]bool{}
	for _, rec := range got {
		var w, i int
		if _, err := fmt.Sscanf(string(rec.Body), `{"topic":"device-events","events":[{"w":%d,"i":%d}]}`, &w, &i); err != nil {
			t.Fatalf("body %q: %v", rec.Body, err)
		}
		want := record(t0.Add(time.Duration(w*each+i)*time.Millisecond), string(rec.Body))
		want.Receiver = fmt.Sprintf("r%d", w)
		want.UserAgent = ""
		if !reflect.DeepEqual(rec, want) {
			t.Fatalf("read %+v, want %+v", rec, want)
		}
		if seen[string(rec.Body)] {
			t.Fatalf("%s read twice", rec.Body)
		}
		seen[string(rec.Body)] = true
	}
	if err := r.a.Archive(context.Background(), record(t0, "{}")); !errors.Is(err, ErrClosed) {
		t.Errorf("Archive after Close = %v, want ErrClosed", err)
	}
}

// TestBucketsAndWindows: a request goes to the segment of its receive
// time; one that straddled a boundary goes to the newer segment and is
// still found by a window ending at the boundary; a clock set back gets a
// segment of its own bucket.
func TestBucketsAndWindows(t *testing.T) {
	r := openRig(t, Config{Segment: time.Hour})
	at := func(h, m, s int) time.Time { return time.Date(2026, 3, 1, h, m, s, 0, time.UTC) }
	r.append(t,
		record(at(10, 5, 0), "a"),
		record(at(11, 1, 0), "b"),
		record(at(10, 59, 59), "late"), // received before 11:00, archived after "b"
		record(at(12, 30, 0), "c"),
		record(at(8, 0, 0), "set-back"), // the clock went back
	)
	if err := r.a.Close(); err != nil {
		t.Fatal(err)
	}
	wantNames := []string{"20260301T080000Z-60m-0.seg", "20260301T100000Z-60m-0.seg", "20260301T110000Z-60m-0.seg", "20260301T120000Z-60m-0.seg"}
	if got := segmentNames(t, r.dir); !slices.Equal(got, wantNames) {
		t.Fatalf("segments %v, want %v", got, wantNames)
	}
	bodies := func(since, until time.Time) []string {
		recs, skipped := readAll(t, r.dir, since, until)
		if len(skipped) > 0 {
			t.Errorf("skipped %v", skipped)
		}
		var out []string
		for _, rec := range recs {
			out = append(out, string(rec.Body))
		}
		return out
	}
	for _, tc := range []struct {
		since, until time.Time
		want         []string
	}{
		{time.Time{}, time.Time{}, []string{"set-back", "a", "b", "late", "c"}},
		{at(10, 59, 30), at(11, 0, 0), []string{"late"}},
		{at(11, 0, 0), at(12, 0, 0), []string{"b"}},
		{at(10, 0, 0), at(11, 0, 0), []string{"a", "late"}},
		{at(8, 0, 0), at(9, 0, 0), []string{"set-back"}},
		{at(12, 30, 0), time.Time{}, []string{"c"}},
		{at(13, 0, 0), time.Time{}, nil},
	} {
		if got := bodies(tc.since, tc.until); !slices.Equal(got, tc.want) {
			t.Errorf("[%v, %v): %q, want %q", tc.since, tc.until, got, tc.want)
		}
	}
	rd, err := NewReader(r.dir, at(11, 0, 0), at(12, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	var sel []string
	for _, s := range rd.Segments() {
		sel = append(sel, filepath.Base(s.Path))
	}
	if want := []string{"20260301T110000Z-60m-0.seg", "20260301T120000Z-60m-0.seg"}; !slices.Equal(sel, want) {
		t.Errorf("a window of one hour reads %v, want %v (the next one only for late requests)", sel, want)
	}
}

// TestRetention: the pruner deletes whole segments once every request in
// them is older than the retention, never the one being written, and the
// bytes gauge follows.
func TestRetention(t *testing.T) {
	r := openRig(t, Config{Retention: 2 * time.Hour, Segment: time.Hour})
	r.append(t,
		record(t0.Add(-5*time.Hour), "5h"),
		record(t0.Add(-3*time.Hour+time.Minute), "3h"), // bucket 09:00-10:00, ends at the cutoff
		record(t0.Add(-90*time.Minute), "90m"),         // bucket 10:00-11:00, ends after it
		record(t0.Add(-30*time.Minute), "30m"),         // the segment being written
	)
	r.prune()
	want := []string{"20260301T100000Z-60m-0.seg", "20260301T110000Z-60m-0.seg"}
	if got := segmentNames(t, r.dir); !slices.Equal(got, want) {
		t.Fatalf("after pruning at %v: %v, want %v", t0, got, want)
	}
	if got, want := r.metric(t, "mistbridge_archive_bytes"), float64(diskBytes(t, r.dir)); got != want {
		t.Errorf("mistbridge_archive_bytes = %v, files hold %v", got, want)
	}
	// Long after: everything is past retention but the segment being written.
	r.clock.set(t0.Add(48 * time.Hour))
	r.prune()
	if got := segmentNames(t, r.dir); !slices.Equal(got, want[1:]) {
		t.Fatalf("two days later: %v, want only the segment being written %v", got, want[1:])
	}
	// Closed, it is an old file like any other: the pruner of the next
	// archive deletes it in the pass it starts with.
	if err := r.a.Close(); err != nil {
		t.Fatal(err)
	}
	openRigAt(t, Config{Dir: r.dir, Retention: 2 * time.Hour}, t0.Add(48*time.Hour))
	if got := segmentNames(t, r.dir); len(got) != 0 {
		t.Fatalf("a new archive two days later kept %v", got)
	}
}

// TestMaxBytes: an append that takes the files past MaxBytes wakes the
// pruner, which deletes the oldest segments first, before their retention
// ends; the segment being written stays.
func TestMaxBytes(t *testing.T) {
	r := openRig(t, Config{Retention: 30 * 24 * time.Hour, Segment: time.Hour, MaxBytes: MinMaxBytes})
	body := strings.Repeat("x", 300<<10)
	for h := range 5 {
		r.append(t, record(t0.Add(time.Duration(h)*time.Hour), body))
	}
	// The last append was past the bound, so a pass follows it.
	for diskBytes(t, r.dir) > MinMaxBytes {
		r.waitPrune(t)
	}
	names := segmentNames(t, r.dir)
	want := []string{"20260301T140000Z-60m-0.seg", "20260301T150000Z-60m-0.seg", "20260301T160000Z-60m-0.seg"}
	if !slices.Equal(names, want) {
		t.Fatalf("segments %v, want the newest %v", names, want)
	}
}

// TestTornTail: a crash mid-write leaves a torn last record; reading skips
// it, reports it and returns every record before it, at every cut. A
// restarted archive appends to a new file of the same bucket.
func TestTornTail(t *testing.T) {
	r := openRig(t, Config{})
	for i := range 4 {
		r.append(t, record(t0.Add(time.Duration(i)*time.Second), fmt.Sprintf(`{"n":%d}`, i)))
	}
	if err := r.a.Close(); err != nil {
		t.Fatal(err)
	}
	names := segmentNames(t, r.dir)
	if len(names) != 1 {
		t.Fatalf("segments %v, want one", names)
	}
	path := filepath.Join(r.dir, names[0])
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	last := len(appendFrame(nil, ptr(record(t0.Add(3*time.Second), `{"n":3}`))))
	lastStart := len(whole) - last
	for cut := lastStart + 1; cut < len(whole); cut++ {
		if err := os.WriteFile(path, whole[:cut], 0o640); err != nil {
			t.Fatal(err)
		}
		got, skipped := readAll(t, r.dir, time.Time{}, time.Time{})
		if len(got) != 3 || string(got[2].Body) != `{"n":2}` {
			t.Fatalf("cut at %d: read %d records, want the 3 before the torn one", cut, len(got))
		}
		if len(skipped) != 1 || skipped[0].Offset != int64(lastStart) || skipped[0].Bytes != int64(cut-lastStart) || !strings.Contains(skipped[0].Reason, "torn") {
			t.Fatalf("cut at %d: skipped %+v, want %d torn bytes at %d", cut, skipped, cut-lastStart, lastStart)
		}
	}
	// The file is left torn; a restarted bridge appends to a new file.
	r2 := openRig(t, Config{Dir: r.dir})
	r2.append(t, record(t0.Add(10*time.Second), `{"n":"after"}`))
	if err := r2.a.Close(); err != nil {
		t.Fatal(err)
	}
	if got := segmentNames(t, r.dir); !slices.Equal(got, []string{names[0], strings.Replace(names[0], "-0.seg", "-1.seg", 1)}) {
		t.Fatalf("after a restart: %v", got)
	}
	got, skipped := readAll(t, r.dir, time.Time{}, time.Time{})
	if len(got) != 4 || string(got[3].Body) != `{"n":"after"}` || len(skipped) != 1 {
		t.Fatalf("after a restart: %d records, skipped %v; want 4 and the torn tail", len(got), skipped)
	}
}

// TestCorruptRecordIsSkipped: a flipped byte ends what is read of its
// segment (reported); the other segments are read.
func TestCorruptRecordIsSkipped(t *testing.T) {
	r := openRig(t, Config{Segment: time.Hour})
	r.append(t,
		record(t0, `{"n":1}`), record(t0.Add(time.Second), `{"n":2}`), record(t0.Add(2*time.Second), `{"n":3}`),
		record(t0.Add(time.Hour), `{"n":4}`),
	)
	if err := r.a.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(r.dir, segmentNames(t, r.dir)[0])
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	first := len(appendFrame(nil, ptr(record(t0, `{"n":1}`))))
	b[int(headerSize)+first+frameHeader+3] ^= 0x40 // inside the second record
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
	got, skipped := readAll(t, r.dir, time.Time{}, time.Time{})
	var bodies []string
	for _, rec := range got {
		bodies = append(bodies, string(rec.Body))
	}
	if !slices.Equal(bodies, []string{`{"n":1}`, `{"n":4}`}) {
		t.Errorf("read %q", bodies)
	}
	if len(skipped) != 1 || skipped[0].Offset != headerSize+int64(first) || skipped[0].Reason != "a checksum mismatch" ||
		skipped[0].Bytes != int64(len(b))-headerSize-int64(first) {
		t.Errorf("skipped %+v", skipped)
	}
}

func ptr[T any](v T) *T { return &v }

func TestSegmentNames(t *testing.T) {
	start := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	name := segmentName(start, time.Hour, 2)
	if name != "20260301T100000Z-60m-2.seg" {
		t.Fatalf("segmentName = %q", name)
	}
	s, span, n, ok := parseSegmentName(name)
	if !ok || !s.Equal(start) || span != time.Hour || n != 2 {
		t.Fatalf("parseSegmentName(%q) = %v %v %d %v", name, s, span, n, ok)
	}
	for _, bad := range []string{"20260301T100000Z-60m-2.seg.tmp", "20260301T100000Z-2.seg", "x-60m-1.seg",
		"20260301T100000Z-0m-1.seg", "20260301T100000Z-60-1.seg", "20260301T100000Z-60m-01.seg", "20260301T100000Z-60m--1.seg",
		"20260301T100000Z-99999m-1.seg", "LOCK"} {
		if _, _, _, ok := parseSegmentName(bad); ok {
			t.Errorf("parseSegmentName(%q) accepted it", bad)
		}
	}
}

func BenchmarkArchive(b *testing.B) {
	a, err := Open(Config{Retention: time.Hour, Dir: b.TempDir()}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	rec := record(time.Now(), `{"topic":"device-events","events":[`+strings.Repeat(`{"org_id":"o","site_id":"s","x":1},`, 30)+`{}]}`)
	b.SetBytes(int64(len(rec.Body)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := a.Archive(context.Background(), rec); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
