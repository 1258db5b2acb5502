package chaos

import (
	"context"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// TestHarness checks the harness the scenarios rely on: the cluster has
// three members and a leader, a lease without a key counts as leaked and
// one with a key as live, and a blackholed link carries no request until
// it is healed.
func TestHarness(t *testing.T) {
	w := newWorld(t)
	c, cancel := ctx(t)
	defer cancel()
	members, err := w.cli.MemberList(c)
	if err != nil || len(members.Members) != 3 {
		t.Fatalf("member list: %v, %d members, want 3", err, len(members.Members))
	}
	if i := w.cluster.Leader(t); i < 0 {
		t.Fatal("no member reports a leader")
	}
	bare, err := w.cli.Grant(c, 60)
	if err != nil {
		t.Fatal(err)
	}
	used, err := w.cli.Grant(c, 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.cli.Put(c, namespace+"k", "v", clientv3.WithLease(used.ID)); err != nil {
		t.Fatal(err)
	}
	n, err := w.leases(t)
	if err != nil || !slices.Equal(n.leaked, []clientv3.LeaseID{bare.ID}) || !slices.Equal(n.live, []clientv3.LeaseID{used.ID}) {
		t.Fatalf("leases: %v, live %x leaked %x, want live [%x] leaked [%x]", err, n.live, n.leaked, used.ID, bare.ID)
	}

	proxied, err := clientv3.New(clientv3.Config{Endpoints: []string{w.proxies[0].URL()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer proxied.Close()
	if _, err := proxied.Get(c, "x"); err != nil {
		t.Fatalf("get through the proxy: %v", err)
	}
	w.blackhole()
	short, cancelShort := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancelShort()
	if _, err := proxied.Get(short, "x"); err == nil {
		t.Fatal("get through a blackholed proxy succeeded")
	}
	w.heal()
	if _, err := proxied.Get(c, "x"); err != nil {
		t.Fatalf("get through the healed proxy: %v", err)
	}
}
