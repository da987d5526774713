package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/mistbridge/mistbridge/codec"
)

// recordVersion leads every encoded record. Changing the encoding means a
// new version, a new golden file in testdata, and a decoder that still
// reads the old one (a spool written by the previous release must drain).
const recordVersion = 1

// Bits of the flags byte.
const (
	flagOrgSet  = 1 << 0
	flagSiteSet = 1 << 1
	// flagTrace: the trace context (TraceParent, TraceState) follows the
	// flags. A record without it is byte for byte what it was before
	// tracing existed, so version 1 stays version 1.
	flagTrace = 1 << 2
)

// errRecord is wrapped by every decoding failure.
var errRecord = errors.New("spool: bad record")

// encodeRecord appends the encoding of ev, received at recv, to dst:
//
//	version byte (1)
//	uvarint-length-prefixed strings: ID, Type, Source, Topic, Org, Site
//	flags byte: bit 0 OrgSet, bit 1 SiteSet, bit 2 traced (other bits 0)
//	when traced: uvarint-length-prefixed TraceParent, TraceState
//	Time: byte 0 (zero time) or 1 followed by varint Unix seconds and
//	      uvarint nanoseconds (the time is read back in UTC)
//	received: varint Unix nanoseconds
//	uvarint-length-prefixed Data
//
// The frame around it carries the length and a CRC-32C.
func encodeRecord(dst []byte, ev *codec.Event, recv time.Time) []byte {
	dst = append(dst, recordVersion)
	for _, s := range [...]string{ev.ID, ev.Type, ev.Source, ev.Topic, ev.Org, ev.Site} {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	var flags byte
	if ev.OrgSet {
		flags |= flagOrgSet
	}
	if ev.SiteSet {
		flags |= flagSiteSet
	}
	traced := ev.TraceParent != "" || ev.TraceState != ""
	if traced {
		flags |= flagTrace
	}
	dst = append(dst, flags)
	if traced {
		for _, s := range [...]string{ev.TraceParent, ev.TraceState} {
			dst = binary.AppendUvarint(dst, uint64(len(s)))
			dst = append(dst, s...)
		}
	}
	if ev.Time.IsZero() {
		dst = append(dst, 0)
	} else {
		dst = append(dst, 1)
		dst = binary.AppendVarint(dst, ev.Time.Unix())
		dst = binary.AppendUvarint(dst, uint64(ev.Time.Nanosecond()))
	}
	dst = binary.AppendVarint(dst, recv.UnixNano())
	dst = binary.AppendUvarint(dst, uint64(len(ev.Data)))
	return append(dst, ev.Data...)
}

// recordSize is an upper bound of the encoding's length, to size buffers.
func recordSize(ev *codec.Event) int {
	return 2 + 6*binary.MaxVarintLen64 + len(ev.ID) + len(ev.Type) + len(ev.Source) +
		len(ev.Topic) + len(ev.Org) + len(ev.Site) + 1 + 3*binary.MaxVarintLen64 + len(ev.Data) +
		2*binary.MaxVarintLen64 + len(ev.TraceParent) + len(ev.TraceState)
}

// decodeRecord reads a record written by encodeRecord. The event's Data
// aliases b; the strings are copies.
func decodeRecord(b []byte) (codec.Event, time.Time, error) {
	var ev codec.Event
	if len(b) == 0 {
		return ev, time.Time{}, fmt.Errorf("%w: empty", errRecord)
	}
	if b[0] != recordVersion {
		return ev, time.Time{}, fmt.Errorf("%w: version %d, this build reads version %d", errRecord, b[0], recordVersion)
	}
	d := decoder{b: b[1:]}
	for _, s := range [...]*string{&ev.ID, &ev.Type, &ev.Source, &ev.Topic, &ev.Org, &ev.Site} {
		*s = string(d.bytes())
	}
	flags := d.byte()
	if flags&^(flagOrgSet|flagSiteSet|flagTrace) != 0 {
		d.fail("unknown flags")
	}
	ev.OrgSet, ev.SiteSet = flags&flagOrgSet != 0, flags&flagSiteSet != 0
	if flags&flagTrace != 0 {
		ev.TraceParent, ev.TraceState = string(d.bytes()), string(d.bytes())
	}
	switch d.byte() {
	case 0:
	case 1:
		sec := d.varint()
		nsec := d.uvarint()
		if nsec >= 1e9 {
			d.fail("nanoseconds out of range")
		}
		ev.Time = time.Unix(sec, int64(nsec)).UTC()
	default:
		d.fail("bad time flag")
	}
	recv := time.Unix(0, d.varint())
	ev.Data = d.bytes()
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return codec.Event{}, time.Time{}, d.err
	}
	if len(ev.Data) == 0 {
		ev.Data = nil
	}
	return ev, recv, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(why string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", errRecord, why)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.fail("short")
		return 0xff
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail("length past the end")
		return nil
	}
	s := d.b[:n:n]
	d.b = d.b[n:]
	return s
}
