package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Status is what [Inspect] reads from a spool directory.
type Status struct {
	Dir   string       `json:"dir"`
	Sinks []SinkStatus `json:"sinks"`
	// Events, Bytes and DiskBytes total the sinks'.
	Events    int64 `json:"events"`
	Bytes     int64 `json:"bytes"`
	DiskBytes int64 `json:"disk_bytes"`
}

// SinkStatus is one sink's log.
type SinkStatus struct {
	Sink string `json:"sink"`
	// Events and Bytes are the undelivered records and their size.
	Events int64 `json:"events"`
	Bytes  int64 `json:"bytes"`
	// DiskBytes is the size of the segment files, delivered records not
	// yet removed included.
	DiskBytes int64 `json:"disk_bytes"`
	Segments  int   `json:"segments"`
	// Oldest is the receive time of the oldest undelivered event, zero
	// when there is none; OldestAgeSeconds is its age.
	Oldest           time.Time `json:"oldest,omitzero"`
	OldestAgeSeconds float64   `json:"oldest_age_seconds"`
	// Unreadable counts bytes past the last whole record of a segment: a
	// torn tail, or a write in progress when the bridge is running.
	Unreadable int64 `json:"unreadable_bytes,omitempty"`
}

// Inspect reads the spool in dir without taking it over: it takes no lock,
// writes nothing and repairs nothing, so it is safe while a bridge runs on
// dir (its figures are then a moment's) or not. A missing dir is an empty
// spool. It fails when dir cannot be read.
func Inspect(dir string) (Status, error) {
	st := Status{Dir: dir}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("spool: inspect: %w", err)
	}
	now := time.Now()
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		ss, err := inspectSink(filepath.Join(dir, e.Name()), e.Name(), now)
		if err != nil {
			return st, fmt.Errorf("spool: inspect %s: %w", e.Name(), err)
		}
		st.Sinks = append(st.Sinks, ss)
		st.Events += ss.Events
		st.Bytes += ss.Bytes
		st.DiskBytes += ss.DiskBytes
	}
	slices.SortFunc(st.Sinks, func(a, b SinkStatus) int {
		switch {
		case a.Sink < b.Sink:
			return -1
		case a.Sink > b.Sink:
			return 1
		}
		return 0
	})
	return st, nil
}

func inspectSink(dir, name string, now time.Time) (SinkStatus, error) {
	ss := SinkStatus{Sink: name}
	acked, _ := readAck(dir) // a damaged ack file counts everything, as recovery would
	segs, err := listSegments(dir)
	if err != nil {
		return ss, err
	}
	for _, s := range segs {
		sc, err := scanSegment(s.path, s.base, acked, func(_ uint64, _ int64, payload []byte) {
			if !ss.Oldest.IsZero() {
				return
			}
			if _, recv, err := decodeRecord(payload); err == nil {
				ss.Oldest = recv
			}
		})
		if errors.Is(err, fs.ErrNotExist) {
			continue // delivered and removed while we looked
		}
		if err != nil {
			return ss, err
		}
		ss.Segments++
		ss.DiskBytes += sc.size
		ss.Events += sc.undelivered
		ss.Bytes += sc.undeliveredBytes
		ss.Unreadable += sc.size - sc.valid
	}
	if !ss.Oldest.IsZero() {
		ss.OldestAgeSeconds = max(0, now.Sub(ss.Oldest).Seconds())
	}
	return ss, nil
}
