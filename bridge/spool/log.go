package spool

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mistbridge/mistbridge/bridge"
)

// On-disk layout of one sink's log (Dir/<sink>/):
//
//	<first seq, 20 digits>.seg   segments, oldest first; the last one is written
//	ack                          the last delivered seq (8 bytes LE + CRC-32C)
//
// A segment starts with segmentMagic, then frames:
//
//	u32 LE payload length | u32 LE CRC-32C (Castagnoli) of the payload | payload
//
// A record's sequence number is its segment's first seq plus its index in
// the segment. The ack file may lag (it is not fsync'd): after a crash
// records delivered since are delivered again, with the same CloudEvent id.
const (
	segmentExt    = ".seg"
	segmentMagic  = "MBSPOOL1"
	headerSize    = int64(len(segmentMagic))
	frameHeader   = 8
	maxRecord     = 1 << 30
	ackFileName   = "ack"
	maxCommitSize = 8 << 20 // one write+fsync gathers at most this much
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// file is what the log needs of an *os.File; tests replace it to inject
// disk errors.
type file interface {
	io.Writer
	io.ReaderAt
	Sync() error
	Truncate(size int64) error
	Close() error
}

// openFunc opens a file like os.OpenFile.
type openFunc func(name string, flag int, perm fs.FileMode) (file, error)

func osOpen(name string, flag int, perm fs.FileMode) (file, error) {
	return os.OpenFile(name, flag, perm)
}

// budget is the byte bound shared by every sink's log.
type budget struct {
	max  int64
	used atomic.Int64
	full atomic.Bool // an append was refused for room since bytes were last freed
}

func (b *budget) reserve(n int64) bool {
	for {
		u := b.used.Load()
		if u+n > b.max {
			b.full.Store(true)
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

func (b *budget) release(n int64) {
	if n > 0 {
		b.used.Add(-n)
		b.full.Store(false)
	}
}

// Skipped is a byte range recovery could not read and removed.
type Skipped struct {
	Segment string `json:"segment"`
	Offset  int64  `json:"offset"`
	Bytes   int64  `json:"bytes"`
	Reason  string `json:"reason"`
}

// Recovery is what opening one sink's log found.
type Recovery struct {
	Sink string `json:"sink"`
	// Events and Bytes are the undelivered records found, to be delivered.
	Events int64 `json:"events"`
	Bytes  int64 `json:"bytes"`
	// Segments is the number of segment files kept.
	Segments int `json:"segments"`
	// Skipped lists the unreadable ranges (a torn or corrupt tail) that
	// were cut off; they held no complete record.
	Skipped []Skipped `json:"skipped,omitempty"`
}

// SkippedBytes totals Skipped.
func (r Recovery) SkippedBytes() int64 {
	var n int64
	for _, s := range r.Skipped {
		n += s.Bytes
	}
	return n
}

type segment struct {
	base uint64 // seq of its first record
	path string
	size int64 // committed bytes, header included
}

// appendReq is one caller's records, framed, waiting for the committer.
type appendReq struct {
	frames []byte
	n      int
	recv   time.Time
	done   chan error
}

// record is one frame read back for delivery.
type record struct {
	seq     uint64
	payload []byte
	size    int64 // frame bytes
}

// readPos is where the deliverer reads next.
type readPos struct {
	base uint64 // segment
	off  int64
	seq  uint64 // seq of the record at off
}

// wlog is one sink's write-ahead log. Append is safe for concurrent use;
// read and ack are called by its one deliverer.
type wlog struct {
	name     string
	dir      string
	log      *slog.Logger
	budget   *budget
	segBytes int64
	open     openFunc

	reqs    chan *appendReq // unbuffered: a sender never waits on a committer that stopped
	stopped chan struct{}   // closed when the committer returns
	notify  chan struct{}   // cap 1: wakes the deliverer after a commit
	fsyncs  atomic.Int64
	commits atomic.Int64 // records committed
	// inflight counts appends between reserve and answer, so Deliver sees
	// a backlog that is not committed yet.
	inflight atomic.Int64
	events   atomic.Int64 // undelivered records
	pending  atomic.Int64 // frame bytes of undelivered records
	head     atomic.Int64 // receive time (Unix ns) of the oldest undelivered record, 0 when unknown

	// Owned by the committer goroutine.
	active file
	wbuf   []byte

	mu       sync.Mutex
	segs     []*segment // oldest first; the last is the active one
	lastSeq  uint64     // last committed seq
	ackedSeq uint64
	broken   error // set after a failed fsync: nothing more is appended

	// Owned by the deliverer.
	rpos  readPos
	rfile *os.File
	rbase uint64
	rbuf  *bufio.Reader
}

type logOptions struct {
	name     string
	dir      string
	log      *slog.Logger
	budget   *budget
	segBytes int64
	open     openFunc
}

// openLog opens (creating) the log in o.dir, recovering what a crash left:
// a torn or corrupt tail is cut off and reported, never refused.
func openLog(o logOptions) (*wlog, Recovery, error) {
	l := &wlog{
		name: o.name, dir: o.dir, log: o.log, budget: o.budget, segBytes: o.segBytes, open: o.open,
		reqs: make(chan *appendReq), stopped: make(chan struct{}), notify: make(chan struct{}, 1),
	}
	rec := Recovery{Sink: o.name}
	if err := os.MkdirAll(o.dir, 0o750); err != nil {
		return nil, rec, fmt.Errorf("spool: %s: %w", o.name, err)
	}
	acked, err := readAck(o.dir)
	if err != nil {
		rec.Skipped = append(rec.Skipped, Skipped{Segment: ackFileName, Reason: err.Error()})
	}
	l.ackedSeq = acked
	segs, err := listSegments(o.dir)
	if err != nil {
		return nil, rec, fmt.Errorf("spool: %s: %w", o.name, err)
	}
	var (
		found    bool
		firstPos readPos
		disk     int64
	)
	for _, s := range segs {
		sc, err := scanSegment(s.path, s.base, acked, func(seq uint64, off int64, payload []byte) {
			if found {
				return
			}
			found = true
			firstPos = readPos{base: s.base, off: off, seq: seq}
			if _, recv, err := decodeRecord(payload); err == nil {
				l.head.Store(recv.UnixNano())
			}
		})
		if err != nil {
			return nil, rec, fmt.Errorf("spool: %s: %w", o.name, err)
		}
		if sc.bad != "" {
			rec.Skipped = append(rec.Skipped, Skipped{Segment: filepath.Base(s.path), Offset: sc.valid, Bytes: sc.size - sc.valid, Reason: sc.bad})
			if sc.valid < headerSize {
				// Not even a header: nothing in it to keep.
				if err := os.Remove(s.path); err != nil {
					return nil, rec, fmt.Errorf("spool: %s: remove unreadable segment: %w", o.name, err)
				}
				s.size = -1
				continue
			}
			if err := os.Truncate(s.path, sc.valid); err != nil {
				return nil, rec, fmt.Errorf("spool: %s: cut the torn tail of %s: %w", o.name, filepath.Base(s.path), err)
			}
		}
		s.size = sc.valid
		if sc.records > 0 {
			l.lastSeq = max(l.lastSeq, s.base+uint64(sc.records)-1)
		} else {
			l.lastSeq = max(l.lastSeq, s.base-1)
		}
		l.events.Add(sc.undelivered)
		l.pending.Add(sc.undeliveredBytes)
	}
	segs = slices.DeleteFunc(segs, func(s *segment) bool { return s.size < 0 })
	// The ack file may name a seq past what survived (a lost tail): new
	// records must still get seqs above it.
	l.lastSeq = max(l.lastSeq, l.ackedSeq)
	for _, s := range segs {
		disk += s.size
	}
	l.segs = segs
	rec.Events, rec.Bytes = l.events.Load(), l.pending.Load()
	if err := l.openActive(); err != nil {
		return nil, rec, err
	}
	o.budget.used.Add(disk)
	if found {
		l.rpos = firstPos
	} else {
		a := l.segs[len(l.segs)-1]
		l.rpos = readPos{base: a.base, off: a.size, seq: l.lastSeq + 1}
	}
	l.removeDelivered() // segments wholly delivered; the active one stays
	rec.Segments = len(l.segs)
	return l, rec, nil
}

// openActive opens the last segment for appending, or creates the first.
func (l *wlog) openActive() error {
	if len(l.segs) == 0 {
		return l.newSegment()
	}
	a := l.segs[len(l.segs)-1]
	f, err := l.open(a.path, os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("spool: %s: open %s: %w", l.name, filepath.Base(a.path), err)
	}
	l.active = f
	return nil
}

// newSegment creates the segment that the next record starts, makes it
// durable (header and directory entry) and makes it the active one. The
// caller is the committer, or openLog before it starts.
func (l *wlog) newSegment() error {
	base := l.lastSeq + 1
	path := filepath.Join(l.dir, segmentName(base))
	f, err := l.open(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("spool: %s: create segment: %w", l.name, err)
	}
	if _, err := f.Write([]byte(segmentMagic)); err != nil {
		f.Close()
		return fmt.Errorf("spool: %s: write segment header: %w", l.name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("spool: %s: fsync new segment: %w", l.name, err)
	}
	if err := syncDir(l.dir); err != nil {
		f.Close()
		return fmt.Errorf("spool: %s: fsync directory: %w", l.name, err)
	}
	if l.active != nil {
		if err := l.active.Close(); err != nil {
			l.log.Warn("closing a full segment", "err", err)
		}
	}
	l.active = f
	l.budget.used.Add(headerSize)
	l.mu.Lock()
	if n := len(l.segs); n > 0 && l.segs[n-1].base == base {
		// An empty segment replaced by a new file of the same name.
		l.budget.release(l.segs[n-1].size)
		l.segs[n-1] = &segment{base: base, path: path, size: headerSize}
	} else {
		l.segs = append(l.segs, &segment{base: base, path: path, size: headerSize})
	}
	l.mu.Unlock()
	return nil
}

func segmentName(base uint64) string { return fmt.Sprintf("%020d%s", base, segmentExt) }

// listSegments returns dir's segments by first seq.
func listSegments(dir string) ([]*segment, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []*segment
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), segmentExt)
		if !ok || e.IsDir() || len(name) != 20 {
			continue
		}
		base, err := strconv.ParseUint(name, 10, 64)
		if err != nil || base == 0 {
			continue
		}
		segs = append(segs, &segment{base: base, path: filepath.Join(dir, e.Name())})
	}
	slices.SortFunc(segs, func(a, b *segment) int { return cmpUint(a.base, b.base) })
	return segs, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// scanResult is what scanSegment read.
type scanResult struct {
	size             int64 // bytes in the file
	valid            int64 // bytes up to the end of the last whole record
	records          int
	undelivered      int64
	undeliveredBytes int64
	bad              string // why reading stopped before size, "" at a clean end
}

// scanSegment reads the segment at path, calling each for every whole
// record whose seq is above acked. It stops at the first frame that is
// short or fails its checksum: a torn write leaves only whole records
// before it.
func scanSegment(path string, base, acked uint64, each func(seq uint64, off int64, payload []byte)) (scanResult, error) {
	var r scanResult
	f, err := os.Open(path)
	if err != nil {
		return r, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return r, err
	}
	r.size = st.Size()
	br := bufio.NewReaderSize(f, 256<<10)
	var hdr [frameHeader]byte
	if _, err := io.ReadFull(br, hdr[:headerSize]); err != nil || string(hdr[:headerSize]) != segmentMagic {
		r.bad = "segment header missing or not a spool segment"
		return r, nil
	}
	r.valid = headerSize
	var payload []byte
	for seq := base; ; seq++ {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if err != io.EOF {
				r.bad = "torn frame header"
			}
			return r, nil
		}
		n := binary.LittleEndian.Uint32(hdr[0:4])
		sum := binary.LittleEndian.Uint32(hdr[4:8])
		if n > maxRecord || int64(n) > r.size-r.valid-frameHeader {
			r.bad = "torn record (length past the end)"
			return r, nil
		}
		payload = slices.Grow(payload[:0], int(n))[:n]
		if _, err := io.ReadFull(br, payload); err != nil {
			r.bad = "torn record"
			return r, nil
		}
		if crc32.Checksum(payload, crcTable) != sum {
			r.bad = "checksum mismatch"
			return r, nil
		}
		if seq > acked {
			r.undelivered++
			r.undeliveredBytes += frameHeader + int64(n)
			if each != nil {
				each(seq, r.valid, payload)
			}
		}
		r.records++
		r.valid += frameHeader + int64(n)
	}
}

// readAck returns the last delivered seq, 0 when none was recorded. A
// damaged ack file reads as 0 (everything is delivered again) and is
// reported.
func readAck(dir string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, ackFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if len(b) != 12 || crc32.Checksum(b[:8], crcTable) != binary.LittleEndian.Uint32(b[8:]) {
		return 0, errors.New("ack file damaged: every record found is delivered again")
	}
	return binary.LittleEndian.Uint64(b[:8]), nil
}

// writeAck records seq as delivered. It is not fsync'd: a lost update
// only delivers records again, with their ids.
func writeAck(dir string, seq uint64) error {
	var b [12]byte
	binary.LittleEndian.PutUint64(b[:8], seq)
	binary.LittleEndian.PutUint32(b[8:], crc32.Checksum(b[:8], crcTable))
	tmp := filepath.Join(dir, ackFileName+".tmp")
	if err := os.WriteFile(tmp, b[:], 0o640); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, ackFileName))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// errClosed is wrapped (with ErrSpoolFull) by appends after Close.
var errClosed = errors.New("spool: closed")

// Append makes every payload durable (written and fsync'd) as one unit
// with the appends of other callers, and returns nil only then. recv is
// the receive time of the payloads. It fails, wrapping
// [bridge.ErrSpoolFull], when the payloads would pass the byte bound, when
// the disk fails, or after the log is closed; nothing committed before is
// touched. When ctx ends first it returns ctx's error; the payloads may
// still be committed and delivered.
func (l *wlog) Append(ctx context.Context, payloads [][]byte, recv time.Time) error {
	size := 0
	for _, p := range payloads {
		size += frameHeader + len(p)
	}
	req := &appendReq{frames: make([]byte, 0, size), n: len(payloads), recv: recv, done: make(chan error, 1)}
	for _, p := range payloads {
		req.frames = binary.LittleEndian.AppendUint32(req.frames, uint32(len(p)))
		req.frames = binary.LittleEndian.AppendUint32(req.frames, crc32.Checksum(p, crcTable))
		req.frames = append(req.frames, p...)
	}
	return l.appendFrames(ctx, req)
}

func (l *wlog) appendFrames(ctx context.Context, req *appendReq) error {
	l.inflight.Add(1)
	defer l.inflight.Add(-1)
	if !l.budget.reserve(int64(len(req.frames))) {
		return fmt.Errorf("spool: %s: %d bytes more would pass the bound of %d bytes (%d used): %w",
			l.name, len(req.frames), l.budget.max, l.budget.used.Load(), bridge.ErrSpoolFull)
	}
	select {
	case l.reqs <- req:
	case <-l.stopped:
		l.budget.release(int64(len(req.frames)))
		return fmt.Errorf("spool: %s: %w: %w", l.name, errClosed, bridge.ErrSpoolFull)
	case <-ctx.Done():
		l.budget.release(int64(len(req.frames)))
		return fmt.Errorf("spool: %s: waiting to append: %w", l.name, ctx.Err())
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("spool: %s: waiting for fsync: %w", l.name, ctx.Err())
	}
}

// run is the committer: it gathers the appends waiting, writes them with
// one write, fsyncs once and answers them all. It returns when ctx ends.
func (l *wlog) run(ctx context.Context) {
	defer close(l.stopped)
	var batch []*appendReq
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-l.reqs:
			batch = append(batch[:0], r)
		}
		size := len(batch[0].frames)
	gather:
		for size < maxCommitSize {
			select {
			case r := <-l.reqs:
				batch = append(batch, r)
				size += len(r.frames)
			default:
				break gather
			}
		}
		l.commit(batch)
		clear(batch)
	}
}

