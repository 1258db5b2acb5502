package election

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

// ErrNotElected is the error of a try that finds another candidate leading
// (or already waiting).
var ErrNotElected = errors.New("election: another candidate leads")

// cleanupTimeout bounds the revoke of the session of a failed Campaign.
const cleanupTimeout = time.Second

// Config configures Campaign.
type Config struct {
	// Prefix is the election's key prefix, such as
	// "/sidecar/elections/nightly": that of a concurrency.Election, and of
	// `etcdctl elect`. Required.
	Prefix string
	// TTL of the leadership's own session: 0 means lease.DefaultTTL; at
	// least lease.MinTTL. See lease.Config.
	TTL time.Duration
	// Margin of the session's deadline: 0 means TTL/10, at least 300ms.
	Margin time.Duration
	Logger *slog.Logger // nil discards; records get component=election
}

// Leadership is a won election. Its methods are safe for concurrent use.
type Leadership struct {
	sess  *lease.Session
	claim *lease.Claim
	key   string
	fence int64
}

// Campaign puts value up for the election at cfg.Prefix on a new session
// and blocks until it leads; until ctx ends (the error then wraps
// ctx.Err()); or until the session is lost while waiting (the error then
// wraps its Err). With try it answers ErrNotElected at once when another
// candidate leads or waits. On every failure the session is closed, which
// withdraws the candidate's key.
func Campaign(ctx context.Context, cli *clientv3.Client, cfg Config, value string, try bool) (*Leadership, error) {
	if cli == nil {
		return nil, errors.New("election: nil etcd client")
	}
	if cfg.Prefix == "" {
		return nil, errors.New("election: empty prefix")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "election", "prefix", cfg.Prefix)
	sess, err := lease.New(ctx, cli, lease.Config{TTL: cfg.TTL, Margin: cfg.Margin, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("election: campaign %s: %w", cfg.Prefix, err)
	}
	l, err := campaign(ctx, sess, cfg.Prefix, value, try)
	if err != nil {
		abandon(ctx, sess, log)
		if errors.Is(err, ErrNotElected) {
			return nil, err
		}
		return nil, fmt.Errorf("election: campaign %s: %w", cfg.Prefix, err)
	}
	log.Debug("elected", "key", l.key, "fence", l.fence)
	return l, nil
}

// campaign wins the election on sess and starts following the leader key.
func campaign(ctx context.Context, sess *lease.Session, prefix, value string, try bool) (*Leadership, error) {
	var key string
	var fence, rev int64
	var err error
	if try {
		key, fence, err = tryCampaign(ctx, sess, prefix, value)
		rev = fence
	} else {
		e := concurrency.NewElection(sess.Concurrency(), prefix)
		if err = sess.Await(ctx, func(ctx context.Context) error { return e.Campaign(ctx, value) }); err == nil {
			key, fence = e.Key(), e.Rev()
			rev, err = stillOurs(ctx, sess, key, fence)
		}
	}
	if err != nil {
		return nil, err
	}
	if err := sess.Err(); err != nil {
		return nil, fmt.Errorf("session lost on winning: %w", err)
	}
	return &Leadership{sess: sess, claim: sess.Claim(key, fence, rev), key: key, fence: fence}, nil
}

// tryCampaign puts the candidate's key, as Election.Campaign does, and
// reads the oldest key in the same transaction: the candidate leads when
// that is its own. It returns the key and its creation revision.
func tryCampaign(ctx context.Context, sess *lease.Session, prefix, value string) (string, int64, error) {
	cli := sess.Concurrency().Client()
	pfx := prefix + "/"
	key := fmt.Sprintf("%s%x", pfx, sess.ID())
	resp, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, value, clientv3.WithLease(sess.ID())), clientv3.OpGet(pfx, clientv3.WithFirstCreate()...)).
		Commit()
	if err != nil {
		return "", 0, err
	}
	if !resp.Succeeded {
		return "", 0, fmt.Errorf("key %s exists already", key)
	}
	rev := resp.Header.Revision
	if leader := resp.Responses[1].GetResponseRange().Kvs; len(leader) > 0 && leader[0].CreateRevision != rev {
		return "", 0, ErrNotElected // the session's close withdraws the key
	}
	return key, rev, nil
}

// stillOurs checks that the key Campaign won with still exists with its
// creation revision: Campaign waits for the older keys to go, not for its
// own to stay (a session that expired while waiting sees them go too). It
// returns the revision it read at.
func stillOurs(ctx context.Context, sess *lease.Session, key string, fence int64) (int64, error) {
	resp, err := sess.Concurrency().Client().Get(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != fence {
		return 0, fmt.Errorf("leader key %s vanished on winning: %w", key, lease.ErrKeyDeleted)
	}
	return resp.Header.Revision, nil
}

// abandon closes the session of a failed Campaign, whose ctx may have
// ended. If the revoke fails the key goes when the lease expires.
func abandon(ctx context.Context, sess *lease.Session, log *slog.Logger) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := sess.Close(cctx); err != nil {
		log.Warn("cannot revoke the session of a failed campaign; its key goes when the lease expires",
			"lease_id", fmt.Sprintf("%x", int64(sess.ID())), "ttl_s", sess.TTL().Seconds(), "err", err)
	}
}

// Key is the leader's key: the prefix, "/", and the lease ID in hex.
func (l *Leadership) Key() string { return l.key }

// Fence is the leader key's creation revision, strictly greater than that
// of every earlier leader of the election.
func (l *Leadership) Fence() int64 { return l.fence }

// Lease is the ID of the leadership's session lease.
func (l *Leadership) Lease() clientv3.LeaseID { return l.sess.ID() }

// Deadline is when the leadership's session counts as lost unless a newer
// keep-alive is acknowledged (see lease.Session.Deadline).
func (l *Leadership) Deadline() time.Time { return l.sess.Deadline() }

// Lost is closed when the leadership is lost: its session is lost (see
// lease.Session.Lost), or its key was deleted by someone; and on Resign.
// It checks the session's deadline before it returns.
func (l *Leadership) Lost() <-chan struct{} { return l.claim.Lost() }

// Err says why the leadership was lost (lease.ErrUnacknowledged,
// lease.ErrExpired, lease.ErrKeyDeleted, lease.ErrClosed after Resign);
// nil while it leads.
func (l *Leadership) Err() error { return l.claim.Err() }

// Resign steps down: it revokes the leadership's lease, which deletes the
// leader key in the same revision, as Election.Resign would, and ends the
// session. The key is gone when it returns nil. It can be called again,
// also after it failed.
func (l *Leadership) Resign(ctx context.Context) error {
	l.claim.Stop()
	if err := l.sess.Close(ctx); err != nil {
		return fmt.Errorf("election: resign %s: %w", l.key, err)
	}
	return nil
}
