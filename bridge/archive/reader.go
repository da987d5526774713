package archive

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/mistbridge/mistbridge/bridge"
)

// LateSlack is how much earlier than its segment's bucket a request may
// have been received and still be found by a [Reader]: a request is
// archived when its body has been read and verified, after it arrived, so
// one received just before a boundary can land in the next segment.
// Requests are bounded far below this (MISTBRIDGE_READ_TIMEOUT, 30s).
const LateSlack = 10 * time.Minute

// Segment is one archive file.
type Segment struct {
	// Path is the file's path.
	Path string `json:"path"`
	// Start is the start of its bucket (UTC).
	Start time.Time `json:"start"`
	// Span is the length of its bucket: every request in the segment was
	// received before Start+Span (and, but for [LateSlack], after Start).
	Span time.Duration `json:"span"`
	// N tells apart the files of one bucket, in the order they were made.
	N int `json:"n"`
	// Size is the file's size when it was listed.
	Size int64 `json:"size"`
}

// List returns the segments in dir, oldest first; other files are
// ignored. A missing dir has none. It fails when dir cannot be read.
func List(dir string) ([]Segment, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("archive: list: %w", err)
	}
	var segs []Segment
	for _, e := range ents {
		start, span, n, ok := parseSegmentName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // pruned meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("archive: list: %w", err)
		}
		segs = append(segs, Segment{Path: filepath.Join(dir, e.Name()), Start: start, Span: span, N: n, Size: info.Size()})
	}
	slices.SortFunc(segs, func(a, b Segment) int {
		if c := a.Start.Compare(b.Start); c != 0 {
			return c
		}
		return cmp.Compare(a.N, b.N)
	})
	return segs, nil
}

// Skipped is a byte range a [Reader] could not read: a torn tail (a crash
// during a write, or a write in progress when the bridge is running), or a
// corrupt record and whatever follows it in its segment.
type Skipped struct {
	Segment string `json:"segment"`
	Offset  int64  `json:"offset"`
	Bytes   int64  `json:"bytes"`
	Reason  string `json:"reason"`
}

// Reader reads the records of an archive directory received within a time
// window. It reads without locking or changing anything, so it is safe
// while a bridge appends to the directory. It is not safe for concurrent
// use.
//
// Records come segment by segment in the order they were written, which is
// the order of their receive times but for requests that overlapped.
type Reader struct {
	since, until time.Time
	segs         []Segment
	size         int64 // of segs

	i       int // next segment to open
	f       *os.File
	br      *bufio.Reader
	seg     Segment
	off     int64 // in the open segment
	done    int64 // bytes of the segments finished
	buf     []byte
	rec     bridge.ArchiveRecord
	skipped []Skipped
	err     error
}

// NewReader returns a Reader of the records in dir received at or after
// since and before until; a zero since or until leaves that side open. It
// selects the segments whose bucket can hold such records (with
// [LateSlack]) when called: segments made later are not read. It fails
// when dir cannot be listed.
func NewReader(dir string, since, until time.Time) (*Reader, error) {
	all, err := List(dir)
	if err != nil {
		return nil, err
	}
	var segs []Segment
	for _, s := range all {
		// Every record of s was received in [Start-LateSlack, Start+Span).
		if !since.IsZero() && !s.Start.Add(s.Span).After(since) {
			continue
		}
		if !until.IsZero() && !s.Start.Add(-LateSlack).Before(until) {
			continue
		}
		segs = append(segs, s)
	}
	r := &Reader{since: since, until: until, segs: segs}
	for _, s := range segs {
		r.size += s.Size
	}
	return r, nil
}

// Size is the bytes of the segments the Reader reads, as listed.
func (r *Reader) Size() int64 { return r.size }

// Offset is the bytes read so far, of Size: for progress.
func (r *Reader) Offset() int64 { return r.done + r.off }

// Segments are the segments the Reader reads.
func (r *Reader) Segments() []Segment { return r.segs }

