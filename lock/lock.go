package lock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/sidecar-dev/sidecar/internal/lease"
)

// ErrHeld is the error of a try that finds the lock held (or waited for)
// by another holder.
var ErrHeld = errors.New("lock: held by another holder")

// Config configures Acquire.
type Config struct {
	// Prefix is the lock's key prefix, such as "/sidecar/locks/nightly":
	// the prefix of a concurrency.Mutex, and of `etcdctl lock`. Required.
	Prefix string
	// TTL of the hold's own session: 0 means lease.DefaultTTL; at least
	// lease.MinTTL. See lease.Config.
	TTL time.Duration
	// Margin of the session's deadline: 0 means TTL/10, at least 300ms.
	Margin time.Duration
	Logger *slog.Logger // nil discards; records get component=lock
}

// Hold is a held lock: its key, fence, deadline and loss (see lease.Held),
// and Release. Its methods are safe for concurrent use.
type Hold struct{ *lease.Held }

// Acquire takes the lock at cfg.Prefix on a new session. It blocks until
// the lock is held; until ctx ends (the error then wraps ctx.Err()); or
// until the session is lost while waiting (the error then wraps its Err).
// With try it answers ErrHeld at once when someone else holds the lock or
// waits for it. On every failure the session is closed, which removes the
// waiting key.
func Acquire(ctx context.Context, cli *clientv3.Client, cfg Config, try bool) (*Hold, error) {
	if cli == nil {
		return nil, errors.New("lock: nil etcd client")
	}
	if cfg.Prefix == "" {
		return nil, errors.New("lock: empty prefix")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "lock", "prefix", cfg.Prefix)
	sess, err := lease.New(ctx, cli, lease.Config{TTL: cfg.TTL, Margin: cfg.Margin, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("lock: acquire %s: %w", cfg.Prefix, err)
	}
	h, err := acquire(ctx, sess, cfg.Prefix, try)
	if err != nil {
		lease.Abandon(ctx, sess, log, "acquire")
		if errors.Is(err, ErrHeld) {
			return nil, err
		}
		return nil, fmt.Errorf("lock: acquire %s: %w", cfg.Prefix, err)
	}
	log.Debug("lock acquired", "key", h.Key(), "fence", h.Fence())
	return h, nil
}

// acquire locks a concurrency.Mutex on sess and starts following its key.
func acquire(ctx context.Context, sess *lease.Session, prefix string, try bool) (*Hold, error) {
	m := concurrency.NewMutex(sess.Concurrency(), prefix)
	var err error
	if try {
		if err = m.TryLock(ctx); errors.Is(err, concurrency.ErrLocked) {
			return nil, ErrHeld
		}
	} else {
		err = sess.Await(ctx, m.Lock)
	}
	if err != nil {
		return nil, err
	}
	// The Mutex does not look at the session after its wait (#11456).
	if err := sess.Err(); err != nil {
		return nil, fmt.Errorf("session lost on acquiring: %w", err)
	}
	fence := fenceOf(m)
	if fence <= 0 {
		return nil, fmt.Errorf("no creation revision for %s", m.Key())
	}
	return &Hold{sess.Hold(m.Key(), fence, m.Header().Revision)}, nil
}

// fenceOf is the creation revision of m's key: the revision its IsOwner
// comparison holds, set when the key was put or found.
func fenceOf(m *concurrency.Mutex) int64 {
	cmp := m.IsOwner()
	return cmp.GetCompare().GetCreateRevision()
}

// Release unlocks: it revokes the hold's lease, which deletes the key in
// the same revision, as Mutex.Unlock would, and ends the session. The key
// is gone when it returns nil. It can be called again, also after it
// failed.
func (h *Hold) Release(ctx context.Context) error {
	if err := h.End(ctx); err != nil {
		return fmt.Errorf("lock: release %s: %w", h.Key(), err)
	}
	return nil
}
