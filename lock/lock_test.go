package lock_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/internal/etcdclient"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
	"github.com/sidecar-dev/sidecar/internal/lease"
	"github.com/sidecar-dev/sidecar/internal/lease/leasetest"
	"github.com/sidecar-dev/sidecar/lock"
)

func TestMain(m *testing.M) { etcdtest.RunWithLeakCheck(m, 10*time.Second) }

const (
	prefix = "/sidecar/locks/nightly"
	ttl    = 2 * time.Second
)

// newClient is the daemon's kind of client of endpoint, closed at cleanup.
func newClient(t *testing.T, endpoint string) *clientv3.Client {
	t.Helper()
	cli, err := etcdclient.New(t.Context(), etcdclient.Config{Endpoints: []string{endpoint}})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// acquire takes the lock within 10s, released at cleanup.
func acquire(t *testing.T, cli *clientv3.Client) *lock.Hold {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	h, err := lock.Acquire(ctx, cli, lock.Config{Prefix: prefix, TTL: ttl}, false)
	if err != nil {
		t.Fatalf("acquire: %v", err)
	}
	t.Cleanup(func() { release(t, h) })
	return h
}

func release(t *testing.T, h *lock.Hold) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := h.Release(ctx); err != nil {
		t.Errorf("release: %v", err)
	}
}

// acquiring runs a blocking Acquire in the background; its result arrives
// on the channel with the time Acquire returned.
type result struct {
	h   *lock.Hold
	err error
	at  time.Time
}

func acquiring(t *testing.T, cli *clientv3.Client) <-chan result {
	ch := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		h, err := lock.Acquire(ctx, cli, lock.Config{Prefix: prefix, TTL: ttl}, false)
		ch <- result{h, err, time.Now()}
	}()
	return ch
}

func await(t *testing.T, ch <-chan result, wait time.Duration) result {
	t.Helper()
	select {
	case r := <-ch:
		if r.h != nil {
			t.Cleanup(func() { release(t, r.h) })
		}
		return r
	case <-time.After(wait):
		t.Fatalf("Acquire did not return within %s", wait)
		return result{}
	}
}

// keys lists the keys under the lock's prefix, oldest first.
func keys(t *testing.T, cli *clientv3.Client) []string {
	t.Helper()
	resp, err := cli.Get(t.Context(), prefix+"/", clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil {
		t.Fatal(err)
	}
	var ks []string
	for _, kv := range resp.Kvs {
		ks = append(ks, string(kv.Key))
	}
	return ks
}

func keyCount(t *testing.T, cli *clientv3.Client, n int) func() error {
	return func() error {
		if ks := keys(t, cli); len(ks) != n {
			return fmt.Errorf("keys %q, want %d", ks, n)
		}
		return nil
	}
}

func TestMutualExclusion(t *testing.T) {
	const workers, rounds = 4, 3
	e := etcdtest.StartEmbedded(t)
	var (
		mu  sync.Mutex
		log []string // "in W FENCE", "out W"
		wg  sync.WaitGroup
	)
	add := func(s string) { mu.Lock(); log = append(log, s); mu.Unlock() }
	for w := range workers {
		cli := newClient(t, e.ClientURL)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				h, err := lock.Acquire(ctx, cli, lock.Config{Prefix: prefix, TTL: ttl}, false)
				cancel()
				if err != nil {
					t.Errorf("worker %d: acquire: %v", w, err)
					return
				}
				add(fmt.Sprintf("in %d %d", w, h.Fence()))
				time.Sleep(20 * time.Millisecond) // long enough for another to overlap
				if h.Err() != nil {
					t.Errorf("worker %d: lost while held: %v", w, h.Err())
				}
				add(fmt.Sprintf("out %d", w))
				release(t, h)
			}
		}()
	}
	wg.Wait()
	if len(log) != 2*workers*rounds {
		t.Fatalf("log has %d entries, want %d: %q", len(log), 2*workers*rounds, log)
	}
	var last int64
	for i := 0; i < len(log); i += 2 {
		var w, w2 int
		var fence int64
		fmt.Sscanf(log[i], "in %d %d", &w, &fence)
		fmt.Sscanf(log[i+1], "out %d", &w2)
		if !strings.HasPrefix(log[i], "in ") || !strings.HasPrefix(log[i+1], "out ") || w != w2 {
			t.Fatalf("holds overlap at entry %d: %q", i, log)
		}
		if fence <= last {
			t.Fatalf("fence %d after %d: %q", fence, last, log)
		}
		last = fence
	}
	etcdtest.Eventually(t, time.Second, "no keys left", keyCount(t, e.Client(t), 0))
}

