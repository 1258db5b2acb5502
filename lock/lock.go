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

// cleanupTimeout bounds the revoke of the session of a failed Acquire.
const cleanupTimeout = time.Second

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

// Hold is a held lock. Its methods are safe for concurrent use.
type Hold struct {
	sess  *lease.Session
	claim *lease.Claim
	key   string
	fence int64
}

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
		abandon(ctx, sess, log)
		if errors.Is(err, ErrHeld) {
			return nil, err
		}
		return nil, fmt.Errorf("lock: acquire %s: %w", cfg.Prefix, err)
	}
	log.Debug("lock acquired", "key", h.key, "fence", h.fence)
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
	return &Hold{sess: sess, claim: sess.Claim(m.Key(), fence, m.Header().Revision), key: m.Key(), fence: fence}, nil
}

// fenceOf is the creation revision of m's key: the revision its IsOwner
// comparison holds, set when the key was put or found.
func fenceOf(m *concurrency.Mutex) int64 {
	cmp := m.IsOwner()
	return cmp.GetCompare().GetCreateRevision()
}

// abandon closes the session of a failed Acquire, whose ctx may have
// ended. If the revoke fails the key goes when the lease expires.
func abandon(ctx context.Context, sess *lease.Session, log *slog.Logger) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := sess.Close(cctx); err != nil {
		log.Warn("cannot revoke the session of a failed acquire; its key goes when the lease expires",
			"lease_id", fmt.Sprintf("%x", int64(sess.ID())), "ttl_s", sess.TTL().Seconds(), "err", err)
	}
}

// Key is the holder's key: the prefix, "/", and the lease ID in hex.
func (h *Hold) Key() string { return h.key }

// Fence is the key's creation revision, strictly greater than that of
// every earlier holder of the lock.
func (h *Hold) Fence() int64 { return h.fence }

// Lease is the ID of the hold's session lease.
func (h *Hold) Lease() clientv3.LeaseID { return h.sess.ID() }

// Deadline is when the hold's session counts as lost unless a newer
// keep-alive is acknowledged (see lease.Session.Deadline).
func (h *Hold) Deadline() time.Time { return h.sess.Deadline() }

// Lost is closed when the hold is lost: its session is lost (see
// lease.Session.Lost), or its key was deleted by someone; and on Release.
// It checks the session's deadline before it returns.
func (h *Hold) Lost() <-chan struct{} { return h.claim.Lost() }

// Err says why the hold was lost (lease.ErrUnacknowledged,
// lease.ErrExpired, lease.ErrKeyDeleted, lease.ErrClosed after Release);
// nil while it is held.
func (h *Hold) Err() error { return h.claim.Err() }

// Release unlocks: it revokes the hold's lease, which deletes the key in
// the same revision, as Mutex.Unlock would, and ends the session. The key
// is gone when it returns nil. It can be called again, also after it
// failed.
func (h *Hold) Release(ctx context.Context) error {
	h.claim.Stop()
	if err := h.sess.Close(ctx); err != nil {
		return fmt.Errorf("lock: release %s: %w", h.key, err)
	}
	return nil
}