// Next advances to the next record in the window, and reports whether
// there is one. It returns false at the end or on an error reading a file
// (see [Reader.Err]); an unreadable range of a segment is skipped and
// recorded ([Reader.Skipped]), and reading goes on with the next segment.
func (r *Reader) Next() bool {
	for r.err == nil {
		if r.f == nil {
			if r.i >= len(r.segs) {
				return false
			}
			r.openSegment()
			continue
		}
		rec, ok := r.readRecord()
		if !ok {
			r.closeSegment()
			continue
		}
		if !r.since.IsZero() && rec.Received.Before(r.since) || !r.until.IsZero() && !rec.Received.Before(r.until) {
			continue
		}
		r.rec = rec
		return true
	}
	return false
}

// Record is the current record. Its Body is valid until the next call to
// Next.
func (r *Reader) Record() bridge.ArchiveRecord { return r.rec }

// Err is the error that stopped Next, nil at a clean end.
func (r *Reader) Err() error { return r.err }

// Skipped lists the ranges skipped so far.
func (r *Reader) Skipped() []Skipped { return r.skipped }

// Close releases the open file.
func (r *Reader) Close() error {
	if r.f != nil {
		err := r.f.Close()
		r.f = nil
		return err
	}
	return nil
}

func (r *Reader) openSegment() {
	s := r.segs[r.i]
	r.i++
	f, err := os.Open(s.Path)
	if errors.Is(err, fs.ErrNotExist) {
		r.done += s.Size // pruned since it was listed
		return
	}
	if err != nil {
		r.err = fmt.Errorf("archive: read: %w", err)
		return
	}
	r.f, r.seg, r.off = f, s, 0
	if r.br == nil {
		r.br = bufio.NewReaderSize(f, 256<<10)
	} else {
		r.br.Reset(f)
	}
	var magic [headerSize]byte
	if _, err := io.ReadFull(r.br, magic[:]); err != nil || string(magic[:]) != segmentMagic {
		r.skip("not an archive segment (no magic " + segmentMagic + ")")
		r.closeSegment()
		return
	}
	r.off = headerSize
}

func (r *Reader) closeSegment() {
	r.f.Close()
	r.f = nil
	r.done += max(r.seg.Size, r.off)
	r.off = 0
}

// readRecord reads the next frame of the open segment; false at its end
// or at an unreadable frame, which is recorded.
func (r *Reader) readRecord() (bridge.ArchiveRecord, bool) {
	var h [frameHeader]byte
	n, err := io.ReadFull(r.br, h[:])
	if err == io.EOF {
		return bridge.ArchiveRecord{}, false
	}
	if err != nil {
		r.skipRead(err, int64(n), "a torn frame header")
		return bridge.ArchiveRecord{}, false
	}
	length := binary.LittleEndian.Uint32(h[:4])
	if length == 0 || length > maxRecord {
		r.skip(fmt.Sprintf("a frame length of %d", length))
		return bridge.ArchiveRecord{}, false
	}
	if cap(r.buf) < int(length) {
		r.buf = make([]byte, length)
	}
	p := r.buf[:length]
	if n, err := io.ReadFull(r.br, p); err != nil {
		r.skipRead(err, int64(frameHeader+n), "a torn record")
		return bridge.ArchiveRecord{}, false
	}
	if crc32.Checksum(p, crcTable) != binary.LittleEndian.Uint32(h[4:]) {
		r.skip("a checksum mismatch")
		return bridge.ArchiveRecord{}, false
	}
	rec, err := decodeRecord(p)
	if err != nil {
		r.skip(err.Error())
		return bridge.ArchiveRecord{}, false
	}
	r.off += frameHeader + int64(length)
	return rec, true
}

// skipRead records the rest of the segment as skipped after a short read,
// or stops the Reader on an I/O error.
func (r *Reader) skipRead(err error, read int64, what string) {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		r.skipN(read, what)
		return
	}
	r.err = fmt.Errorf("archive: read %s: %w", filepath.Base(r.seg.Path), err)
}

// skip records the rest of the open segment, from the current frame on,
// as unreadable for reason.
func (r *Reader) skip(reason string) {
	r.skipN(max(r.seg.Size-r.off, 0), reason)
}

func (r *Reader) skipN(n int64, reason string) {
	if rest := r.seg.Size - r.off; rest > n {
		n = rest
	}
	r.skipped = append(r.skipped, Skipped{Segment: filepath.Base(r.seg.Path), Offset: r.off, Bytes: n, Reason: reason})
}