func TestTry(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	a, b := newClient(t, e.ClientURL), newClient(t, e.ClientURL)
	h := acquire(t, a)
	start := time.Now()
	_, err := lock.Acquire(t.Context(), b, lock.Config{Prefix: prefix, TTL: ttl}, true)
	if !errors.Is(err, lock.ErrHeld) {
		t.Fatalf("try while held: %v, want ErrHeld", err)
	}
	t.Logf("try answered in %s", time.Since(start))
	if ks := keys(t, b); len(ks) != 1 || ks[0] != h.Key() {
		t.Fatalf("keys after a failed try: %q, want only the holder's %q", ks, h.Key())
	}
	leases, err := b.Leases(t.Context())
	if err != nil || len(leases.Leases) != 1 || leases.Leases[0].ID != h.Lease() {
		t.Fatalf("leases after a failed try: %+v %v, want only the holder's", leases, err)
	}
	release(t, h)
	if ks := keys(t, b); len(ks) != 0 {
		t.Fatalf("keys after Release: %q", ks)
	}
	select {
	case <-h.Lost():
		if !errors.Is(h.Err(), lease.ErrClosed) {
			t.Fatalf("Err after Release: %v", h.Err())
		}
	default:
		t.Fatal("Lost open after Release")
	}
	h2, err := lock.Acquire(t.Context(), b, lock.Config{Prefix: prefix, TTL: ttl}, true)
	if err != nil {
		t.Fatalf("try when free: %v", err)
	}
	defer release(t, h2)
	if h2.Fence() <= h.Fence() {
		t.Fatalf("fence %d after %d", h2.Fence(), h.Fence())
	}
}

func TestKeyDeletedLosesHold(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	h := acquire(t, newClient(t, e.ClientURL))
	if _, err := e.Client(t).Delete(t.Context(), h.Key()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.Lost():
	case <-time.After(2 * time.Second):
		t.Fatal("hold not lost when its key was deleted")
	}
	if !errors.Is(h.Err(), lease.ErrKeyDeleted) {
		t.Fatalf("Err = %v, want ErrKeyDeleted", h.Err())
	}
}

func TestEtcdctlInterop(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := newClient(t, e.ClientURL)
	t.Run("etcdctl holds", func(t *testing.T) {
		p := leasetest.StartEtcdctl(t, e.ClientURL, "lock", prefix)
		key, ok := p.Line(10 * time.Second)
		if !ok || !strings.HasPrefix(key, prefix+"/") {
			t.Fatalf("etcdctl lock printed %q, %v", key, ok)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 700*time.Millisecond)
		defer cancel()
		if _, err := lock.Acquire(ctx, cli, lock.Config{Prefix: prefix, TTL: ttl}, false); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("acquire while etcdctl holds: %v, want the wait to time out", err)
		}
		if ks := keys(t, cli); len(ks) != 1 || ks[0] != key {
			t.Fatalf("keys after the wait: %q, want only etcdctl's", ks)
		}
		ch := acquiring(t, cli)
		etcdtest.Eventually(t, 5*time.Second, "waiting behind etcdctl", keyCount(t, cli, 2))
		p.Stop() // etcdctl unlocks
		r := await(t, ch, 5*time.Second)
		if r.err != nil {
			t.Fatalf("acquire after etcdctl unlocked: %v", r.err)
		}
	})
	t.Run("we hold", func(t *testing.T) {
		h := acquire(t, cli)
		p := leasetest.StartEtcdctl(t, e.ClientURL, "lock", prefix)
		if l, ok := p.Line(time.Second); ok {
			t.Fatalf("etcdctl took the lock we hold: %q", l)
		}
		release(t, h)
		key, ok := p.Line(5 * time.Second)
		if !ok || !strings.HasPrefix(key, prefix+"/") {
			t.Fatalf("etcdctl lock after Release printed %q, %v", key, ok)
		}
		resp, err := cli.Get(t.Context(), key)
		if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].CreateRevision <= h.Fence() {
			t.Fatalf("etcdctl's key: %v %v, want one created after fence %d", resp, err, h.Fence())
		}
		p.Stop()
	})
}

