package archive

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
	"time"

	"github.com/mistbridge/mistbridge/bridge"
)

// On-disk layout (docs/archive.md):
//
//	<dir>/<bucket start, UTC, 20060102T150405Z>-<span in minutes>m-<n>.seg
//
// A segment holds the requests whose receive time falls in its bucket
// [start, start+span), plus any that arrived late (received in an earlier
// bucket, archived after this segment was made). Every request in it was
// received before start+span, whatever Segment a later run uses, so
// retention and replay windows can go by the name alone. n tells apart
// the files one bucket gets when the bridge restarts within it: a process
// never appends to a file it did not create, so a torn tail left by a
// crash stays at the end of its file.
//
// A segment starts with segmentMagic, then frames:
//
//	u32 LE record length | u32 LE CRC-32C (Castagnoli) of the record | record
//
// A record (version 1): the byte 1; varint receive time (Unix ns);
// uvarint-length-prefixed receiver, fallback topic, content type, user
// agent and body.
const (
	segmentExt    = ".seg"
	segmentMagic  = "MBARCH01"
	headerSize    = int64(len(segmentMagic))
	frameHeader   = 8
	recordVersion = 1
	// maxRecord bounds one record, far above any body the bridge accepts;
	// a longer length read back is corruption.
	maxRecord  = 1 << 30
	timeLayout = "20060102T150405Z"
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt is wrapped by every decoding failure.
var errCorrupt = errors.New("archive: corrupt record")

// appendFrame appends the frame of rec to b.
func appendFrame(b []byte, rec *bridge.ArchiveRecord) []byte {
	start := len(b)
	b = append(b, make([]byte, frameHeader)...)
	b = append(b, recordVersion)
	b = binary.AppendVarint(b, rec.Received.UnixNano())
	for _, s := range []string{rec.Receiver, rec.Topic, rec.ContentType, rec.UserAgent} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendUvarint(b, uint64(len(rec.Body)))
	b = append(b, rec.Body...)
	payload := b[start+frameHeader:]
	binary.LittleEndian.PutUint32(b[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Checksum(payload, crcTable))
	return b
}

// decodeRecord reads a record's payload (checksum already checked). The
// returned Body aliases p; the strings are copies.
func decodeRecord(p []byte) (bridge.ArchiveRecord, error) {
	var rec bridge.ArchiveRecord
	if len(p) == 0 || p[0] != recordVersion {
		if len(p) == 0 {
			return rec, fmt.Errorf("%w: empty", errCorrupt)
		}
		return rec, fmt.Errorf("%w: unknown version %d", errCorrupt, p[0])
	}
	p = p[1:]
	ns, n := binary.Varint(p)
	if n <= 0 {
		return rec, fmt.Errorf("%w: receive time", errCorrupt)
	}
	p = p[n:]
	rec.Received = time.Unix(0, ns).UTC()
	field := func(name string) ([]byte, error) {
		l, n := binary.Uvarint(p)
		if n <= 0 || l > uint64(len(p)-n) {
			return nil, fmt.Errorf("%w: %s", errCorrupt, name)
		}
		v := p[n : n+int(l) : n+int(l)]
		p = p[n+int(l):]
		return v, nil
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"receiver", &rec.Receiver}, {"topic", &rec.Topic}, {"content type", &rec.ContentType}, {"user agent", &rec.UserAgent}} {
		v, err := field(f.name)
		if err != nil {
			return rec, err
		}
		*f.dst = string(v)
	}
	body, err := field("body")
	if err != nil {
		return rec, err
	}
	if len(p) != 0 {
		return rec, fmt.Errorf("%w: %d bytes after the body", errCorrupt, len(p))
	}
	rec.Body = body
	return rec, nil
}

// segmentName is the file name of the n-th segment of the bucket at start
// spanning span (whole minutes).
func segmentName(start time.Time, span time.Duration, n int) string {
	return start.UTC().Format(timeLayout) + "-" + strconv.Itoa(int(span/time.Minute)) + "m-" + strconv.Itoa(n) + segmentExt
}

// parseSegmentName reads back segmentName; ok is false for other files.
func parseSegmentName(name string) (start time.Time, span time.Duration, n int, ok bool) {
	base, found := strings.CutSuffix(name, segmentExt)
	if !found {
		return time.Time{}, 0, 0, false
	}
	parts := strings.Split(base, "-")
	if len(parts) != 3 {
		return time.Time{}, 0, 0, false
	}
	start, err := time.Parse(timeLayout, parts[0])
	if err != nil {
		return time.Time{}, 0, 0, false
	}
	mins, ok := number(strings.TrimSuffix(parts[1], "m"))
	if !ok || mins == 0 || !strings.HasSuffix(parts[1], "m") || time.Duration(mins)*time.Minute > MaxSegment {
		return time.Time{}, 0, 0, false
	}
	n, ok = number(parts[2])
	if !ok {
		return time.Time{}, 0, 0, false
	}
	return start, time.Duration(mins) * time.Minute, n, true
}

// number parses a canonical decimal number of at most 9 digits.
func number(s string) (int, bool) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || len(s) > 9 || strconv.Itoa(n) != s {
		return 0, false
	}
	return n, true
}