// commit writes and fsyncs batch, then answers each request.
func (l *wlog) commit(batch []*appendReq) {
	var size int64
	for _, r := range batch {
		size += int64(len(r.frames))
	}
	err := l.write(batch)
	if err != nil {
		l.budget.release(size)
		for _, r := range batch {
			r.done <- err
		}
		return
	}
	n := 0
	for _, r := range batch {
		n += r.n
	}
	l.mu.Lock()
	a := l.segs[len(l.segs)-1]
	a.size += size
	l.lastSeq += uint64(n)
	l.mu.Unlock()
	if l.events.Add(int64(n)) == int64(n) {
		l.head.CompareAndSwap(0, batch[0].recv.UnixNano())
	}
	l.pending.Add(size)
	l.commits.Add(int64(n))
	select {
	case l.notify <- struct{}{}:
	default:
	}
	for _, r := range batch {
		r.done <- nil
	}
}

// write puts batch on disk durably in the active segment, starting a new
// segment first when the active one is full, or when it holds only
// delivered records (so their room can be given back).
func (l *wlog) write(batch []*appendReq) error {
	l.mu.Lock()
	broken := l.broken
	a := l.segs[len(l.segs)-1]
	good := a.size
	rotate := good >= l.segBytes || good > headerSize && l.events.Load() == 0 && l.ackedSeq == l.lastSeq
	l.mu.Unlock()
	if broken != nil {
		return fmt.Errorf("spool: %s: not writable since an fsync failed (%v); restart to recover: %w", l.name, broken, bridge.ErrSpoolFull)
	}
	if rotate {
		if err := l.newSegment(); err != nil {
			l.log.Error("cannot start a new segment", "err", err)
			return fmt.Errorf("%w: %w", err, bridge.ErrSpoolFull)
		}
		l.removeDelivered()
		good = headerSize
	}
	l.wbuf = l.wbuf[:0]
	for _, r := range batch {
		l.wbuf = append(l.wbuf, r.frames...)
	}
	if cap(l.wbuf) > maxCommitSize*2 {
		defer func() { l.wbuf = nil }()
	}
	if _, err := l.active.Write(l.wbuf); err != nil {
		// Cut what was partly written so the next append starts clean.
		if terr := l.active.Truncate(good); terr != nil {
			l.setBroken(terr)
		}
		l.log.Error("spool write failed", "err", err)
		return fmt.Errorf("spool: %s: write %d bytes: %w: %w", l.name, len(l.wbuf), err, bridge.ErrSpoolFull)
	}
	l.fsyncs.Add(1)
	if err := l.active.Sync(); err != nil {
		// After a failed fsync the kernel may have dropped the dirty pages
		// and cleared the error: what is on disk is unknown, so the log
		// takes nothing more until a restart re-reads it.
		_ = l.active.Truncate(good)
		l.setBroken(err)
		l.log.Error("spool fsync failed; refusing appends until restart", "err", err)
		return fmt.Errorf("spool: %s: fsync: %w: %w", l.name, err, bridge.ErrSpoolFull)
	}
	return nil
}

