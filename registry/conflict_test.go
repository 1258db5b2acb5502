package registry_test

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
	"github.com/sidecar-dev/sidecar/registry"
)

// maxConflictRevisions bounds how much etcd's revision may grow while two
// writers share one key: a handful of writes, not one per retry.
const maxConflictRevisions = 50

// revision returns etcd's current revision.
func revision(t *testing.T, cli *clientv3.Client) int64 {
	t.Helper()
	resp, err := cli.Get(t.Context(), "/revision-probe")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	return resp.Header.Revision
}

// holderAndLoser waits until one of a and b is registered and the other in
// conflict, and returns them in that order.
func holderAndLoser(t *testing.T, a, b *running) (holder, loser *running) {
	t.Helper()
	etcdtest.Eventually(t, 5*time.Second, "one registered, one in conflict", func() error {
		sa, sb := a.Status(), b.Status()
		switch {
		case isRegistered(sa) && sb.State == registry.StateConflict:
			holder, loser = a, b
		case isRegistered(sb) && sa.State == registry.StateConflict:
			holder, loser = b, a
		default:
			return fmt.Errorf("states %s and %s", sa.State, sb.State)
		}
		return nil
	})
	return holder, loser
}

// TestSameIDConflict runs two registrars with the same Config on one etcd:
// exactly one holds the key, the other reports the conflict without
// writing, and takes over once the holder stops.
func TestSameIDConflict(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	direct := e.Client(t)
	cfg := testConfig("orders-1")
	a := start(t, newClient(t, e.ClientURL), cfg)
	b := start(t, newClient(t, e.ClientURL), cfg)
	holder, loser := holderAndLoser(t, a, b)
	rev0 := revision(t, direct)

	// For 6s (three TTLs): one holder, the key on its lease, the other in
	// conflict keeping its own lease alive.
	ls0 := loser.Status()
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) {
		hs, ls := holder.Status(), loser.Status()
		if !isRegistered(hs) || ls.State != registry.StateConflict {
			t.Fatalf("states: holder %s, other %s (%s)", hs.State, ls.State, ls.LastError)
		}
		if rec := get(t, direct, keyOf(cfg)); rec == nil || int64(rec.Lease) != hs.LeaseID {
			t.Fatalf("key = %+v, want the holder's lease %x", rec, hs.LeaseID)
		}
		time.Sleep(100 * time.Millisecond)
	}
	grown := revision(t, direct) - rev0
	t.Logf("revision grew by %d in 6s of conflict", grown)
	if grown >= maxConflictRevisions {
		t.Errorf("revision grew by %d in 6s, want < %d: the registrars fight over the key", grown, maxConflictRevisions)
	}
	hs, ls := holder.Status(), loser.Status()
	if want := fmt.Sprintf("node %q under lease %x", cfg.Node, hs.LeaseID); !strings.Contains(ls.LastError, want) {
		t.Errorf("LastError %q does not name the holder (%s)", ls.LastError, want)
	}
	if ls.LeaseID == 0 || ls.LeaseID == hs.LeaseID || ls.KeepAlives <= ls0.KeepAlives {
		t.Errorf("the other registrar's lease: %+v, want its own, kept alive", ls)
	}
	if err := loser.SetWeight(t.Context(), 5); !errors.Is(err, registry.ErrNotRegistered) {
		t.Errorf("SetWeight in conflict = %v, want ErrNotRegistered", err)
	}

	if err := holder.stop(t); err != nil {
		t.Fatalf("holder's Run: %v", err)
	}
	st, d := waitState(t, loser, 3*time.Second, "the other registered", isRegistered)
	t.Logf("the other registrar took the key %s after the holder stopped", d.Round(time.Millisecond))
	if rec := get(t, direct, keyOf(cfg)); rec == nil || int64(rec.Lease) != st.LeaseID || rec.Weight != 5 {
		t.Errorf("key = %+v, want lease %x and the weight set while in conflict", rec, st.LeaseID)
	}
	if st.LastError != "" || st.LeaseID != ls.LeaseID {
		t.Errorf("after taking over: %+v", st)
	}
	waitLeases(t, direct, time.Second, st.LeaseID)
}

