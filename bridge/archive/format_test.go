package archive

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"hash/crc32"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mistbridge/mistbridge/bridge"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// recordFields are the bridge.ArchiveRecord fields a record carries. A
// field added to ArchiveRecord fails TestRecordCarriesEveryField until the
// format (a new record version) carries it too.
var recordFields = []string{"Receiver", "Received", "Topic", "ContentType", "UserAgent", "Body"}

func TestRecordCarriesEveryField(t *testing.T) {
	var got []string
	for _, f := range reflect.VisibleFields(reflect.TypeOf(bridge.ArchiveRecord{})) {
		got = append(got, f.Name)
	}
	if strings.Join(got, ",") != strings.Join(recordFields, ",") {
		t.Fatalf("bridge.ArchiveRecord has fields %v, the archive record carries %v: add the new field to appendFrame/decodeRecord (a new record version) and to recordFields", got, recordFields)
	}
}

func goldenRecord() bridge.ArchiveRecord {
	return bridge.ArchiveRecord{
		Receiver:    "mist",
		Received:    time.Unix(1772366400, 123456789).UTC(),
		Topic:       "device-events",
		ContentType: "application/json",
		UserAgent:   "Mist-webhook/1.0",
		Body:        []byte(`{"topic":"device-events","events":[{"org_id":"o-1","site_id":"s-1","timestamp":1772366400,"type":"AP_RESTARTED"}]}`),
	}
}

// TestSegmentGolden pins the segment format, version 1 of the record: a
// change must rewrite testdata/segment-v1.hex on purpose (go test -run
// TestSegmentGolden -update) and keep reading the old file.
func TestSegmentGolden(t *testing.T) {
	rec := goldenRecord()
	got := appendFrame([]byte(segmentMagic), &rec)
	path := filepath.Join("testdata", "segment-v1.hex")
	if *update {
		if err := os.WriteFile(path, []byte(hex.Dump(got)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if hex.Dump(got) != string(want) {
		t.Fatalf("the format changed:\n got %s\nwant %s", hex.Dump(got), want)
	}
	// The golden file, as a segment, reads back as the record.
	dir := t.TempDir()
	name := segmentName(rec.Received.Truncate(time.Hour), time.Hour, 0)
	if err := os.WriteFile(filepath.Join(dir, name), undump(t, string(want)), 0o644); err != nil {
		t.Fatal(err)
	}
	recs, skipped := readAll(t, dir, time.Time{}, time.Time{})
	if len(recs) != 1 || len(skipped) != 0 || !reflect.DeepEqual(recs[0], rec) {
		t.Fatalf("golden segment reads %+v (skipped %v), want %+v", recs, skipped, rec)
	}
}

// undump reads hex.Dump's output back.
func undump(t *testing.T, s string) []byte {
	t.Helper()
	var out []byte
	for _, line := range strings.Split(s, "\n") {
		if len(line) < 10 {
			continue
		}
		hexPart := line[10:]
		if i := strings.Index(hexPart, "|"); i >= 0 {
			hexPart = hexPart[:i]
		}
		b, err := hex.DecodeString(strings.Join(strings.Fields(hexPart), ""))
		if err != nil {
			t.Fatalf("undump %q: %v", line, err)
		}
		out = append(out, b...)
	}
	return out
}

// FuzzReader: whatever a segment holds, reading it neither panics nor
// returns a record it did not hold whole, and it accounts for every byte
// (read or skipped).
func FuzzReader(f *testing.F) {
	rec := goldenRecord()
	whole := appendFrame(appendFrame(nil, &rec), &rec)
	f.Add(whole)
	f.Add(whole[:len(whole)-3])
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		seg := append([]byte(segmentMagic), data...)
		if err := os.WriteFile(filepath.Join(dir, segmentName(rec.Received.Truncate(time.Hour), time.Hour, 0)), seg, 0o644); err != nil {
			t.Fatal(err)
		}
		rd, err := NewReader(dir, time.Time{}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		defer rd.Close()
		var read int64 = headerSize
		for rd.Next() {
			r := rd.Record()
			next := rd.Offset()
			if next <= read+frameHeader || next > int64(len(seg)) {
				t.Fatalf("offset went from %d to %d of %d", read, next, len(seg))
			}
			p := seg[read+frameHeader : next]
			if crc32.Checksum(p, crcTable) != binary.LittleEndian.Uint32(seg[read+4:]) {
				t.Fatalf("returned a record at %d whose checksum does not match", read)
			}
			if d, err := decodeRecord(p); err != nil || !reflect.DeepEqual(d, r) || !bytes.Equal(r.Body, d.Body) {
				t.Fatalf("returned %+v for bytes that decode to %+v, %v", r, d, err)
			}
			read = next
		}
		if err := rd.Err(); err != nil {
			t.Fatal(err)
		}
		var skipped int64
		for _, s := range rd.Skipped() {
			skipped += s.Bytes
			if s.Offset != read {
				t.Fatalf("skipped from %d, but %d bytes were read", s.Offset, read)
			}
		}
		if read+skipped != int64(len(seg)) {
			t.Fatalf("read %d and skipped %d bytes of %d", read, skipped, len(seg))
		}
	})
}
