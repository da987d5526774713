package natssink

import (
	"hash/maphash"
	"strings"
	"sync/atomic"

	"github.com/mistbridge/mistbridge/codec"
)

// subjectCacheSize is the number of subjects a subjectCache remembers, at
// most: enough for the sites of a large org, at a few hundred bytes each.
const subjectCacheSize = 1024

// A subjectCache remembers the subjects codec.Subject built for recent
// (topic, org, site)s, so that the events of a site, which come again and
// again, do not build theirs each time. It is direct-mapped: each key has
// one slot, and a key that finds another in its slot builds its subject
// and takes the slot. It is safe for concurrent use, and lock-free.
//
// codec.Subject(prefix, e) depends on e's Topic, Org and Site, and on
// whether each id is given (Org != "" || OrgSet, likewise the site), and
// on nothing else: the key is exactly that.
type subjectCache struct {
	prefix string
	seed   maphash.Seed
	slots  [subjectCacheSize]atomic.Pointer[subjectEntry]
}

type subjectEntry struct {
	topic, org, site string
	orgSet, siteSet  bool
	subject          string
}

func newSubjectCache(prefix string) *subjectCache {
	return &subjectCache{prefix: prefix, seed: maphash.MakeSeed()}
}

// subject is codec.Subject(c.prefix, e).
func (c *subjectCache) subject(e *codec.Event) string {
	orgSet, siteSet := e.Org != "" || e.OrgSet, e.Site != "" || e.SiteSet
	h := maphash.String(c.seed, e.Site) ^ maphash.String(c.seed, e.Org)*0x9e3779b97f4a7c15
	a, b := &c.slots[h%subjectCacheSize], &c.slots[(h>>32)%subjectCacheSize]
	ea, eb := a.Load(), b.Load()
	if ea.is(e, orgSet, siteSet) {
		return ea.subject
	}
	if eb.is(e, orgSet, siteSet) {
		return eb.subject
	}
	s := codec.Subject(c.prefix, e)
	// The entry holds copies, not the event's own strings: those may be
	// slices of a whole request body.
	en := &subjectEntry{
		topic: strings.Clone(e.Topic), org: strings.Clone(e.Org), site: strings.Clone(e.Site),
		orgSet: orgSet, siteSet: siteSet,
		subject: strings.Clone(s), // without the room s was built with
	}
	// Of its two slots, the key takes an empty one, else the first:
	// two keys that share one slot can both keep their other.
	if ea != nil && eb == nil {
		a = b
	}
	a.Store(en)
	return en.subject
}

func (en *subjectEntry) is(e *codec.Event, orgSet, siteSet bool) bool {
	return en != nil && en.site == e.Site && en.org == e.Org && en.topic == e.Topic &&
		en.orgSet == orgSet && en.siteSet == siteSet
}
