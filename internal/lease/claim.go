package lease

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/internal/retry"
)

// Bounds of the etcd requests of a Claim and of Await.
const (
	getTimeout = 5 * time.Second
	// abandonAfter is how long Await waits, once it has stopped a wait,
	// for the wait's own cleanup before it returns without it.
	abandonAfter = 500 * time.Millisecond
)

var errWatchClosed = errors.New("lease: watch closed")

// Claim is a key that a session owns, such as a lock's or a leader's key,
// followed until Stop: it is lost when the session is lost (the session
// tells its claims at once), or when the key is deleted or replaced (a new
// creation revision) by anyone, which a watch on the key (requiring a
// leader, resumed after compactions and outages) reports. Its methods are
// safe for concurrent use.
type Claim struct {
	s         *Session
	key       string
	createRev int64
	cancel    context.CancelFunc // ends follow
	done      chan struct{}      // follow has returned
	lost      chan struct{}

	mu  sync.Mutex
	err error
}

// Claim starts following key, created on the session's lease at revision
// createRev and known to exist at revision rev; a deletion after rev counts.
func (s *Session) Claim(key string, createRev, rev int64) *Claim {
	ctx, cancel := context.WithCancel(context.Background())
	c := &Claim{s: s, key: key, createRev: createRev, cancel: cancel,
		done: make(chan struct{}), lost: make(chan struct{})}
	s.mu.Lock()
	s.checkLocked(time.Now())
	if s.err != nil {
		c.lose(s.err)
	} else {
		s.claims[c] = struct{}{}
	}
	s.mu.Unlock()
	go c.follow(ctx, rev)
	return c
}

// Lost is closed when the claim is lost, or stopped. Like Session.Lost it
// checks the session's deadline before it returns.
func (c *Claim) Lost() <-chan struct{} {
	c.s.Lost() // a loss found now reaches c at once
	return c.lost
}

// Err says why the claim was lost: the session's Err, ErrKeyDeleted, or
// ErrClosed after Stop; nil while it is not.
func (c *Claim) Err() error {
	c.s.Err()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Stop stops following the key and closes Lost (with ErrClosed unless it
// was lost before). It can be called again.
func (c *Claim) Stop() {
	c.lose(ErrClosed)
	<-c.done
	c.s.mu.Lock()
	delete(c.s.claims, c)
	c.s.mu.Unlock()
}

// lose records the first reason the claim is lost, closes Lost and stops
// following the key. It is called with or without the session's lock.
func (c *Claim) lose(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
		close(c.lost)
		c.cancel()
	}
}

// follow watches the key until the claim is lost (which ends ctx) or ctx
// ends; after a failed watch (compaction, no leader, an outage) it reads
// the key again, with backoff, and watches from there.
func (c *Claim) follow(ctx context.Context, rev int64) {
	defer close(c.done)
	bo := retry.Backoff{Base: 100 * time.Millisecond, Max: 2 * time.Second}
	for ctx.Err() == nil {
		err := c.watch(ctx, rev)
		for err != nil && retry.Sleep(ctx, bo.Next()) {
			c.s.log.Debug("key watch ended; reading the key again", "key", c.key, "err", err)
			rev, err = c.check(ctx)
		}
	}
}

// watch watches the key from rev+1 until it is deleted or replaced (the
// claim is then lost), ctx ends (both: nil) or the watch fails.
func (c *Claim) watch(ctx context.Context, rev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := c.s.cli.Watch(wctx, c.key, clientv3.WithRev(rev+1))
	for {
		select {
		case <-ctx.Done():
			return nil
		case wr, ok := <-wch:
			if !ok {
				return errWatchClosed
			}
			if err := wr.Err(); err != nil {
				return err
			}
			for _, ev := range wr.Events {
				if ev.Type == mvccpb.DELETE || ev.Kv.CreateRevision != c.createRev {
					c.lose(ErrKeyDeleted)
					return nil
				}
			}
		}
	}
}

// check reads the key: when it is gone or replaced the claim is lost (and
// check returns 0, nil); else it returns the revision read at.
func (c *Claim) check(ctx context.Context) (int64, error) {
	gctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), getTimeout)
	defer cancel()
	resp, err := c.s.cli.Get(gctx, c.key)
	if err != nil {
		return 0, fmt.Errorf("lease: get %s: %w", c.key, err)
	}
	if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != c.createRev {
		c.lose(ErrKeyDeleted)
	}
	return resp.Header.Revision, nil
}

// Await runs op, a wait on etcd on behalf of the session such as
// concurrency.Mutex.Lock or Election.Campaign, with a context that also
// ends when the session is lost. It returns nil when op succeeded before
// either; when ctx ended first, an error wrapping ctx.Err(); when the
// session was lost first, one wrapping its Err; else op's error.
//
// op cleans up after itself with the client's context (concurrency's
// waits do), which a partition can block for long: Await waits for op at
// most abandonAfter after stopping it, then returns without it, and op
// returns on its own when etcd answers again or the client is closed. The
// caller closes the session either way, which removes op's keys.
func (s *Session) Await(ctx context.Context, op func(context.Context) error) error {
	octx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- op(octx) }()
	select {
	case err := <-errc:
		if err == nil || ctx.Err() == nil && s.Err() == nil {
			return err
		}
		return s.cause(ctx)
	case <-ctx.Done():
	case <-s.Lost():
	}
	cause := s.cause(ctx)
	cancel()
	t := time.NewTimer(abandonAfter)
	defer t.Stop()
	select {
	case <-errc:
	case <-t.C:
		s.log.Debug("wait still cleaning up after it was stopped; not waiting for it", "cause", cause)
	}
	return cause
}

// cause is why a wait was stopped: the session's loss, or else ctx's end.
func (s *Session) cause(ctx context.Context) error {
	if err := s.Err(); err != nil {
		return fmt.Errorf("session lost while waiting: %w", err)
	}
	return fmt.Errorf("stopped waiting: %w", ctx.Err())
}