func (l *wlog) setBroken(err error) {
	l.mu.Lock()
	if l.broken == nil {
		l.broken = err
	}
	l.mu.Unlock()
}

// isBroken reports whether the log refuses appends after a disk failure.
func (l *wlog) isBroken() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.broken != nil
}

// backlog reports whether records are spooled or being spooled, which
// new events must not overtake.
func (l *wlog) backlog() bool { return l.events.Load() > 0 || l.inflight.Load() > 0 }

// removeDelivered deletes the segments, other than the active one, whose
// every record is delivered, and gives their bytes back to the budget.
func (l *wlog) removeDelivered() {
	l.mu.Lock()
	var gone []*segment
	for len(l.segs) > 1 && l.segs[1].base-1 <= l.ackedSeq {
		gone = append(gone, l.segs[0])
		l.segs = l.segs[1:]
	}
	l.mu.Unlock()
	for _, s := range gone {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			l.log.Warn("removing a delivered segment", "segment", filepath.Base(s.path), "err", err)
			continue
		}
		l.budget.release(s.size)
	}
}

// read returns the next records after the read position, at most
// maxEvents and about maxBytes (one larger record is returned alone), up
// to what is committed. Called by the deliverer only.
func (l *wlog) read(maxEvents int, maxBytes int64) ([]record, error) {
	var out []record
	var total int64
	for len(out) < maxEvents && total < maxBytes {
		l.mu.Lock()
		i := slices.IndexFunc(l.segs, func(s *segment) bool { return s.base == l.rpos.base })
		if i < 0 {
			// The segment went (everything in it delivered): go on from
			// the oldest one that can hold the next seq.
			i = slices.IndexFunc(l.segs, func(s *segment) bool { return s.base >= l.rpos.base })
			if i < 0 {
				i = len(l.segs) - 1
			}
			l.rpos = readPos{base: l.segs[i].base, off: headerSize, seq: l.segs[i].base}
		}
		seg := *l.segs[i]
		hasNext := i+1 < len(l.segs)
		var nextBase uint64
		if hasNext {
			nextBase = l.segs[i+1].base
		}
		l.mu.Unlock()
		if l.rpos.off >= seg.size {
			if !hasNext {
				break
			}
			l.rpos = readPos{base: nextBase, off: headerSize, seq: nextBase}
			continue
		}
		if err := l.openReader(seg); err != nil {
			return out, err
		}
		l.rbuf.Reset(io.NewSectionReader(l.rfile, l.rpos.off, seg.size-l.rpos.off))
		var hdr [frameHeader]byte
		for l.rpos.off < seg.size && len(out) < maxEvents && total < maxBytes {
			if _, err := io.ReadFull(l.rbuf, hdr[:]); err != nil {
				return out, l.corrupt(seg, hasNext, nextBase, err.Error())
			}
			n := binary.LittleEndian.Uint32(hdr[0:4])
			if n > maxRecord || int64(n) > seg.size-l.rpos.off-frameHeader {
				return out, l.corrupt(seg, hasNext, nextBase, "length past the end")
			}
			p := make([]byte, n)
			if _, err := io.ReadFull(l.rbuf, p); err != nil {
				return out, l.corrupt(seg, hasNext, nextBase, err.Error())
			}
			if crc32.Checksum(p, crcTable) != binary.LittleEndian.Uint32(hdr[4:8]) {
				return out, l.corrupt(seg, hasNext, nextBase, "checksum mismatch")
			}
			out = append(out, record{seq: l.rpos.seq, payload: p, size: frameHeader + int64(n)})
			total += frameHeader + int64(n)
			l.rpos.off += frameHeader + int64(n)
			l.rpos.seq++
		}
	}
	return out, nil
}

