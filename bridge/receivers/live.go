package receivers

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"

	"github.com/mistbridge/mistbridge/bridge"
	"github.com/mistbridge/mistbridge/bridge/auth"
)

// Live keeps the server's managed receivers equal to the enabled stored
// ones. [Live.Sync] reads the store, builds a verifier for each receiver
// that is new or changed (keeping the others, so replay memory and JWKS
// caches survive unrelated changes), and hands the whole set to apply
// (the server's SetReceivers, which swaps it atomically: no lock on the
// ingest path). Disabled receivers are left out, so their path answers
// 404. It is safe for concurrent use; Syncs run one at a time.
type Live struct {
	store    *Store
	apply    func([]*bridge.Receiver) error
	log      *slog.Logger
	reserved []string

	mu    sync.Mutex
	built map[string]built // by receiver id
}

type built struct {
	version int64
	rc      *bridge.Receiver
}

// NewLive returns a Live over store that applies the set with apply. A
// stored receiver named as one of reserved (the receiver from the
// environment, renamed since it was stored) is left out with a warning,
// so the bridge still starts. log may be nil.
func NewLive(store *Store, apply func([]*bridge.Receiver) error, log *slog.Logger, reserved ...string) *Live {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Live{store: store, apply: apply, log: log, reserved: reserved, built: map[string]built{}}
}

// Sync applies the stored receivers now. It fails, leaving the server's
// set as it was, when the store cannot be read, a verifier cannot be
// built, or apply refuses the set. It has the signature of
// [APIOptions.OnChange].
func (l *Live) Sync(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	list, err := l.store.List(ctx)
	if err != nil {
		return err
	}
	next := make(map[string]built, len(list))
	var fresh []io.Closer
	closeFresh := func() {
		for _, c := range fresh {
			_ = c.Close()
		}
	}
	set := make([]*bridge.Receiver, 0, len(list))
	for _, r := range list {
		if !r.Enabled {
			continue
		}
		if slices.Contains(l.reserved, r.Name) {
			l.log.Warn("receivers: a stored receiver has the name of the receiver from the environment and is not served: rename one of them", "receiver", r)
			continue
		}
		if b, ok := l.built[r.ID]; ok && b.version == r.version && b.rc.Name == r.Name {
			next[r.ID] = b
			set = append(set, b.rc)
			continue
		}
		spec := r.Spec()
		v, err := spec.Verifier(l.log.With("receiver", r.Name))
		if err != nil {
			closeFresh()
			// Validated when stored: only a store edited by hand gets here.
			return fmt.Errorf("receivers: receiver %q: %w", r.Name, err)
		}
		if c, ok := v.(io.Closer); ok {
			fresh = append(fresh, c)
		}
		b := built{version: r.version, rc: &bridge.Receiver{Name: r.Name, Verifier: v, Topics: r.Topics}}
		next[r.ID] = b
		set = append(set, b.rc)
	}
	if err := l.apply(set); err != nil {
		closeFresh()
		return fmt.Errorf("receivers: apply: %w", err)
	}
	// The old verifiers no longer in use stop their background work. A
	// request still in flight with one finishes: a closed JWT verifier
	// keeps its cached keys.
	for id, b := range l.built {
		if n, ok := next[id]; !ok || n.rc != b.rc {
			closeVerifier(b.rc.Verifier)
		}
	}
	l.built = next
	l.log.Debug("receivers applied", "managed", len(set))
	return nil
}

// Close stops the background work of every verifier Live built (JWKS
// refreshes). Call it after the server stopped.
func (l *Live) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, b := range l.built {
		closeVerifier(b.rc.Verifier)
	}
	l.built = map[string]built{}
	return nil
}

func closeVerifier(v auth.Verifier) {
	if c, ok := v.(io.Closer); ok {
		_ = c.Close()
	}
}
