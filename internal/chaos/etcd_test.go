package chaos

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// namespace is the sidecar's default namespace, the root of its keys.
const namespace = "/sidecar/"

// world is the etcd side of a scenario: a three-member cluster, a proxy per
// client link, and a client that talks to the members directly (never
// through the proxies), to observe what etcd holds.
type world struct {
	cluster *etcdtest.Cluster
	proxies []*etcdtest.Proxy
	cli     *clientv3.Client
}

// newWorld starts a three-member cluster with a proxy in front of each
// member's client URL.
func newWorld(t *testing.T) *world {
	t.Helper()
	c := etcdtest.StartCluster(t, 3, etcdtest.ServerOptions{})
	w := &world{cluster: c, cli: c.Client(t)}
	for _, u := range c.ClientURLs() {
		w.proxies = append(w.proxies, etcdtest.StartProxy(t, u))
	}
	return w
}

// endpoints returns the YAML list of the proxies' URLs, for a sidecar's
// etcd.endpoints, or of the members' own URLs when direct is set.
func (w *world) endpoints(direct bool) string {
	var urls []string
	if direct {
		urls = w.cluster.ClientURLs()
	} else {
		for _, p := range w.proxies {
			urls = append(urls, p.URL())
		}
	}
	return "[" + strings.Join(urls, ", ") + "]"
}

// blackhole silences every client link; heal restores them.
func (w *world) blackhole() {
	for _, p := range w.proxies {
		p.Blackhole()
	}
}

func (w *world) heal() {
	for _, p := range w.proxies {
		p.Heal()
	}
}

// ctx is a context for one etcd request of the observer.
func ctx(t *testing.T) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.Context(), 3*time.Second)
}

// lease returns the lease of key, or 0 and no error when the key is absent.
func (w *world) lease(t *testing.T, key string) (clientv3.LeaseID, error) {
	c, cancel := ctx(t)
	defer cancel()
	resp, err := w.cli.Get(c, key)
	if err != nil {
		return 0, fmt.Errorf("get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return 0, nil
	}
	return clientv3.LeaseID(resp.Kvs[0].Lease), nil
}

// keys returns every key under the namespace, sorted.
func (w *world) keys(t *testing.T) ([]string, error) {
	c, cancel := ctx(t)
	defer cancel()
	resp, err := w.cli.Get(c, namespace, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", namespace, err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	slices.Sort(keys)
	return keys, nil
}

// leaseCount is etcd's leases split by whether a key is attached: live
// ones carry a registration or hold key, leaked ones carry nothing.
type leaseCount struct {
	live, leaked []clientv3.LeaseID
}

// leases counts every lease of etcd's LeaseLeases.
func (w *world) leases(t *testing.T) (leaseCount, error) {
	c, cancel := ctx(t)
	defer cancel()
	resp, err := w.cli.Leases(c)
	if err != nil {
		return leaseCount{}, fmt.Errorf("lease list: %w", err)
	}
	var n leaseCount
	for _, l := range resp.Leases {
		ttl, err := w.cli.TimeToLive(c, l.ID, clientv3.WithAttachedKeys())
		if err != nil {
			return leaseCount{}, fmt.Errorf("lease %x: time to live: %w", l.ID, err)
		}
		switch {
		case ttl.TTL == -1: // expired or revoked between the two calls
		case len(ttl.Keys) == 0:
			n.leaked = append(n.leaked, l.ID)
		default:
			n.live = append(n.live, l.ID)
		}
	}
	return n, nil
}

// settle waits until etcd holds exactly the keys want under the namespace
// and one live lease per key of leased (no leaked lease), and returns how
// long that took. A lease granted by a request that a cut delayed is not
// kept alive and expires within a TTL, so the wait is bounded by within.
func (w *world) settle(t *testing.T, within time.Duration, leased int, want ...string) (time.Duration, leaseCount) {
	t.Helper()
	slices.Sort(want)
	var n leaseCount
	took := etcdtest.Eventually(t, within, "etcd keys and leases as expected", func() error {
		keys, err := w.keys(t)
		if err != nil {
			return err
		}
		if !slices.Equal(keys, want) {
			return fmt.Errorf("keys %q, want %q", keys, want)
		}
		if n, err = w.leases(t); err != nil {
			return err
		}
		if len(n.leaked) != 0 || len(n.live) != leased {
			return fmt.Errorf("%d live leases %x (want %d), %d leaked %x", len(n.live), n.live, leased, len(n.leaked), n.leaked)
		}
		return nil
	})
	return took, n
}
