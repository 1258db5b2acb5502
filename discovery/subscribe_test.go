package discovery_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/discovery"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// TestSubscribeSequence: the first snapshot is there at once, then one
// per change, in order: add, weight change, delete.
func TestSubscribeSequence(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	register(t, cli, "orders", "a", "h:1", 100, "n1", nil)
	c := startCache(t, cli, discovery.Config{})
	first := get(t, c, "orders")
	ch, err := c.Subscribe(t.Context(), "orders")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-ch:
		if ids(s) != "a" || s.Revision != first.Revision || s.Stale {
			t.Fatalf("first snapshot %s, want the current one %s", describe(s), describe(first))
		}
	default:
		t.Fatalf("no snapshot right after Subscribe")
	}

	steps := []struct {
		what   string
		change func() int64
		want   string
	}{
		{"add b", func() int64 { return register(t, cli, "orders", "b", "h:2", 50, "n2", nil) }, "rev=%d stale=false [a=100 b=50]"},
		{"weight of b", func() int64 { return register(t, cli, "orders", "b", "h:2", 0, "n2", nil) }, "rev=%d stale=false [a=100 b=0]"},
		{"delete a", func() int64 { return del(t, cli, prefix+"/orders/a") }, "rev=%d stale=false [b=0]"},
	}
	prev := first.Revision
	for _, st := range steps {
		rev := st.change()
		select {
		case s := <-ch:
			if got, want := describe(s), fmt.Sprintf(st.want, rev); got != want {
				t.Fatalf("after %s: got %s, want %s", st.what, got, want)
			}
			if s.Revision <= prev {
				t.Fatalf("after %s: revision %d not above %d", st.what, s.Revision, prev)
			}
			prev = s.Revision
		case <-time.After(5 * time.Second):
			t.Fatalf("after %s: no snapshot within 5s", st.what)
		}
	}
	// Keys that are not instances of this service change nothing, and a
	// neighbour's change sends nothing.
	register(t, cli, "orders-eu", "x", "h:3", 1, "", nil)
	select {
	case s := <-ch:
		t.Fatalf("snapshot %s after a change of another service", describe(s))
	case <-time.After(300 * time.Millisecond):
	}
}

// TestSubscribeOneSnapshotPerRevision: the events of one revision (a Txn)
// arrive as one snapshot.
func TestSubscribeOneSnapshotPerRevision(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	c := startCache(t, cli, discovery.Config{})
	ch, err := c.Subscribe(t.Context(), "orders")
	if err != nil {
		t.Fatal(err)
	}
	next(t, ch, 5*time.Second, "first snapshot", func(discovery.Snapshot) bool { return true })
	resp, err := cli.Txn(t.Context()).Then(
		clientv3.OpPut(prefix+"/orders/a", `{"Addr":"h:1"}`),
		clientv3.OpPut(prefix+"/orders/b", `{"Addr":"h:2"}`),
		clientv3.OpPut(prefix+"/orders/c", `{"Addr":"h:3"}`),
	).Commit()
	if err != nil {
		t.Fatal(err)
	}
	s := next(t, ch, 5*time.Second, "the txn", func(discovery.Snapshot) bool { return true })
	if ids(s) != "a,b,c" || s.Revision != resp.Header.Revision {
		t.Errorf("snapshot after a 3-key txn: %s, want a,b,c at rev %d in one snapshot", describe(s), resp.Header.Revision)
	}
}

// TestSubscribeSlowReader: a reader that does not read gets the latest
// snapshot, once, and the cache is not held up meanwhile.
func TestSubscribeSlowReader(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	register(t, cli, "orders", "a", "h:1", 1, "", nil)
	c := startCache(t, cli, discovery.Config{})
	ch, err := c.Subscribe(t.Context(), "orders")
	if err != nil {
		t.Fatal(err)
	}
	fast, err := c.Subscribe(t.Context(), "orders")
	if err != nil {
		t.Fatal(err)
	}
	next(t, ch, 5*time.Second, "first snapshot", func(discovery.Snapshot) bool { return true })
	var last int64
	for w := 2; w <= 20; w++ {
		last = register(t, cli, "orders", "a", "h:1", w, "", nil)
		next(t, fast, 5*time.Second, "fast reader", func(s discovery.Snapshot) bool { return s.Revision == last })
	}
	if s := get(t, c, "orders"); s.Revision != last || weightOf(s, "a") != 20 {
		t.Fatalf("Get = %s, want weight 20 at %d", describe(s), last)
	}
	select {
	case s := <-ch:
		if s.Revision != last || weightOf(s, "a") != 20 {
			t.Fatalf("slow reader got %s, want the latest (weight 20 at %d)", describe(s), last)
		}
	default:
		t.Fatalf("slow reader has no snapshot")
	}
	select {
	case s := <-ch:
		t.Fatalf("slow reader got a second snapshot %s", describe(s))
	default:
	}
}

func TestSubscribeClosesWithContext(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	c := startCache(t, e.Client(t), discovery.Config{})
	ctx, cancel := context.WithCancel(t.Context())
	ch, err := c.Subscribe(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	next(t, ch, 5*time.Second, "first snapshot", func(discovery.Snapshot) bool { return true })
	cancel()
	select {
	case s, open := <-ch:
		if open {
			t.Fatalf("got %s after cancel, want the channel closed", describe(s))
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("channel not closed 5s after its context ended")
	}
}
