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

// Leadership is a won election: its key, fence, deadline and loss (see
// lease.Held), and Resign. Its methods are safe for concurrent use.
type Leadership struct{ *lease.Held }

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
		lease.Abandon(ctx, sess, log, "campaign")
		if errors.Is(err, ErrNotElected) {
			return nil, err
		}
		return nil, fmt.Errorf("election: campaign %s: %w", cfg.Prefix, err)
	}
	log.Debug("elected", "key", l.Key(), "fence", l.Fence())
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
	return &Leadership{sess.Hold(key, fence, rev)}, nil
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

// Resign steps down: it revokes the leadership's lease, which deletes the
// leader key in the same revision, as Election.Resign would, and ends the
// session. The key is gone when it returns nil. It can be called again,
// also after it failed.
func (l *Leadership) Resign(ctx context.Context) error {
	if err := l.End(ctx); err != nil {
		return fmt.Errorf("election: resign %s: %w", l.Key(), err)
	}
	return nil
}
