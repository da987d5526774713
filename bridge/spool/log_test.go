package spool

// Unit tests of the log itself: no output is involved.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mistbridge/mistbridge/bridge"
)

func testLog(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startLog opens a log in dir with its committer; the cleanup stops it.
func startLog(t testing.TB, dir string, b *budget, segBytes int64, open openFunc) (*wlog, Recovery, func()) {
	t.Helper()
	if open == nil {
		open = osOpen
	}
	l, rec, err := openLog(logOptions{name: "test", dir: dir, log: testLog(t), budget: b, segBytes: segBytes, open: open})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.run(ctx)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			_ = l.close()
		})
	}
	t.Cleanup(stop)
	return l, rec, stop
}

func payload(i int) []byte {
	return []byte(fmt.Sprintf("record-%05d-%s", i, strings.Repeat("x", i%50)))
}

// readAll reads every undelivered record.
func readAll(t testing.TB, l *wlog) [][]byte {
	t.Helper()
	var out [][]byte
	for {
		recs, err := l.read(1000, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return out
		}
		for _, r := range recs {
			out = append(out, r.payload)
		}
	}
}

func TestTornTail(t *testing.T) {
	for trial := range 20 {
		t.Run(fmt.Sprint(trial), func(t *testing.T) {
			dir := t.TempDir()
			b := &budget{max: 1 << 30}
			l, _, stopl := startLog(t, dir, b, 4<<10, nil)
			var want [][]byte
			for i := range 200 {
				p := payload(i)
				if err := l.Append(context.Background(), [][]byte{p}, time.Now()); err != nil {
					t.Fatal(err)
				}
				want = append(want, p)
			}
			stopl()
			segs, err := listSegments(dir)
			if err != nil || len(segs) < 2 {
				t.Fatalf("want several segments, got %d (%v)", len(segs), err)
			}
			last := segs[len(segs)-1].path
			st, _ := os.Stat(last)
			cut := rand.Int64N(st.Size()) // anywhere, even inside the header
			if err := os.Truncate(last, cut); err != nil {
				t.Fatal(err)
			}
			// Whole records that survive the cut: count them in the earlier segments plus the last.
			kept := 0
			for _, s := range segs {
				sc, err := scanSegment(s.path, s.base, 0, nil)
				if err != nil {
					t.Fatal(err)
				}
				kept += sc.records
			}
			l2, rec, _ := startLog(t, dir, &budget{max: 1 << 30}, 4<<10, nil)
			if rec.Events != int64(kept) {
				t.Fatalf("recovered %d events, %d whole records are on disk", rec.Events, kept)
			}
			var lost int64
			if cut < st.Size() && len(rec.Skipped) == 0 && kept < len(want) && cut > headerSize {
				// A cut on a frame boundary leaves nothing torn; anything else must be reported.
				sc, _ := scanSegment(last, segs[len(segs)-1].base, 0, nil)
				if sc.valid != cut {
					t.Fatalf("cut at %d inside a record, nothing reported", cut)
				}
			}
			if cut < headerSize && len(rec.Skipped) == 0 {
				t.Fatalf("cut at %d inside the segment header, nothing reported", cut)
			}
			for _, s := range rec.Skipped {
				lost += s.Bytes
			}
			if rec.SkippedBytes() != lost {
				t.Fatal("SkippedBytes disagrees with Skipped")
			}
			got := readAll(t, l2)
			if !reflect.DeepEqual(got, want[:kept]) {
				t.Fatalf("read back %d records, want the first %d in order", len(got), kept)
			}
			// The log takes appends again, behind what survived.
			if err := l2.Append(context.Background(), [][]byte{[]byte("after")}, time.Now()); err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, l2); len(got) != 1 || string(got[0]) != "after" {
				t.Fatalf("after recovery read %q, want [after]", got)
			}
		})
	}
}

