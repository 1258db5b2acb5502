package discovery_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/discovery"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// TestCompactionRelistsAndDiffs cuts the cache off from etcd with a TCP
// proxy; meanwhile another client deletes and adds instances and compacts
// past everything the cache has seen. When the proxy lets the cache
// through again, the client resumes its watch at a compacted revision,
// etcd cancels it, and the cache must list again and diff: the deleted
// instance disappears, with no event ever telling it so.
func TestCompactionRelistsAndDiffs(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	admin := e.Client(t)
	p := etcdtest.StartProxy(t, e.ClientURL)
	var logs etcdtest.LogBuffer
	c := startCache(t, newClient(t, p.URL()), discovery.Config{Logger: logs.Logger()})
	register(t, admin, "orders", "a", "h:1", 1, "", nil)
	register(t, admin, "orders", "b", "h:2", 2, "", nil)
	register(t, admin, "orders", "c", "h:3", 3, "", nil)
	ch, err := c.Subscribe(t.Context(), "orders")
	if err != nil {
		t.Fatal(err)
	}
	next(t, ch, 5*time.Second, "listed", func(s discovery.Snapshot) bool { return ids(s) == "a,b,c" && !s.Stale })

	p.Drop()
	next(t, ch, 5*time.Second, "stale while cut off", func(s discovery.Snapshot) bool { return s.Stale && ids(s) == "a,b,c" })
	del(t, admin, prefix+"/orders/b")
	register(t, admin, "orders", "c", "h:3", 30, "", nil)
	register(t, admin, "orders", "d", "h:4", 4, "", nil)
	for i := range 10 {
		put(t, admin, prefix+"/other/x", fmt.Sprint(i))
	}
	rev := currentRev(t, admin)
	if _, err := admin.Compact(t.Context(), rev, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	if s := get(t, c, "orders"); !s.Stale || ids(s) != "a,b,c" {
		t.Fatalf("while cut off: %s, want stale a,b,c", describe(s))
	}

	p.Heal()
	s := next(t, ch, 15*time.Second, "fresh again", func(s discovery.Snapshot) bool { return !s.Stale && ids(s) == "a,c,d" })
	if weightOf(s, "c") != 30 || s.Revision < rev {
		t.Errorf("after the re-list: %s, want c=30 at rev >= %d", describe(s), rev)
	}
	if !strings.Contains(logs.String(), "watch compacted; listing again") {
		t.Errorf("no re-list after compaction in the logs:\n%s", logs.String())
	}
	// And the watch works again from the new revision.
	rev = register(t, admin, "orders", "e", "h:5", 5, "", nil)
	next(t, ch, 5*time.Second, "watch after re-list", func(s discovery.Snapshot) bool { return s.Revision == rev && ids(s) == "a,c,d,e" })
}

// TestStaleWhileEtcdDown stops the etcd server: the cache answers from
// what it has, with Stale set, then recovers once etcd is back.
func TestStaleWhileEtcdDown(t *testing.T) {
	s := etcdtest.StartServer(t, etcdtest.ServerOptions{})
	admin := s.Client(t)
	register(t, admin, "orders", "a", "h:1", 1, "", nil)
	c := startCache(t, newClient(t, s.ClientURL), discovery.Config{})
	if snap := get(t, c, "orders"); snap.Stale || ids(snap) != "a" {
		t.Fatalf("before the outage: %s", describe(snap))
	}
	ch, err := c.Subscribe(t.Context(), "orders")
	if err != nil {
		t.Fatal(err)
	}
	next(t, ch, time.Second, "first snapshot", func(discovery.Snapshot) bool { return true })

	// etcd takes seconds to exit after SIGTERM (it waits for open
	// streams); the cache must say stale long before.
	down := time.Now()
	stopped := make(chan struct{})
	go func() { defer close(stopped); s.Stop() }()
	eventually(t, 5*time.Second, "Get says stale", func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		snap, err := c.Get(ctx, "orders")
		if err != nil {
			return err
		}
		if !snap.Stale || ids(snap) != "a" {
			return fmt.Errorf("%s, want stale a", describe(snap))
		}
		return nil
	})
	t.Logf("stale %s after SIGTERM", time.Since(down).Round(time.Millisecond))
	next(t, ch, time.Second, "stale snapshot to subscribers", func(s discovery.Snapshot) bool { return s.Stale })
	if _, err := c.Pick(t.Context(), "orders"); err != nil {
		t.Errorf("Pick while etcd is down: %v", err)
	}

	<-stopped
	s.Restart()
	up := time.Now()
	next(t, ch, 15*time.Second, "fresh snapshot to subscribers", func(s discovery.Snapshot) bool { return !s.Stale })
	t.Logf("fresh %s after restart", time.Since(up).Round(time.Millisecond))
	rev := register(t, admin, "orders", "b", "h:2", 1, "", nil)
	next(t, ch, 10*time.Second, "change after restart", func(s discovery.Snapshot) bool { return s.Revision >= rev && ids(s) == "a,b" })
	if snap := get(t, c, "orders"); snap.Stale || ids(snap) != "a,b" {
		t.Errorf("after the outage: %s, want fresh a,b", describe(snap))
	}
}
