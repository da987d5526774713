package codec

import "time"

// Compact exposes compact to the differential fuzz test.
var Compact = compact

// MetaFields is what readMeta found, comparable across implementations.
type MetaFields struct {
	Org, OrgAlt, Site, SiteAlt string
	Has                        int
	Time                       time.Time
	OK                         bool
}

// ReadMeta runs the streaming reader; ReadMetaSlow the encoding/json one.
func ReadMeta(raw []byte) MetaFields {
	m, ok := readMeta(raw)
	return MetaFields{m.org, m.orgAlt, m.site, m.siteAlt, m.has, m.time, ok}
}

func ReadMetaSlow(raw []byte) MetaFields {
	m := readMetaSlow(raw)
	return MetaFields{m.org, m.orgAlt, m.site, m.siteAlt, m.has, m.time, true}
}