// corrupt handles a record that was committed but reads back bad (the disk
// changed under it): the rest of its segment cannot be framed, so reading
// goes on at the next segment. In the active segment there is none, so
// the error is returned and the deliverer retries later.
func (l *wlog) corrupt(seg segment, hasNext bool, nextBase uint64, why string) error {
	err := fmt.Errorf("spool: %s: segment %s unreadable at offset %d: %s", l.name, filepath.Base(seg.path), l.rpos.off, why)
	if hasNext {
		l.log.Error("skipping the rest of a damaged segment", "segment", filepath.Base(seg.path), "offset", l.rpos.off, "bytes", seg.size-l.rpos.off, "reason", why)
		l.rpos = readPos{base: nextBase, off: headerSize, seq: nextBase}
		return nil
	}
	return err
}

func (l *wlog) openReader(seg segment) error {
	if l.rfile != nil && l.rbase == seg.base {
		return nil
	}
	l.closeReader()
	f, err := os.Open(seg.path)
	if err != nil {
		return fmt.Errorf("spool: %s: open %s for reading: %w", l.name, filepath.Base(seg.path), err)
	}
	l.rfile, l.rbase = f, seg.base
	if l.rbuf == nil {
		l.rbuf = bufio.NewReaderSize(f, 256<<10)
	}
	return nil
}

func (l *wlog) closeReader() {
	if l.rfile != nil {
		l.rfile.Close()
		l.rfile = nil
	}
}

// ack records every record up to seq as delivered: n records of bytes
// frame bytes. Called by the deliverer only.
func (l *wlog) ack(seq uint64, n int, bytes int64) {
	l.mu.Lock()
	l.ackedSeq = seq
	l.mu.Unlock()
	l.pending.Add(-bytes)
	if l.events.Add(-int64(n)) == 0 {
		l.head.Store(0)
	}
	if err := writeAck(l.dir, seq); err != nil {
		l.log.Warn("recording delivery progress (records may be delivered again after a restart)", "err", err)
	}
	l.removeDelivered()
}

// close releases the files; the committer must have stopped.
func (l *wlog) close() error {
	l.closeReader()
	if l.active != nil {
		err := l.active.Close()
		l.active = nil
		return err
	}
	return nil
}