// TestBlackholedHolderLosesFirst: a holder cut off from etcd is told its
// hold is lost before etcd lets anyone else take the lock.
func TestBlackholedHolderLosesFirst(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	p := etcdtest.StartProxy(t, e.ClientURL)
	holder, other := newClient(t, p.URL()), newClient(t, e.ClientURL)
	for trial := range 5 {
		p.Heal()
		h := acquire(t, holder)
		ch := acquiring(t, other)
		etcdtest.Eventually(t, 5*time.Second, "other waiting", keyCount(t, other, 2))
		p.Blackhole()
		var lostAt time.Time
		select {
		case <-h.Lost():
			lostAt = time.Now()
		case r := <-ch:
			t.Fatalf("trial %d: the other acquired (err %v) before the holder was told", trial, r.err)
		case <-time.After(5 * time.Second):
			t.Fatalf("trial %d: holder not told within 5s", trial)
		}
		r := await(t, ch, 10*time.Second)
		if r.err != nil {
			t.Fatalf("trial %d: other: %v", trial, r.err)
		}
		gap := r.at.Sub(lostAt)
		t.Logf("trial %d: holder told %s before the other acquired (%v)", trial, gap, h.Err())
		if gap < 100*time.Millisecond {
			t.Fatalf("trial %d: holder told only %s before the other acquired", trial, gap)
		}
		if !errors.Is(h.Err(), lease.ErrUnacknowledged) {
			t.Fatalf("trial %d: Err = %v", trial, h.Err())
		}
		if r.h.Fence() <= h.Fence() {
			t.Fatalf("trial %d: fence %d after %d", trial, r.h.Fence(), h.Fence())
		}
		p.Heal()
		release(t, h)
		release(t, r.h)
	}
}

// leaseOf is the lease whose ID a lock key ends with.
func leaseOf(t *testing.T, key string) clientv3.LeaseID {
	t.Helper()
	id, err := strconv.ParseInt(key[strings.LastIndex(key, "/")+1:], 16, 64)
	if err != nil {
		t.Fatalf("key %q: %v", key, err)
	}
	return clientv3.LeaseID(id)
}

// TestWaiterLostStopsWaiting: a waiter whose own session is lost stops
// waiting at once, not when the holder lets go (etcd-io/etcd#19597).
func TestWaiterLostStopsWaiting(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	admin := e.Client(t)
	h := acquire(t, newClient(t, e.ClientURL))
	t.Run("lease revoked", func(t *testing.T) {
		ch := acquiring(t, newClient(t, e.ClientURL))
		etcdtest.Eventually(t, 5*time.Second, "waiter queued", keyCount(t, admin, 2))
		if _, err := admin.Revoke(t.Context(), leaseOf(t, keys(t, admin)[1])); err != nil {
			t.Fatal(err)
		}
		if r := await(t, ch, 2*time.Second); !errors.Is(r.err, lease.ErrExpired) {
			t.Fatalf("waiter: %v, want its session's loss", r.err)
		}
	})
	t.Run("blackholed", func(t *testing.T) {
		p := etcdtest.StartProxy(t, e.ClientURL)
		ch := acquiring(t, newClient(t, p.URL()))
		etcdtest.Eventually(t, 5*time.Second, "waiter queued", keyCount(t, admin, 2))
		p.Blackhole()
		defer p.Heal()
		if r := await(t, ch, ttl+2*time.Second); !errors.Is(r.err, lease.ErrUnacknowledged) {
			t.Fatalf("waiter: %v, want its session's loss", r.err)
		}
		// its key goes when etcd expires the lease
		etcdtest.Eventually(t, ttl+time.Second, "waiting key gone", keyCount(t, admin, 1))
	})
	if h.Err() != nil {
		t.Fatalf("holder lost: %v", h.Err())
	}
}
