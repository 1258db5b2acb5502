package discovery

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/internal/etcdpage"
	"github.com/sidecar-dev/sidecar/internal/names"
)

// Get returns the current snapshot of service. The first call for a
// service starts its watch and waits, bounded by ctx, for its first list;
// later calls answer from the cache at once. While etcd is unreachable or
// the watch is broken the answer comes from the cache with Stale set. A
// service without instances is an empty snapshot, not an error. Errors:
// ErrBadName, ErrUnavailable (never listed before ctx ended), ErrStopped.
func (c *Cache) Get(ctx context.Context, service string) (Snapshot, error) {
	s, err := c.acquire(service)
	if err != nil {
		return Snapshot{}, err
	}
	defer c.release(s)
	if err := c.waitListed(ctx, s); err != nil {
		return Snapshot{}, err
	}
	return s.current(c.live.Up()), nil
}

// Subscribe returns a channel that receives service's current snapshot
// first (at once if the service was listed before, else after its first
// list), then one snapshot per change: per etcd watch response, per re-list
// that changed something, and whenever Stale flips. A slow reader is never
// waited for: it gets the latest snapshot, intermediate ones are dropped.
// The channel closes when ctx ends or the cache stops. The service is
// watched at least as long as the subscription lasts. Errors: ErrBadName,
// ErrStopped.
func (c *Cache) Subscribe(ctx context.Context, service string) (<-chan Snapshot, error) {
	s, err := c.acquire(service)
	if err != nil {
		return nil, err
	}
	sub := &subscriber{ch: make(chan Snapshot, 1)}
	s.addSub(sub, c.live.Up())
	context.AfterFunc(ctx, func() {
		s.removeSub(sub)
		c.release(s)
	})
	return sub.ch, nil
}

// Pick chooses one of service's instances with a weight above 0 by smooth
// weighted round robin (nginx's algorithm), from the cache; the first call
// waits like Get. The round-robin state is kept per service across calls
// and updates (by instance id). Errors: ErrNoInstance, ErrBadName,
// ErrUnavailable, ErrStopped.
func (c *Cache) Pick(ctx context.Context, service string) (Instance, error) {
	s, err := c.acquire(service)
	if err != nil {
		return Instance{}, err
	}
	defer c.release(s)
	if err := c.waitListed(ctx, s); err != nil {
		return Instance{}, err
	}
	in, ok := s.pick()
	if !ok {
		return Instance{}, fmt.Errorf("%w: service %q has no instance with weight > 0", ErrNoInstance, service)
	}
	return in, nil
}

// Services returns the sorted names of the services with at least one
// instance key, read from etcd (not the cache) with keys-only range
// requests in pages, all at one revision, skipping over the keys of a
// service once it is known. Each request is bounded by ctx and 5s; a
// failure wraps ErrUnavailable.
func (c *Cache) Services(ctx context.Context) ([]string, error) {
	var found []string
	_, err := c.pages(ctx, c.root, []clientv3.OpOption{clientv3.WithKeysOnly()}, func(kvs []*mvccpb.KeyValue) string {
		known := false // whether the page's last key belongs to a listed service
		var name string
		for _, kv := range kvs {
			var id string
			var ok bool
			name, id, ok = strings.Cut(string(kv.Key[len(c.root):]), "/")
			known = ok && names.Valid(name) && names.Valid(id)
			if known && (len(found) == 0 || found[len(found)-1] != name) {
				found = append(found, name)
			}
		}
		if known {
			return clientv3.GetPrefixRangeEnd(c.root + name + "/") // past its other keys
		}
		return ""
	})
	if err != nil {
		return nil, fmt.Errorf("%w: list services under %q: %w", ErrUnavailable, c.root, err)
	}
	slices.Sort(found)
	return slices.Compact(found), nil
}

// pages reads the keys under prefix in pages of pageSize, all at the
// revision of the first page, which it returns (internal/etcdpage). page
// sees each page and returns the key to read on from, or "" for the key
// after its last.
func (c *Cache) pages(ctx context.Context, prefix string, extra []clientv3.OpOption, page func([]*mvccpb.KeyValue) string) (int64, error) {
	r := etcdpage.Reader{Client: c.cli, PageSize: pageSize, Timeout: requestTimeout}
	return r.Prefix(ctx, prefix, 0, extra, func(kvs []*mvccpb.KeyValue) (string, error) { return page(kvs), nil })
}
