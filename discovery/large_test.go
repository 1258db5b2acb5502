package discovery_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/discovery"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// registerMany writes n instances of service (ids i00000...) in
// transactions of 100 puts, with the registry's record format.
func registerMany(t testing.TB, cli *clientv3.Client, service string, n int) {
	t.Helper()
	ops := make([]clientv3.Op, 0, 100)
	for i := range n {
		id := fmt.Sprintf("i%05d", i)
		ops = append(ops, clientv3.OpPut(prefix+"/"+service+"/"+id, record(id, fmt.Sprintf("10.0.%d.%d:8080", i/250, i%250), 100)))
		if len(ops) == cap(ops) || i == n-1 {
			if _, err := cli.Txn(t.Context()).Then(ops...).Commit(); err != nil {
				t.Fatalf("register %d instances: %v", n, err)
			}
			ops = ops[:0]
		}
	}
}

// record is an instance's value as the registry writes it.
func record(id, addr string, weight int) string {
	b, err := json.Marshal(map[string]any{
		"Op": 0, "Addr": addr,
		"Metadata": map[string]any{"id": id, "weight": weight, "node": "node-" + id, "metadata": map[string]string{"version": "v1"}},
	})
	if err != nil {
		panic(err)
	}
	return string(b)
}

// TestLargeService lists 5,000 instances (five pages at one revision)
// while other writes go on, then sees one update.
func TestLargeService(t *testing.T) {
	const n = 5000
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	registerMany(t, cli, "big", n)
	rev := currentRev(t, cli)
	c := startCache(t, cli, discovery.Config{})
	start := time.Now()
	snap := get(t, c, "big")
	t.Logf("listed %d instances in %s", len(snap.Instances), time.Since(start).Round(time.Millisecond))
	if len(snap.Instances) != n || snap.Revision != rev || snap.Stale {
		t.Fatalf("got %d instances at rev %d stale=%v, want %d at %d", len(snap.Instances), snap.Revision, snap.Stale, n, rev)
	}
	for i, in := range snap.Instances {
		if want := fmt.Sprintf("i%05d", i); in.ID != want || in.Weight != 100 || in.Node != "node-"+want || in.Metadata["version"] != "v1" {
			t.Fatalf("instance %d = %+v, want id %s", i, in, want)
		}
	}
	ch, err := c.Subscribe(t.Context(), "big")
	if err != nil {
		t.Fatal(err)
	}
	next(t, ch, time.Second, "first snapshot", func(discovery.Snapshot) bool { return true })
	rev = put(t, cli, prefix+"/big/i02500", record("i02500", "10.0.10.0:8080", 7))
	s := next(t, ch, 5*time.Second, "update", func(s discovery.Snapshot) bool { return s.Revision == rev })
	if len(s.Instances) != n || weightOf(s, "i02500") != 7 || weightOf(s, "i02499") != 100 {
		t.Errorf("after the update: %d instances, i02500 weight %d, want %d and 7", len(s.Instances), weightOf(s, "i02500"), n)
	}
	if snap.Instances[2500].Weight != 100 {
		t.Errorf("the update changed an earlier snapshot in place")
	}
}
