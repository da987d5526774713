// Package archive keeps every verified webhook request body for a while,
// so that `mistbridge replay` can publish its events again: after a
// consumer lost data, a stream was deleted, or a bug downstream needs the
// same traffic once more.
//
// The archive is an operator's tool, not part of the delivery promise: the
// spool and the brokers already hold every event the bridge answered 200
// for. So it is cheap rather than durable: one write(2) per request into
// the page cache, under a mutex, and no fsync per request (a segment is
// fsync'd once, when it is closed). A killed process loses nothing written;
// a host crash may lose the last seconds, and leave a torn record at the
// end of the segment, which reading skips and reports. Its failures are
// logged and counted by the server and never fail a request.
//
// Files are time-bucketed (one segment per [Config.Segment], an hour by
// default), so retention deletes whole files. See docs/archive.md for the
// format.
package archive

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mistbridge/mistbridge/bridge"
)

// ErrClosed is returned by [Archive.Archive] after [Archive.Close].
var ErrClosed = errors.New("archive: closed")

// pruneInterval is how often the pruner looks for segments past their
// retention. Retention works on whole segments (a minute at least), so a
// minute's delay costs nothing.
const pruneInterval = time.Minute

// framePool holds the buffers records are framed in, outside the lock.
var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// Archive appends verified request bodies to time-bucketed segment files
// and deletes the segments past their retention in the background. It
// implements [bridge.Archiver] and is safe for concurrent use. Build it
// with [Open]; stop it with [Archive.Close].
type Archive struct {
	cfg Config
	log *slog.Logger
	now func() time.Time

	mu     sync.Mutex
	cur    *segFile // the segment appended to; nil until the first append
	closed bool

	bytes    atomic.Int64 // of every segment file in Dir
	requests prometheus.Counter
	bytesFn  prometheus.GaugeFunc

	kick    chan struct{} // cap 1: asks the pruner for a pass now
	pruneMu sync.Mutex    // one pruning pass at a time
	stop    context.CancelFunc
	workers sync.WaitGroup
	onPrune func() // tests: called after each pruning pass
}

// segFile is the segment being appended to.
type segFile struct {
	f     *os.File
	path  string
	start time.Time // its bucket
	size  int64
}

var _ bridge.Archiver = (*Archive)(nil)

// options are what tests change; Open uses the zero value.
type options struct {
	now     func() time.Time
	onPrune func()
}

// Open creates cfg.Dir when missing and returns an Archive appending to it,
// with its pruner started: it deletes, at once and then every minute, the
// segments whose every request is older than cfg.Retention, and the oldest
// ones while the files pass cfg.MaxBytes. It registers
// mistbridge_archive_bytes and mistbridge_archive_requests_total with reg
// (nil registers nothing). A nil log discards. It fails when cfg is
// invalid or off (Retention 0), when Dir cannot be created or read, or
// when the metrics are registered already.
func Open(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Archive, error) {
	return open(cfg, log, reg, options{})
}

func open(cfg Config, log *slog.Logger, reg prometheus.Registerer, o options) (*Archive, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.Enabled() {
		return nil, errors.New("archive: off: MISTBRIDGE_ARCHIVE_RETENTION is 0")
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.now == nil {
		o.now = time.Now
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	segs, err := List(cfg.Dir)
	if err != nil {
		return nil, err
	}
	a := &Archive{
		cfg:     cfg,
		log:     log.With("component", "archive"),
		now:     o.now,
		kick:    make(chan struct{}, 1),
		onPrune: o.onPrune,
		requests: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mistbridge_archive_requests_total",
			Help: "Verified request bodies written to the raw archive (MISTBRIDGE_ARCHIVE_RETENTION).",
		}),
	}
	for _, s := range segs {
		a.bytes.Add(s.Size)
	}
	a.bytesFn = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mistbridge_archive_bytes",
		Help: "Bytes of the raw archive's segment files on disk.",
	}, func() float64 { return float64(a.bytes.Load()) })
	if reg != nil {
		for _, c := range []prometheus.Collector{a.requests, a.bytesFn} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("archive: metrics: %w", err)
			}
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	a.stop = stop
	a.workers.Add(1)
	go a.pruneLoop(ctx)
	a.log.Info("archiving verified request bodies", "dir", cfg.Dir, "retention", cfg.Retention,
		"segment", cfg.Segment, "max_bytes", cfg.MaxBytes, "segments", len(segs))
	return a, nil
}

