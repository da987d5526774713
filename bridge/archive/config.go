package archive

import (
	"errors"
	"fmt"
	"time"
)

// The defaults of [Config]; the envDefault tags say the same (a test holds
// them to it).
const (
	DefaultSegment  = time.Hour
	DefaultMaxBytes = 10 << 30
	// MinSegment and MaxSegment bound Config.Segment.
	MinSegment = time.Minute
	MaxSegment = 24 * time.Hour
	// MinMaxBytes is the smallest bound Validate accepts.
	MinMaxBytes = 1 << 20
)

// Config tunes the raw archive. Field tags name the environment variables
// without their MISTBRIDGE_ prefix. The zero value is an archive that is
// off; with Retention set, the zero value of every other field means its
// documented default, except Dir, which the command fills in.
type Config struct {
	// Retention is how long each verified request body is kept for
	// `mistbridge replay`, e.g. 168h; 0 (the default) turns the archive
	// off. Whole segments are deleted once every request in them is older,
	// so a body is kept at least Retention and at most Retention plus one
	// Segment.
	Retention time.Duration `env:"ARCHIVE_RETENTION" envDefault:"0"`
	// Dir is the archive's directory; the command sets it to
	// <MISTBRIDGE_DATA_DIR>/archive when it is empty.
	Dir string `env:"ARCHIVE_DIR"`
	// Segment is the time span of one archive file: requests received
	// within one span (aligned on UTC midnight) are appended to one file,
	// and retention deletes whole files. The default is 1h; from 1m to 24h,
	// whole minutes that divide a day.
	Segment time.Duration `env:"ARCHIVE_SEGMENT" envDefault:"1h"`
	// MaxBytes bounds the archive's files on disk: past it the oldest
	// segments are deleted before their retention ends (the segment being
	// written is never deleted). The default is 10 GiB; at least 1 MiB.
	MaxBytes int64 `env:"ARCHIVE_MAX_BYTES" envDefault:"10737418240"`
}

// Enabled reports whether the archive is on: Retention is set.
func (c *Config) Enabled() bool { return c.Retention > 0 }

// withDefaults fills the zero fields.
func (c Config) withDefaults() Config {
	if c.Segment == 0 {
		c.Segment = DefaultSegment
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	return c
}

// Validate checks c and reports every problem at once; each message names
// the MISTBRIDGE_ variable, the value and what is accepted. An archive that
// is off (Retention 0) needs no Dir.
func (c *Config) Validate() error {
	var errs []error
	bad := func(name string, v any, want string) {
		errs = append(errs, fmt.Errorf("MISTBRIDGE_%s=%v is invalid: %s", name, v, want))
	}
	if c.Retention < 0 {
		bad("ARCHIVE_RETENTION", c.Retention, "want a duration such as 24h or 168h, or 0 to keep no archive")
	}
	if c.Retention > 0 && c.Dir == "" {
		bad("ARCHIVE_DIR", `""`, "want a directory (by default <MISTBRIDGE_DATA_DIR>/archive)")
	}
	if s := c.Segment; s != 0 && (s < MinSegment || s > MaxSegment || s%time.Minute != 0 || MaxSegment%s != 0) {
		bad("ARCHIVE_SEGMENT", s, "want whole minutes from 1m to 24h that divide a day, such as 10m, 1h or 6h")
	}
	if c.MaxBytes != 0 && c.MaxBytes < MinMaxBytes {
		bad("ARCHIVE_MAX_BYTES", c.MaxBytes, fmt.Sprintf("want at least %d", MinMaxBytes))
	}
	return errors.Join(errs...)
}
