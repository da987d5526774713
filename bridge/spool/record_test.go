package spool

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mistbridge/mistbridge/codec"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// recordFields are the codec.Event fields the record encoding carries. A
// field added to codec.Event fails TestRecordCarriesEveryField until the
// encoding (a new version) carries it too.
var recordFields = []string{"ID", "Type", "Source", "Time", "Topic", "Org", "Site", "OrgSet", "SiteSet", "Data", "TraceParent", "TraceState"}

func TestRecordCarriesEveryField(t *testing.T) {
	var got []string
	for _, f := range reflect.VisibleFields(reflect.TypeOf(codec.Event{})) {
		got = append(got, f.Name)
	}
	if strings.Join(got, ",") != strings.Join(recordFields, ",") {
		t.Fatalf("codec.Event has fields %v, the spool record carries %v: add the new field to encodeRecord/decodeRecord (a new record version) and to recordFields", got, recordFields)
	}
}

func goldenEvent() (codec.Event, time.Time) {
	return codec.Event{
		ID:     "0b6f5a1e-3c2d-8e4f-9a0b-1c2d3e4f5a6b",
		Type:   "com.juniper.mist.device-events",
		Source: "/mist/orgs/org-1/sites/site-1",
		Time:   time.Unix(1700000000, 123456000).UTC(),
		Topic:  "device-events",
		Org:    "org-1",
		Site:   "site-1",
		OrgSet: true, SiteSet: true,
		Data: []byte(`{"org_id":"org-1","site_id":"site-1","timestamp":1700000000.123456,"type":"AP_RESTARTED"}`),
	}, time.Unix(1700000001, 5)
}

// TestRecordGolden pins version 1 of the encoding, without and with a
// trace context: a change must rewrite testdata/record-v1*.hex on purpose
// (go test -run TestRecordGolden -update) and keep decoding the old files.
func TestRecordGolden(t *testing.T) {
	plain, recv := goldenEvent()
	traced := plain
	traced.TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	traced.TraceState = "rojo=00f067aa0ba902b7"
	for _, tt := range []struct {
		file string
		ev   codec.Event
	}{{"record-v1.hex", plain}, {"record-v1-traced.hex", traced}} {
		t.Run(tt.file, func(t *testing.T) {
			got := encodeRecord(nil, &tt.ev, recv)
			path := filepath.Join("testdata", tt.file)
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
				t.Fatalf("encoding changed:\n got %s\nwant %s", hex.Dump(got), want)
			}
			raw := undump(t, string(want))
			dec, drecv, err := decodeRecord(raw)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(dec, tt.ev) || !drecv.Equal(recv) {
				t.Fatalf("golden record decodes to %+v at %v, want %+v at %v", dec, drecv, tt.ev, recv)
			}
		})
	}
}

// undump reads hex.Dump's output back.
func undump(t *testing.T, s string) []byte {
	t.Helper()
	var out []byte
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if len(line) < 10 {
			continue
		}
		hexPart, _, _ := strings.Cut(line[10:], "|")
		b, err := hex.DecodeString(strings.ReplaceAll(strings.TrimSpace(hexPart), " ", ""))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
	}
	return out
}

func TestRecordRoundTrip(t *testing.T) {
	base, recv := goldenEvent()
	cases := map[string]func(*codec.Event){
		"full":           func(*codec.Event) {},
		"no time":        func(e *codec.Event) { e.Time = time.Time{} },
		"no org or site": func(e *codec.Event) { e.Org, e.Site, e.OrgSet, e.SiteSet, e.Source = "", "", false, false, "/mist" },
		"empty org":      func(e *codec.Event) { e.Org, e.OrgSet, e.SiteSet = "", true, false },
		"before 1970":    func(e *codec.Event) { e.Time = time.Unix(-5, 7).UTC() },
		"unicode":        func(e *codec.Event) { e.Site = "sïte/ü"; e.Data = []byte(`{"a":"ü\u0000"}`) },
		"large data":     func(e *codec.Event) { e.Data = bytes.Repeat([]byte("x"), 1<<20) },
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			ev := base
			mod(&ev)
			b := encodeRecord(nil, &ev, recv)
			if len(b) > recordSize(&ev) {
				t.Fatalf("record is %d bytes, recordSize says at most %d", len(b), recordSize(&ev))
			}
			got, grecv, err := decodeRecord(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, ev) || !grecv.Equal(recv) {
				t.Fatalf("round trip: got %+v, want %+v", got, ev)
			}
		})
	}
}

func TestRecordRejects(t *testing.T) {
	ev, recv := goldenEvent()
	good := encodeRecord(nil, &ev, recv)
	cases := map[string][]byte{
		"empty":          nil,
		"future version": append([]byte{2}, good[1:]...),
		"truncated":      good[:len(good)-1],
		"trailing":       append(append([]byte{}, good...), 0),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if _, _, err := decodeRecord(b); !errors.Is(err, errRecord) {
				t.Fatalf("decodeRecord = %v, want errRecord", err)
			}
		})
	}
}

// FuzzDecodeRecord: decoding never panics, and what decodes encodes back
// to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	ev, recv := goldenEvent()
	f.Add(encodeRecord(nil, &ev, recv))
	ev.Time = time.Time{}
	f.Add(encodeRecord(nil, &ev, recv))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, grecv, err := decodeRecord(b)
		if err != nil {
			return
		}
		again := encodeRecord(nil, &got, grecv)
		got2, grecv2, err := decodeRecord(again)
		if err != nil || !reflect.DeepEqual(got, got2) || !grecv.Equal(grecv2) {
			t.Fatalf("re-encoding changed the record: %+v -> %+v (%v)", got, got2, err)
		}
	})
}
