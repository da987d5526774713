package spool

import (
	"errors"
	"fmt"
	"time"
)

// Mode is when a request is answered: see [Config.Mode].
type Mode string

// The acknowledgement modes.
const (
	// ModeHybrid waits for the brokers up to [Config.AckWait] and spools
	// what they have not acknowledged by then.
	ModeHybrid Mode = "hybrid"
	// ModeBroker waits for the brokers only, as the bridge did before the
	// spool: an event they do not acknowledge fails the request. The spool
	// still delivers what an earlier run left in it.
	ModeBroker Mode = "broker"
	// ModeSpool appends and fsyncs every event to the spool and delivers
	// it in the background.
	ModeSpool Mode = "spool"
)

// The defaults of [Config]; the envDefault tags say the same (a test holds
// them to it).
const (
	DefaultMode           = ModeHybrid
	DefaultAckWait        = 2 * time.Second
	DefaultMaxBytes       = 1 << 30
	DefaultBatchEvents    = 500
	DefaultBatchBytes     = 4 << 20
	DefaultDeliverTimeout = 10 * time.Second
	// MinMaxBytes is the smallest bound Validate accepts.
	MinMaxBytes = 64 << 10
)

// Config tunes the spool. Field tags name the environment variables without
// their MISTBRIDGE_ prefix. The zero value of every field means its
// documented default, except Dir, which is required unless Mode is broker
// and no spool was ever written.
type Config struct {
	// Mode is hybrid, broker or spool. The default is hybrid.
	Mode Mode `env:"ACK_MODE" envDefault:"hybrid"`
	// AckWait is how long hybrid mode waits for the brokers before it
	// spools what they have not acknowledged. The default is 2s.
	AckWait time.Duration `env:"ACK_WAIT" envDefault:"2s"`
	// Dir is the spool's directory; the command sets it to
	// <MISTBRIDGE_DATA_DIR>/spool when it is empty. Each sink has its own
	// log under Dir/<sink>.
	Dir string `env:"SPOOL_DIR"`
	// MaxBytes bounds the spool's files on disk, all sinks together. An
	// event that would pass it is refused (503); nothing spooled is ever
	// dropped to make room. The default is 1 GiB; at least 64 KiB.
	MaxBytes int64 `env:"SPOOL_MAX_BYTES" envDefault:"1073741824"`
	// BatchEvents and BatchBytes bound one delivery of spooled events to a
	// sink. The defaults are 500 events and 4 MiB (one larger event is
	// still sent, alone).
	BatchEvents int   `env:"SPOOL_BATCH_EVENTS" envDefault:"500"`
	BatchBytes  int64 `env:"SPOOL_BATCH_BYTES" envDefault:"4194304"`
	// DeliverTimeout bounds one delivery of a spooled batch, the sink's
	// retries included; after it the batch is tried again after a
	// jittered backoff. The default is 10s.
	DeliverTimeout time.Duration `env:"SPOOL_DELIVER_TIMEOUT" envDefault:"10s"`
}

// withDefaults fills the zero fields.
func (c Config) withDefaults() Config {
	if c.Mode == "" {
		c.Mode = DefaultMode
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.BatchEvents == 0 {
		c.BatchEvents = DefaultBatchEvents
	}
	if c.BatchBytes == 0 {
		c.BatchBytes = DefaultBatchBytes
	}
	if c.DeliverTimeout == 0 {
		c.DeliverTimeout = DefaultDeliverTimeout
	}
	return c
}

// Validate checks c and reports every problem at once; each message names
// the MISTBRIDGE_ variable, the value and what is accepted.
func (c *Config) Validate() error {
	var errs []error
	bad := func(name string, v any, want string) {
		errs = append(errs, fmt.Errorf("MISTBRIDGE_%s=%v is invalid: %s", name, v, want))
	}
	switch c.Mode {
	case "", ModeHybrid, ModeBroker, ModeSpool:
	default:
		bad("ACK_MODE", fmt.Sprintf("%q", c.Mode), "want hybrid, broker or spool")
	}
	if c.AckWait < 0 {
		bad("ACK_WAIT", c.AckWait, "want a positive duration such as 500ms or 2s")
	}
	if c.Dir == "" && c.Mode != ModeBroker {
		bad("SPOOL_DIR", `""`, "want a directory (by default <MISTBRIDGE_DATA_DIR>/spool)")
	}
	if c.MaxBytes != 0 && c.MaxBytes < MinMaxBytes {
		bad("SPOOL_MAX_BYTES", c.MaxBytes, fmt.Sprintf("want at least %d", MinMaxBytes))
	}
	if c.BatchEvents < 0 {
		bad("SPOOL_BATCH_EVENTS", c.BatchEvents, "want at least 1")
	}
	if c.BatchBytes < 0 {
		bad("SPOOL_BATCH_BYTES", c.BatchBytes, "want at least 1")
	}
	if c.DeliverTimeout < 0 {
		bad("SPOOL_DELIVER_TIMEOUT", c.DeliverTimeout, "want a positive duration such as 10s")
	}
	return errors.Join(errs...)
}
