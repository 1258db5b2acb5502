package discovery_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/discovery"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

func picks(t *testing.T, c *discovery.Cache, service string, n int) string {
	t.Helper()
	var b strings.Builder
	for range n {
		in, err := c.Pick(t.Context(), service)
		if err != nil {
			t.Fatalf("Pick: %v", err)
		}
		b.WriteString(in.ID)
	}
	return b.String()
}

// TestPickSmoothWeighted: weights 1/2/3 give exact shares, spread as
// nginx's smooth weighted round robin spreads them; weight 0 is never
// picked.
func TestPickSmoothWeighted(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	register(t, cli, "orders", "a", "h:1", 1, "", nil)
	register(t, cli, "orders", "b", "h:2", 2, "", nil)
	register(t, cli, "orders", "c", "h:3", 3, "", nil)
	register(t, cli, "orders", "d", "h:4", 0, "", nil)
	c := startCache(t, cli, discovery.Config{})
	seq := picks(t, c, "orders", 600)
	for id, want := range map[string]int{"a": 100, "b": 200, "c": 300, "d": 0} {
		if got := strings.Count(seq, id); got != want {
			t.Errorf("%s picked %d times in 600, want %d", id, got, want)
		}
	}
	// nginx's sequence for {a:1, b:2, c:3} (ties to the first by id).
	if got, want := seq[:6], "cbacbc"; got != want {
		t.Errorf("first period %q, want %q", got, want)
	}
	// Smooth: every window of one period (6 picks) holds each instance
	// exactly weight times, so no instance gets more than its share in a row.
	for i := 0; i+6 <= len(seq); i++ {
		w := seq[i : i+6]
		if strings.Count(w, "a") != 1 || strings.Count(w, "b") != 2 || strings.Count(w, "c") != 3 {
			t.Fatalf("window %d %q is not 1 a, 2 b, 3 c", i, w)
		}
	}
	if strings.Contains(seq, "ccc") || strings.Contains(seq, "bb") || strings.Contains(seq, "aa") {
		t.Errorf("runs longer than SWRR's pattern in %q", seq[:30])
	}
}

func TestPickNoInstance(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	c := startCache(t, cli, discovery.Config{})
	if _, err := c.Pick(t.Context(), "nobody"); !errors.Is(err, discovery.ErrNoInstance) {
		t.Errorf("Pick of an unknown service: %v, want ErrNoInstance", err)
	}
	register(t, cli, "drained", "a", "h:1", 0, "", nil)
	if _, err := c.Pick(t.Context(), "drained"); !errors.Is(err, discovery.ErrNoInstance) {
		t.Errorf("Pick with only weight 0: %v, want ErrNoInstance", err)
	}
	register(t, cli, "drained", "b", "h:2", 5, "", nil)
	eventually(t, 5*time.Second, "b picked", func() error {
		in, err := c.Pick(t.Context(), "drained")
		if err != nil {
			return err
		}
		if in.ID != "b" || in.Addr != "h:2" || in.Weight != 5 {
			t.Fatalf("picked %+v, want b", in)
		}
		return nil
	})
}

// TestPickCarriesStateAcrossUpdates: an update keeps each instance's
// current weight: the sequence goes on where it was instead of restarting.
func TestPickCarriesStateAcrossUpdates(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	register(t, cli, "orders", "a", "h:1", 1, "", nil)
	register(t, cli, "orders", "b", "h:2", 2, "", nil)
	register(t, cli, "orders", "c", "h:3", 3, "", nil)
	c := startCache(t, cli, discovery.Config{})
	if got := picks(t, c, "orders", 3); got != "cba" {
		t.Fatalf("first picks %q, want cba", got)
	}
	// An update that changes nothing for the picks: a new drained instance
	// and a metadata change of a.
	register(t, cli, "orders", "d", "h:4", 0, "", nil)
	rev := register(t, cli, "orders", "a", "h:1", 1, "", map[string]string{"v": "2"})
	eventually(t, 5*time.Second, "update seen", func() error {
		if get(t, c, "orders").Revision < rev {
			return errNotYet
		}
		return nil
	})
	// Carried over: the second half of the period (restarted: "cba").
	if got := picks(t, c, "orders", 3); got != "cbc" {
		t.Fatalf("picks after the update %q, want cbc (the period continued)", got)
	}
	// Removing an instance drops its state; the others keep theirs.
	rev = del(t, cli, prefix+"/orders/c")
	eventually(t, 5*time.Second, "delete seen", func() error {
		if get(t, c, "orders").Revision < rev {
			return errNotYet
		}
		return nil
	})
	seq := picks(t, c, "orders", 30)
	if strings.Count(seq, "a") != 10 || strings.Count(seq, "b") != 20 {
		t.Errorf("after deleting c: %q, want a 10 and b 20 times", seq)
	}
}
