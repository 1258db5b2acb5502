package discovery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/internal/names"
	"github.com/sidecar-dev/sidecar/internal/retry"
)

const (
	// pageSize bounds the keys of one range request; lists are read in
	// pages at one fixed revision.
	pageSize = 1000
	// requestTimeout bounds one range request; the client waits for a
	// connection until then.
	requestTimeout = 5 * time.Second
	// Retry delays after a failed list or watch: doubled per failure from
	// backoffBase up to backoffMax, jittered (internal/retry).
	backoffBase = 50 * time.Millisecond
	backoffMax  = time.Second
)

var (
	// errWatchClosed is returned by follow when the watch channel closed
	// without a response saying why.
	errWatchClosed = errors.New("discovery: watch closed")
	// errCompacted is returned by follow when etcd cancelled the watch
	// because its start revision was compacted.
	errCompacted = errors.New("discovery: watch revision compacted")
)

// watchService keeps s in step with etcd until ctx ends, listing and
// watching again after any failure, for ever. It returns nil.
func (c *Cache) watchService(ctx context.Context, s *service) error {
	var rev int64 // the revision s reflects; 0: a list is needed
	bo := retry.Backoff{Base: backoffBase, Max: backoffMax}
	for ctx.Err() == nil {
		if rev == 0 {
			r, err := c.relist(ctx, s)
			if err != nil {
				c.watchFailed(ctx, s, "list", err)
				retry.Sleep(ctx, bo.Next())
				continue
			}
			rev = r
		}
		next, err := c.follow(ctx, s, rev, &bo)
		rev = next
		switch {
		case ctx.Err() != nil:
		case errors.Is(err, errCompacted):
			// The same start revision would fail again: list at a new
			// revision and diff, which also finds deletes made meanwhile.
			c.log.Info("watch compacted; listing again", "service", s.name, "rev", rev)
			rev = 0
		default:
			c.watchFailed(ctx, s, "watch", err)
			retry.Sleep(ctx, bo.Next())
		}
	}
	return nil
}

// watchFailed marks s stale and logs the failure: at warn when it ends a
// working watch, at debug while retrying.
func (c *Cache) watchFailed(ctx context.Context, s *service, op string, err error) {
	if ctx.Err() != nil {
		return
	}
	if s.setWatch(false, err, c.live.Up()) {
		c.log.Warn("watch failed; answering from cache", "service", s.name, "op", op, "err", err)
	} else {
		c.log.Debug("watch retry failed", "service", s.name, "op", op, "err", err)
	}
}

// relist reads s's instances at one revision, replaces the cache with them
// and returns the revision.
func (c *Cache) relist(ctx context.Context, s *service) (int64, error) {
	insts, rev, err := c.list(ctx, s.prefix)
	if err != nil {
		return 0, err
	}
	c.live.Answered()
	added, removed, changed := s.setList(insts, rev, c.live.Up())
	c.log.Debug("listed service", "service", s.name, "rev", rev, "instances", len(insts),
		"added", added, "removed", removed, "changed", changed)
	return rev, nil
}

// list reads the instances under prefix in pages of pageSize keys, all at
// the revision of the first page, and returns them sorted by ID with that
// revision.
func (c *Cache) list(ctx context.Context, prefix string) ([]Instance, int64, error) {
	out := []Instance{} // an unknown service has no instances, not null ones
	rev, err := c.pages(ctx, prefix, nil, func(kvs []*mvccpb.KeyValue) string {
		for _, kv := range kvs {
			if in, err := c.decode(prefix, string(kv.Key), kv.Value); err == nil {
				out = append(out, in)
			}
		}
		return ""
	})
	if err != nil {
		return nil, 0, fmt.Errorf("discovery: list %q: %w", prefix, err)
	}
	slices.SortFunc(out, byID)
	return out, rev, nil
}

// follow watches s from rev+1 and applies each response as one change,
// until the watch fails or ctx ends. It returns the revision s then
// reflects and why it stopped.
func (c *Cache) follow(ctx context.Context, s *service, rev int64, bo *retry.Backoff) (int64, error) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := c.cli.Watch(wctx, s.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithCreatedNotify())
	for {
		var resp clientv3.WatchResponse
		var ok bool
		select {
		case resp, ok = <-wch:
		case <-ctx.Done():
			return rev, ctx.Err()
		}
		if ok && resp.Err() == nil {
			c.live.Answered()
		}
		switch {
		case !ok:
			return rev, errWatchClosed
		case resp.CompactRevision != 0:
			return rev, fmt.Errorf("%w: at %d, compacted at %d", errCompacted, rev+1, resp.CompactRevision)
		case resp.Err() != nil:
			return rev, fmt.Errorf("discovery: watch %q: %w", s.prefix, resp.Err())
		case resp.Created:
			if !s.setWatch(true, nil, c.live.Up()) {
				c.log.Info("watching again", "service", s.name, "rev", rev)
			}
			bo.Reset()
		case len(resp.Events) > 0:
			rev = c.apply(s, resp.Events)
			bo.Reset()
		}
	}
}

// apply turns one watch response's events into one change of s and
// returns the revision of its last event.
func (c *Cache) apply(s *service, evs []*clientv3.Event) int64 {
	upd := make(map[string]*Instance, len(evs))
	var rev int64
	for _, ev := range evs {
		rev = max(rev, ev.Kv.ModRevision)
		key := string(ev.Kv.Key)
		id := key[len(s.prefix):]
		var in *Instance // nil: no instance of id any more
		if ev.Type == clientv3.EventTypePut {
			if v, err := c.decode(s.prefix, key, ev.Kv.Value); err == nil {
				in = &v
			}
		}
		if names.Valid(id) {
			upd[id] = in // a value that does not parse replaces the old one too
		}
	}
	s.applyEvents(upd, rev, c.live.Up())
	return rev
}

// decode parses the instance at key, a key under prefix; on failure it
// counts and logs the key and returns the error.
func (c *Cache) decode(prefix, key string, value []byte) (Instance, error) {
	id := key[len(prefix):]
	var in Instance
	var err error
	if !names.Valid(id) {
		err = fmt.Errorf("id %q is not a valid name", id)
	} else {
		in, err = parseInstance(id, value)
	}
	if err != nil {
		c.skipped.Add(1)
		c.log.Debug("skipped instance", "key", key, "err", err)
	}
	return in, err
}