// TestForeignRecord: a record written with etcdctl (with or without a
// lease) is never overwritten; the registrar reports whose it is and
// registers once it is gone.
func TestForeignRecord(t *testing.T) {
	s := etcdtest.StartServer(t, etcdtest.ServerOptions{})
	cli := newClient(t, s.ClientURL)
	cfg := testConfig("orders-1")
	cfg.TTL = 5 * time.Second // the test asserts the lease is kept: no loss to a loaded machine
	key := keyOf(cfg)
	etcdctl := func(args ...string) string {
		t.Helper()
		out, err := etcdtest.Etcdctl(t, s.ClientURL, args...)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}

	// A plain value without a lease: held until someone deletes it.
	etcdctl("put", key, "10.0.0.9:8080")
	h := start(t, cli, cfg)
	st, _ := waitState(t, h, 5*time.Second, "conflict", func(st registry.Status) bool { return st.State == registry.StateConflict })
	if !strings.Contains(st.LastError, "not a sidecar record") || !strings.Contains(st.LastError, "without a lease") {
		t.Errorf("LastError = %q", st.LastError)
	}
	if got := etcdctl("get", key, "--print-value-only"); got != "10.0.0.9:8080" {
		t.Errorf("foreign value overwritten: %q", got)
	}
	etcdctl("del", key)
	st, _ = waitState(t, h, 3*time.Second, "registered after etcdctl del", isRegistered)

	// Our record overwritten by another writer's record on its own lease:
	// not written back while that lease lives.
	lease := strings.Fields(etcdctl("lease", "grant", "30"))[1] // "lease 694d... granted with TTL(30s)"
	foreign := `{"Op":0,"Addr":"10.0.0.9:8080","Metadata":{"id":"orders-1","weight":100,"node":"web-9","metadata":{}}}`
	rev0 := revision(t, cli)
	etcdctl("put", key, foreign, "--lease="+lease)
	st, _ = waitState(t, h, 3*time.Second, "conflict", func(st registry.Status) bool { return st.State == registry.StateConflict })
	id, err := strconv.ParseInt(lease, 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("node %q under lease %x", "web-9", id); !strings.Contains(st.LastError, want) {
		t.Errorf("LastError %q does not name %s", st.LastError, want)
	}
	time.Sleep(2 * time.Second) // a TTL: a registrar that fights writes back within this
	if got := etcdctl("get", key, "--print-value-only"); got != foreign {
		t.Errorf("foreign record overwritten: %q", got)
	}
	if grown := revision(t, cli) - rev0; grown > 1 {
		t.Errorf("revision grew by %d after the foreign put, want 1 (the put itself)", grown)
	}
	etcdctl("lease", "revoke", lease)
	st2, d := waitState(t, h, 3*time.Second, "registered after the foreign lease was revoked", isRegistered)
	t.Logf("registered %s after etcdctl lease revoke returned", d.Round(time.Millisecond))
	if st2.LeaseID != st.LeaseID || st2.Reregistrations != 1 {
		t.Errorf("after the conflict: %+v; want the same lease, one re-registration", st2)
	}
}

// TestConflictCriticalAndStop: a registrar that finds another's record
// neither deletes it when its check turns critical nor when it stops
// (drain included); the holder is never disturbed.
func TestConflictCriticalAndStop(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	cfg := testConfig("orders-1")
	holder := start(t, cli, cfg)
	hs, _ := waitState(t, holder, 5*time.Second, "registered", isRegistered)

	other := cfg
	other.Node = "web-2"
	other.DrainTimeout = time.Second
	target := execTarget(t)
	other.Check = target.check
	other.Check.Interval, other.Check.Timeout, other.Check.FailuresBeforeCritical = 100*time.Millisecond, time.Second, 1
	target.set(true)
	o := start(t, newClient(t, e.ClientURL), other)
	waitState(t, o, 5*time.Second, "conflict", func(st registry.Status) bool { return st.State == registry.StateConflict })
	target.set(false)
	waitState(t, o, 5*time.Second, "critical", func(st registry.Status) bool { return st.State == registry.StateCritical })
	time.Sleep(500 * time.Millisecond) // five more critical checks
	target.set(true)
	waitState(t, o, 5*time.Second, "conflict again", func(st registry.Status) bool { return st.State == registry.StateConflict })
	if err := o.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	rec := get(t, cli, keyOf(cfg))
	if rec == nil || int64(rec.Lease) != hs.LeaseID || rec.Node != cfg.Node || rec.Weight != cfg.Weight {
		t.Fatalf("holder's record after the other's critical check and stop: %+v", rec)
	}
	if st := holder.Status(); !isRegistered(st) || st.Reregistrations != 0 || st.LeaseID != hs.LeaseID {
		t.Errorf("holder disturbed: %+v", st)
	}
	waitLeases(t, cli, time.Second, hs.LeaseID)
}
