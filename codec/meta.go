package codec

import (
	"bytes"
	"encoding/json"
	"sync"
	"time"

	"github.com/go-json-experiment/json/jsontext"
)

// meta is what Map reads from an event: the only members it looks at.
// has has the name bit (nameOrg, nameOrgAlt, nameSite, nameSiteAlt) of each
// of the four that is present as a JSON string, even an empty one.
type meta struct {
	org, orgAlt, site, siteAlt string
	has                        int
	time                       time.Time
}

// metaDecoder is a reusable jsontext decoder over an event's bytes.
type metaDecoder struct {
	r bytes.Reader
	d *jsontext.Decoder
}

// Map promises to accept any object, even one Split would refuse (Map's
// callers may not have split it), so the decoder accepts duplicate names and
// invalid UTF-8.
var metaOptions = []jsontext.Options{jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)}

var metaPool = sync.Pool{New: func() any {
	m := &metaDecoder{}
	m.d = jsontext.NewDecoder(&m.r, metaOptions...)
	return m
}}

// readMeta reads the members Map needs in one streaming pass, skipping the
// others without decoding them. Names match exactly ("org_id", not
// "Org_ID"), and a member given twice counts with its last value, as
// json.Unmarshal into a map does. A value of another type than expected (a
// number org id, a null site) counts as absent. ok is false when raw is not
// a JSON object.
func readMeta(raw []byte) (m meta, ok bool) {
	md := metaPool.Get().(*metaDecoder)
	defer metaPool.Put(md)
	md.r.Reset(raw)
	md.d.Reset(&md.r, metaOptions...)
	d := md.d
	if tok, err := d.ReadToken(); err != nil || tok.Kind() != '{' {
		return meta{}, false
	}
	for d.PeekKind() == '"' {
		name, err := d.ReadToken()
		if err != nil {
			return meta{}, false
		}
		var (
			dst *string
			bit int
		)
		switch name.String() {
		case "org_id":
			dst, bit = &m.org, nameOrg
		case "orgid":
			dst, bit = &m.orgAlt, nameOrgAlt
		case "site_id":
			dst, bit = &m.site, nameSite
		case "siteid":
			dst, bit = &m.siteAlt, nameSiteAlt
		case "timestamp":
			v, err := d.ReadValue()
			if err != nil {
				return meta{}, false
			}
			m.time = parseTimestamp(v)
			continue
		default:
			if err := d.SkipValue(); err != nil {
				return meta{}, false
			}
			continue
		}
		v, err := d.ReadValue()
		if err != nil {
			return meta{}, false
		}
		*dst = stringValue(v)
		if v.Kind() == '"' {
			m.has |= bit
		} else {
			m.has &^= bit
		}
	}
	if tok, err := d.ReadToken(); err != nil || tok.Kind() != '}' {
		return meta{}, false
	}
	return m, true
}

// readMetaSlow is readMeta with encoding/json, for an input the streaming
// decoder refuses (none that Split returns is known to be).
func readMetaSlow(raw []byte) meta {
	var fields map[string]json.RawMessage
	_ = json.Unmarshal(raw, &fields)
	m := meta{
		org:     stringValue(fields["org_id"]),
		orgAlt:  stringValue(fields["orgid"]),
		site:    stringValue(fields["site_id"]),
		siteAlt: stringValue(fields["siteid"]),
		time:    parseTimestamp(fields["timestamp"]),
	}
	for name, bit := range map[string]int{"org_id": nameOrg, "orgid": nameOrgAlt, "site_id": nameSite, "siteid": nameSiteAlt} {
		if v := fields[name]; len(v) > 0 && v[0] == '"' {
			m.has |= bit
		}
	}
	return m
}

// stringValue is the JSON string v decoded, or "" when v is not a string.
func stringValue(v []byte) string {
	if len(v) < 2 || v[0] != '"' {
		return ""
	}
	if bytes.IndexByte(v, '\\') < 0 && isASCII(v) {
		return string(v[1 : len(v)-1]) // the common case: nothing to unescape
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return ""
	}
	return s
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}