func TestCorruptRecordIsCutAndReported(t *testing.T) {
	dir := t.TempDir()
	l, _, stopl := startLog(t, dir, &budget{max: 1 << 30}, 1<<20, nil)
	for i := range 10 {
		if err := l.Append(context.Background(), [][]byte{payload(i)}, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	stopl()
	segs, _ := listSegments(dir)
	raw, _ := os.ReadFile(segs[0].path)
	// Flip a byte in the payload of the 8th record.
	off := headerSize
	for i := range 7 {
		off += frameHeader + int64(len(payload(i)))
	}
	raw[off+frameHeader+2] ^= 0xff
	if err := os.WriteFile(segs[0].path, raw, 0o640); err != nil {
		t.Fatal(err)
	}
	l2, rec, _ := startLog(t, dir, &budget{max: 1 << 30}, 1<<20, nil)
	if rec.Events != 7 || len(rec.Skipped) != 1 || rec.Skipped[0].Reason != "checksum mismatch" || rec.Skipped[0].Offset != off {
		t.Fatalf("recovery = %+v, want 7 events and the checksum mismatch at %d reported", rec, off)
	}
	if got := readAll(t, l2); len(got) != 7 {
		t.Fatalf("read %d records, want 7", len(got))
	}
}

func TestFull(t *testing.T) {
	dir := t.TempDir()
	b := &budget{max: 64 << 10}
	l, _, stopl := startLog(t, dir, b, 8<<10, nil)
	var (
		kept [][]byte
		full error
	)
	for i := 0; full == nil; i++ {
		p := payload(i)
		err := l.Append(context.Background(), [][]byte{p}, time.Now())
		switch {
		case err == nil:
			kept = append(kept, p)
		case errors.Is(err, bridge.ErrSpoolFull):
			full = err
		default:
			t.Fatalf("append %d: %v, want nil or ErrSpoolFull", i, err)
		}
		if i > 100000 {
			t.Fatal("the bound never refused an append")
		}
	}
	if !b.full.Load() {
		t.Fatal("budget not marked full")
	}
	if used := b.used.Load(); used > b.max {
		t.Fatalf("used %d bytes, more than the bound %d", used, b.max)
	}
	stopl()
	// Nothing accepted was lost: reopen and read everything back.
	l2, rec, _ := startLog(t, dir, &budget{max: 64 << 10}, 8<<10, nil)
	if rec.Events != int64(len(kept)) {
		t.Fatalf("recovered %d, %d were accepted", rec.Events, len(kept))
	}
	got := readAll(t, l2)
	if !reflect.DeepEqual(got, kept) {
		t.Fatalf("read back %d records, want the %d accepted", len(got), len(kept))
	}
}

func TestDeliveredRoomIsGivenBack(t *testing.T) {
	dir := t.TempDir()
	b := &budget{max: 64 << 10}
	l, _, _ := startLog(t, dir, b, 8<<10, nil)
	for round := range 5 {
		n := 0
		for ; ; n++ {
			err := l.Append(context.Background(), [][]byte{payload(n)}, time.Now())
			if errors.Is(err, bridge.ErrSpoolFull) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		recs, err := l.read(1<<30, 1<<30)
		if err != nil || len(recs) != n {
			t.Fatalf("round %d: read %d of %d (%v)", round, len(recs), n, err)
		}
		var bytes int64
		for _, r := range recs {
			bytes += r.size
		}
		l.ack(recs[len(recs)-1].seq, len(recs), bytes)
		if l.events.Load() != 0 || l.pending.Load() != 0 {
			t.Fatalf("after acking everything: %d events, %d bytes", l.events.Load(), l.pending.Load())
		}
		if b.used.Load() > 8<<10+headerSize {
			t.Fatalf("round %d: %d bytes still held after delivery", round, b.used.Load())
		}
	}
}

// failingFile fails Sync (or Write) once armed.
type failingFile struct {
	file
	syncErr, writeErr *error
	mu                *sync.Mutex
}

func (f failingFile) Sync() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if *f.syncErr != nil {
		return *f.syncErr
	}
	return f.file.Sync()
}

func (f failingFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if *f.writeErr != nil {
		n := len(p) / 2 // a partial write
		_, _ = f.file.Write(p[:n])
		return n, *f.writeErr
	}
	return f.file.Write(p)
}

func TestDiskErrors(t *testing.T) {
	for _, tc := range []struct {
		name      string
		sync      bool
		recovers  bool
		injectErr error
	}{
		{name: "fsync", sync: true, recovers: false, injectErr: errors.New("input/output error")},
		{name: "write", sync: false, recovers: true, injectErr: errors.New("no space left on device")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var (
				mu                sync.Mutex
				syncErr, writeErr error
			)
			open := func(name string, flag int, perm fs.FileMode) (file, error) {
				f, err := os.OpenFile(name, flag, perm)
				if err != nil {
					return nil, err
				}
				return failingFile{file: f, syncErr: &syncErr, writeErr: &writeErr, mu: &mu}, nil
			}
			dir := t.TempDir()
			b := &budget{max: 1 << 20}
			l, _, _ := startLog(t, dir, b, 1<<20, open)
			if err := l.Append(context.Background(), [][]byte{[]byte("before")}, time.Now()); err != nil {
				t.Fatal(err)
			}
			usedBefore := b.used.Load()
			mu.Lock()
			if tc.sync {
				syncErr = tc.injectErr
			} else {
				writeErr = tc.injectErr
			}
			mu.Unlock()
			err := l.Append(context.Background(), [][]byte{[]byte("lost")}, time.Now())
			if err == nil || !errors.Is(err, bridge.ErrSpoolFull) {
				t.Fatalf("append during a disk error = %v, want an error wrapping ErrSpoolFull", err)
			}
			if b.used.Load() != usedBefore {
				t.Fatalf("failed append kept %d bytes of the budget", b.used.Load()-usedBefore)
			}
			mu.Lock()
			syncErr, writeErr = nil, nil
			mu.Unlock()
			err = l.Append(context.Background(), [][]byte{[]byte("after")}, time.Now())
			if tc.recovers && err != nil {
				t.Fatalf("append after the write error cleared: %v", err)
			}
			if !tc.recovers && !errors.Is(err, bridge.ErrSpoolFull) {
				t.Fatalf("append after a failed fsync = %v, want ErrSpoolFull until a restart", err)
			}
			if l.isBroken() == tc.recovers {
				t.Fatalf("broken = %v", l.isBroken())
			}
			got := readAll(t, l)
			want := []string{"before"}
			if tc.recovers {
				want = append(want, "after")
			}
			if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
				t.Fatalf("log holds %q, want %q", got, want)
			}
		})
	}
}

// TestReadOnlyDir: a directory that cannot be written fails at open, not
// later with a silent loss.
func TestReadOnlyDir(t *testing.T) {
	if os.Geteuid() == 0 {
		// root ignores directory permissions; the seam in TestDiskErrors covers write errors.
		t.Log("running as root: checking with a file where the directory should be")
		dir := filepath.Join(t.TempDir(), "notadir")
		if err := os.WriteFile(dir, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, _, err := openLog(logOptions{name: "x", dir: dir, log: testLog(t), budget: &budget{max: 1 << 20}, segBytes: 1 << 20, open: osOpen}); err == nil {
			t.Fatal("openLog on a file succeeded")
		}
		return
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	if _, _, err := openLog(logOptions{name: "x", dir: filepath.Join(dir, "x"), log: testLog(t), budget: &budget{max: 1 << 20}, segBytes: 1 << 20, open: osOpen}); err == nil {
		t.Fatal("openLog in a read-only directory succeeded")
	}
}