// Archive appends rec to the segment of its receive time (now when
// rec.Received is zero): one write, no fsync. A request received shortly
// before the bucket of the segment being written (it straddled the
// boundary) goes to that segment. Archive does not keep rec.Body. It
// fails with [ErrClosed] after Close, or with the disk's error; a write
// that failed part way is cut off, so the segment stays readable past it.
// ctx is not used: the call blocks only for one write.
func (a *Archive) Archive(_ context.Context, rec bridge.ArchiveRecord) error {
	if rec.Received.IsZero() {
		rec.Received = a.now()
	}
	bp := framePool.Get().(*[]byte)
	frame := appendFrame((*bp)[:0], &rec)
	defer func() {
		if cap(frame) <= 1<<20 { // keep the pool from pinning huge buffers
			*bp = frame[:0]
			framePool.Put(bp)
		}
	}()
	if len(frame)-frameHeader > maxRecord {
		return fmt.Errorf("archive: a record of %d bytes is over the limit of %d", len(frame)-frameHeader, maxRecord)
	}
	start := rec.Received.UTC().Truncate(a.cfg.Segment)

	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return ErrClosed
	}
	var old *segFile
	// A request received in an earlier bucket goes to the segment being
	// written (it straddled the boundary), unless it is more than
	// LateSlack older (the clock was set back): then it gets a segment of
	// its own bucket, so that every segment holds only requests received
	// within [start-LateSlack, start+span) and readers may trust names.
	if a.cur == nil || start.After(a.cur.start) || rec.Received.Before(a.cur.start.Add(-LateSlack)) {
		seg, err := a.create(start)
		if err != nil {
			a.mu.Unlock()
			return err
		}
		old, a.cur = a.cur, seg
	}
	cur := a.cur
	n, err := cur.f.Write(frame)
	if err != nil && n > 0 {
		// Cut the partial frame off so the records after it stay readable;
		// when that fails too, the next append starts a new file.
		if terr := cur.f.Truncate(cur.size); terr != nil {
			a.cur = nil
			old = cur
		} else {
			n = 0
		}
	}
	cur.size += int64(n)
	a.mu.Unlock()

	a.bytes.Add(int64(n))
	if old != nil {
		a.closeSegment(old)
	}
	if err != nil {
		return fmt.Errorf("archive: write %s: %w", filepath.Base(cur.path), err)
	}
	a.requests.Inc()
	if a.bytes.Load() > a.cfg.MaxBytes {
		select {
		case a.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// create opens a new segment file for the bucket at start, the first
// free n, and writes its magic. Called with mu held.
func (a *Archive) create(start time.Time) (*segFile, error) {
	for n := 0; n < 10000; n++ {
		path := filepath.Join(a.cfg.Dir, segmentName(start, a.cfg.Segment, n))
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o640)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("archive: create segment: %w", err)
		}
		if _, err := f.WriteString(segmentMagic); err != nil {
			f.Close()
			os.Remove(path)
			return nil, fmt.Errorf("archive: create segment %s: %w", filepath.Base(path), err)
		}
		a.bytes.Add(headerSize)
		return &segFile{f: f, path: path, start: start, size: headerSize}, nil
	}
	return nil, fmt.Errorf("archive: create segment: every name of the bucket %s is taken", start.Format(timeLayout))
}

// closeSegment fsyncs and closes a segment no longer appended to: once an
// hour, so a host crash loses at most the segment being written.
func (a *Archive) closeSegment(s *segFile) {
	if err := errors.Join(s.f.Sync(), s.f.Close()); err != nil {
		a.log.Warn("closing an archive segment failed", "segment", filepath.Base(s.path), "err", err)
	}
}

// Close stops the pruner and waits for it, then fsyncs and closes the
// segment being written. Later calls to Archive fail with [ErrClosed].
// Close is idempotent.
func (a *Archive) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	cur := a.cur
	a.cur = nil
	a.mu.Unlock()
	a.stop()
	a.workers.Wait()
	if cur != nil {
		if err := errors.Join(cur.f.Sync(), cur.f.Close()); err != nil {
			return fmt.Errorf("archive: close %s: %w", filepath.Base(cur.path), err)
		}
	}
	return nil
}

// pruneLoop prunes at once, then every pruneInterval and whenever an
// append finds the files past MaxBytes, until ctx ends.
func (a *Archive) pruneLoop(ctx context.Context) {
	defer a.workers.Done()
	t := time.NewTicker(pruneInterval)
	defer t.Stop()
	for {
		a.prune()
		if a.onPrune != nil {
			a.onPrune()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.kick:
		}
	}
}

// prune deletes the segments whose bucket ended Retention ago or more,
// then the oldest segments while the files pass MaxBytes. The segment
// being written is never deleted: late requests may still go to it.
func (a *Archive) prune() {
	a.pruneMu.Lock()
	defer a.pruneMu.Unlock()
	segs, err := List(a.cfg.Dir)
	if err != nil {
		a.log.Warn("pruning the archive: listing it failed", "err", err)
		return
	}
	a.mu.Lock()
	current := ""
	if a.cur != nil {
		current = a.cur.path
	}
	a.mu.Unlock()
	cutoff := a.now().Add(-a.cfg.Retention)
	var total int64
	for _, s := range segs {
		total += s.Size
	}
	for _, s := range segs {
		if s.Path == current {
			continue
		}
		// Every request in s was received before its bucket ended.
		expired := !s.Start.Add(s.Span).After(cutoff)
		if !expired && total <= a.cfg.MaxBytes {
			continue
		}
		// A segment removed by someone else counts as removed.
		if err := os.Remove(s.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			a.log.Warn("pruning the archive: removing a segment failed", "segment", filepath.Base(s.Path), "err", err)
			continue
		}
		total -= s.Size
		a.bytes.Add(-s.Size)
		if expired {
			a.log.Debug("archive segment past its retention removed", "segment", filepath.Base(s.Path), "bytes", s.Size)
		} else {
			a.log.Warn("archive segment removed before its retention ended: the archive is over MISTBRIDGE_ARCHIVE_MAX_BYTES",
				"segment", filepath.Base(s.Path), "bytes", s.Size, "max_bytes", a.cfg.MaxBytes)
		}
	}
}
