package registry_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/naming/endpoints"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
	"github.com/sidecar-dev/sidecar/registry"
)

func TestNewDefaults(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	cfg := testConfig("")
	cfg.TTL = 2500 * time.Millisecond // rounded up to 3s
	h := start(t, cli, cfg)
	st, _ := waitState(t, h, 5*time.Second, "registered", isRegistered)
	if st.ID != "orders-web-1-8080" || st.Key != prefix+"/orders/orders-web-1-8080" {
		t.Errorf("default ID/key = %q %q, want orders-web-1-8080", st.ID, st.Key)
	}
	if st.CheckState != registry.CheckNone {
		t.Errorf("CheckState = %q without a check", st.CheckState)
	}
	ttl, err := cli.TimeToLive(t.Context(), clientv3.LeaseID(st.LeaseID))
	if err != nil || ttl.GrantedTTL != 3 {
		t.Errorf("granted TTL = %v (%v), want 3s", ttl, err)
	}
	if err := h.Run(t.Context()); !errors.Is(err, registry.ErrRunTwice) {
		t.Errorf("second Run: %v, want ErrRunTwice", err)
	}
}

// TestRegisterEtcdctl registers against an etcd server process and reads
// the record with etcdctl and with etcd's own naming endpoints manager.
func TestRegisterEtcdctl(t *testing.T) {
	s := etcdtest.StartServer(t, etcdtest.ServerOptions{})
	cli := newClient(t, s.ClientURL)
	cfg := testConfig("orders-1")
	began := time.Now()
	h := start(t, cli, cfg)
	st, _ := waitState(t, h, 5*time.Second, "registered", isRegistered)
	t.Logf("registered %s after start", time.Since(began).Round(time.Millisecond))
	if st.LeaseID == 0 || st.TTLRemaining <= 0 || st.TTLRemaining > 2*time.Second {
		t.Errorf("status %+v: want a lease with 0 < ttl_remaining <= 2s", st)
	}

	out, err := etcdtest.Etcdctl(t, s.ClientURL, "get", keyOf(cfg), "--print-value-only")
	if err != nil {
		t.Fatal(err)
	}
	want := `{"Op":0,"Addr":"10.0.0.5:8080","Metadata":{"id":"orders-1","weight":100,"node":"web-1","metadata":{"version":"v1.4.2","zone":"a"}}}`
	if got := strings.TrimSpace(out); got != want {
		t.Errorf("etcdctl get:\n got %s\nwant %s", got, want)
	}
	rec := decode(t, []byte(strings.TrimSpace(out)))
	if rec.ID != "orders-1" || rec.Weight != 100 || rec.Node != "web-1" || !maps.Equal(rec.Metadata, cfg.Metadata) {
		t.Errorf("record %+v", rec)
	}

	mgr, err := endpoints.NewManager(cli, prefix+"/orders")
	if err != nil {
		t.Fatal(err)
	}
	eps, err := mgr.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if ep, ok := eps[keyOf(cfg)]; !ok || ep.Addr != "10.0.0.5:8080" {
		t.Errorf("endpoints manager lists %+v", eps)
	}
	if r := get(t, cli, keyOf(cfg)); r == nil || int64(r.Lease) != st.LeaseID {
		t.Errorf("key's lease = %+v, want %x", r, st.LeaseID)
	}
	waitState(t, h, 5*time.Second, "keep-alives acknowledged", func(st registry.Status) bool { return st.KeepAlives >= 2 })
}

func TestKeyDeletedByEtcdctl(t *testing.T) {
	s := etcdtest.StartServer(t, etcdtest.ServerOptions{})
	cli := newClient(t, s.ClientURL)
	cfg := testConfig("orders-1")
	h := start(t, cli, cfg)
	st0, _ := waitState(t, h, 5*time.Second, "registered", isRegistered)
	// An observer's watch times the gap between the delete and the re-put.
	wctx, wcancel := context.WithCancel(t.Context())
	defer wcancel()
	evs := stamp(wctx, s.Client(t).Watch(wctx, keyOf(cfg)))
	for i := range 3 {
		if out, err := etcdtest.Etcdctl(t, s.ClientURL, "del", keyOf(cfg)); err != nil || strings.TrimSpace(out) != "1" {
			t.Fatalf("etcdctl del: %q, %v", out, err)
		}
		deleted := time.Now()
		var rec *record
		etcdtest.Eventually(t, 3*time.Second, "key back after etcdctl del", func() error {
			if rec = get(t, cli, keyOf(cfg)); rec == nil {
				return errors.New("absent")
			}
			return nil
		})
		if int64(rec.Lease) != st0.LeaseID {
			t.Errorf("re-put with lease %x, want the live lease %x", int64(rec.Lease), st0.LeaseID)
		}
		t.Logf("del %d: key back %s after etcdctl del returned; an observer's watch saw the put %s after the delete",
			i+1, time.Since(deleted).Round(time.Millisecond), watchGap(t, evs).Round(10*time.Microsecond))
	}
	st, _ := waitState(t, h, 2*time.Second, "registered, 3 reregistrations", func(st registry.Status) bool {
		return isRegistered(st) && st.Reregistrations == 3
	})
	if st.LeaseID != st0.LeaseID {
		t.Errorf("lease changed from %x to %x", st0.LeaseID, st.LeaseID)
	}
	waitLeases(t, cli, time.Second, st0.LeaseID)
}

// stampedEvent is a watch event with the time a reader got it.
type stampedEvent struct {
	del bool
	at  time.Time
}

// stamp reads wch in a goroutine, stamping each event as it arrives, until
// ctx ends.
func stamp(ctx context.Context, wch clientv3.WatchChan) <-chan stampedEvent {
	out := make(chan stampedEvent, 100)
	go func() {
		defer close(out)
		for wr := range wch {
			now := time.Now()
			for _, ev := range wr.Events {
				select {
				case out <- stampedEvent{del: ev.Type == clientv3.EventTypeDelete, at: now}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

// watchGap reads a DELETE and then a PUT event and returns the time
// between their arrivals.
func watchGap(t *testing.T, evs <-chan stampedEvent) time.Duration {
	t.Helper()
	var deleted time.Time
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev := <-evs:
			switch {
			case ev.del:
				deleted = ev.at
			case !deleted.IsZero():
				return ev.at.Sub(deleted)
			}
		case <-timeout:
			t.Fatalf("watch: no DELETE then PUT within 5s")
		}
	}
}

func TestLeaseRevokedByOperator(t *testing.T) {
	s := etcdtest.StartServer(t, etcdtest.ServerOptions{})
	cli := newClient(t, s.ClientURL)
	cfg := testConfig("orders-1")
	h := start(t, cli, cfg)
	st0, _ := waitState(t, h, 5*time.Second, "registered", isRegistered)
	if _, err := etcdtest.Etcdctl(t, s.ClientURL, "lease", "revoke", fmt.Sprintf("%x", st0.LeaseID)); err != nil {
		t.Fatal(err)
	}
	st, d := waitState(t, h, 5*time.Second, "registered with a new lease", func(st registry.Status) bool {
		return isRegistered(st) && st.LeaseID != st0.LeaseID
	})
	t.Logf("registered with a new lease %s after etcdctl lease revoke returned", d.Round(time.Millisecond))
	if st.Reregistrations != 1 {
		t.Errorf("reregistrations = %d, want 1", st.Reregistrations)
	}
	if rec := get(t, cli, keyOf(cfg)); rec == nil || int64(rec.Lease) != st.LeaseID {
		t.Errorf("key = %+v, want lease %x", rec, st.LeaseID)
	}
	waitLeases(t, cli, time.Second, st.LeaseID)
}

// TestPartition cuts the registrar's client off from etcd for longer than
// the TTL through a proxy, which either blackholes the connections or
// drops them and refuses new ones; etcd itself stays up.
func TestPartition(t *testing.T) {
	for _, tc := range []struct {
		name string
		cut  func(*etcdtest.Proxy)
	}{
		{"blackhole", (*etcdtest.Proxy).Blackhole},
		{"drop", (*etcdtest.Proxy).Drop},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := etcdtest.StartEmbedded(t)
			direct := e.Client(t)
			p := etcdtest.StartProxy(t, e.ClientURL)
			cfg := testConfig("orders-1")
			h := start(t, newClient(t, p.URL()), cfg)
			st0, _ := waitState(t, h, 5*time.Second, "registered", isRegistered)

			tc.cut(p)
			_, d := waitState(t, h, cfg.TTL+3*time.Second, "lost", func(st registry.Status) bool {
				return st.State == registry.StateLost && st.LeaseID == 0
			})
			t.Logf("state lost %s after the partition began", d.Round(time.Millisecond))
			etcdtest.Eventually(t, cfg.TTL+3*time.Second, "key gone from etcd", func() error {
				if rec := get(t, direct, keyOf(cfg)); rec != nil {
					return fmt.Errorf("key holds %+v", rec)
				}
				return nil
			})
			if st := h.Status(); st.State != registry.StateLost || st.LastError == "" {
				t.Errorf("status while partitioned: %+v", st)
			}

			p.Heal()
			st, d := waitState(t, h, 10*time.Second, "registered again", isRegistered)
			t.Logf("registered again %s after heal", d.Round(time.Millisecond))
			if st.LeaseID == st0.LeaseID || st.Reregistrations < 1 {
				t.Errorf("after heal: lease %x (was %x), reregistrations %d", st.LeaseID, st0.LeaseID, st.Reregistrations)
			}
			if rec := get(t, direct, keyOf(cfg)); rec == nil || int64(rec.Lease) != st.LeaseID {
				t.Errorf("key after heal = %+v, want lease %x", rec, st.LeaseID)
			}
			waitLeases(t, direct, 5*time.Second, st.LeaseID)
		})
	}
}

// TestServerOutage stops the etcd process (SIGTERM, then a restart on the
// same data) or pauses it (SIGSTOP, then SIGCONT) for longer than the TTL.
func TestServerOutage(t *testing.T) {
	for _, tc := range []struct {
		name       string
		down, back func(*etcdtest.Server)
	}{
		{"stop", (*etcdtest.Server).Stop, (*etcdtest.Server).Restart},
		{"pause", (*etcdtest.Server).Pause, (*etcdtest.Server).Resume},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := etcdtest.StartServer(t, etcdtest.ServerOptions{})
			cli := newClient(t, s.ClientURL)
			cfg := testConfig("orders-1")
			h := start(t, cli, cfg)
			st0, _ := waitState(t, h, 5*time.Second, "registered", isRegistered)

			tc.down(s)
			down := time.Now()
			waitState(t, h, cfg.TTL+3*time.Second, "lost", func(st registry.Status) bool { return st.State == registry.StateLost })
			time.Sleep(time.Until(down.Add(cfg.TTL + time.Second))) // the outage lasts longer than the TTL
			restarting := time.Now()
			tc.back(s)
			st, d := waitState(t, h, 10*time.Second, "registered again", func(st registry.Status) bool {
				return isRegistered(st) && st.LeaseID != st0.LeaseID
			})
			t.Logf("registered again %s after etcd was back, %s after it was restarted or resumed (outage %s)",
				d.Round(time.Millisecond), time.Since(restarting).Round(time.Millisecond), restarting.Sub(down).Round(time.Millisecond))
			if st.Reregistrations < 1 {
				t.Errorf("reregistrations = %d", st.Reregistrations)
			}
			// After a restart etcd restores the old lease, and a paused etcd
			// may keep it a moment: the registrar revokes it.
			waitLeases(t, cli, 5*time.Second, st.LeaseID)
			if rec := get(t, cli, keyOf(cfg)); rec == nil || int64(rec.Lease) != st.LeaseID {
				t.Errorf("key after the outage = %+v, want lease %x", rec, st.LeaseID)
			}
		})
	}
}

func TestGracefulExit(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	t.Run("revoke", func(t *testing.T) {
		cfg := testConfig("orders-exit")
		h := start(t, cli, cfg)
		st, _ := waitState(t, h, 5*time.Second, "registered", isRegistered)
		if err := h.stop(t); err != nil {
			t.Fatalf("Run returned %v", err)
		}
		if rec := get(t, cli, keyOf(cfg)); rec != nil {
			t.Errorf("key still there right after Run returned: %+v", rec)
		}
		for _, id := range leases(t, cli) {
			if id == st.LeaseID {
				t.Errorf("lease %x not revoked", id)
			}
		}
		if st := h.Status(); st.State != registry.StateDeregistered || st.LeaseID != 0 {
			t.Errorf("status after Run: %+v", st)
		}
	})
	t.Run("drain", func(t *testing.T) {
		cfg := testConfig("orders-drain")
		cfg.DrainTimeout = 2 * time.Second
		h := start(t, cli, cfg)
		waitState(t, h, 5*time.Second, "registered", isRegistered)
		cancelled := time.Now()
		h.cancel()
		etcdtest.Eventually(t, 1500*time.Millisecond, "weight 0 while draining", func() error {
			if rec := get(t, cli, keyOf(cfg)); rec == nil || rec.Weight != 0 {
				return fmt.Errorf("key holds %+v", rec)
			}
			return nil
		})
		select {
		case <-h.done:
			t.Fatalf("Run returned before the drain timeout")
		default:
		}
		if st := h.Status(); st.Weight != 0 || st.State != registry.StateRegistered {
			t.Errorf("status while draining: %+v", st)
		}
		if err := h.stop(t); err != nil {
			t.Fatalf("Run returned %v", err)
		}
		if d := time.Since(cancelled); d < cfg.DrainTimeout {
			t.Errorf("Run returned %s after cancel, before the %s drain", d, cfg.DrainTimeout)
		}
		if rec := get(t, cli, keyOf(cfg)); rec != nil {
			t.Errorf("key still there after the drain: %+v", rec)
		}
	})
	waitLeases(t, cli, time.Second)
}

// TestNoLeakedLeases registers and deregisters many times, and heals many
// times, and expects no lease left behind.
func TestNoLeakedLeases(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	cfg := testConfig("orders-1")
	for i := range 50 {
		h := start(t, cli, cfg)
		waitState(t, h, 5*time.Second, fmt.Sprintf("cycle %d registered", i), isRegistered)
		if err := h.stop(t); err != nil {
			t.Fatalf("cycle %d: Run returned %v", i, err)
		}
	}
	if ids := leases(t, cli); len(ids) != 0 {
		t.Fatalf("after 50 register/deregister cycles: leases %x", ids)
	}

	h := start(t, cli, cfg)
	st, _ := waitState(t, h, 5*time.Second, "registered", isRegistered)
	var want int64 // restorations so far
	for i := range 5 {
		if _, err := cli.Revoke(t.Context(), clientv3.LeaseID(st.LeaseID)); err != nil {
			t.Fatal(err)
		}
		want++
		prev := st.LeaseID
		st, _ = waitState(t, h, 5*time.Second, "registered with a new lease", func(st registry.Status) bool {
			return isRegistered(st) && st.LeaseID != prev
		})
		if st.Reregistrations != want { // counted in the update that made it registered
			t.Errorf("revoke %d: reregistrations = %d, want %d", i, st.Reregistrations, want)
		}
		waitLeases(t, cli, time.Second, st.LeaseID)
		if _, err := cli.Delete(t.Context(), keyOf(cfg)); err != nil {
			t.Fatal(err)
		}
		want++
		etcdtest.Eventually(t, 3*time.Second, "key back", func() error {
			return keyOnLease(t, cli, keyOf(cfg), st.LeaseID)
		})
		// etcd holds the record once the registrar's write commits, before
		// the registrar reads the answer and counts the restoration: wait
		// for the count, not only the key, before the next loss or the end.
		lease := st.LeaseID
		st, _ = waitState(t, h, 3*time.Second, "restoration counted", func(st registry.Status) bool {
			return st.Reregistrations >= want
		})
		if st.Reregistrations != want || !isRegistered(st) || st.LeaseID != lease {
			t.Errorf("delete %d: status %+v, want registered on lease %x with %d reregistrations", i, st, lease, want)
		}
		waitLeases(t, cli, time.Second, st.LeaseID)
	}
	if got := h.Status().Reregistrations; got != 10 {
		t.Errorf("reregistrations = %d, want 10 (5 revokes, 5 deletes)", got)
	}
	if err := h.stop(t); err != nil {
		t.Fatalf("Run returned %v", err)
	}
	waitLeases(t, cli, time.Second)
}

func TestSetWeight(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	cfg := testConfig("orders-1")
	r, err := registry.New(cli, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.SetWeight(t.Context(), 7); !errors.Is(err, registry.ErrNotRegistered) {
		t.Fatalf("SetWeight before Run: %v, want ErrNotRegistered", err)
	}
	h := run(t, r)
	st, _ := waitState(t, h, 5*time.Second, "registered", isRegistered)
	if rec := get(t, cli, keyOf(cfg)); rec == nil || rec.Weight != 7 {
		t.Fatalf("weight stored before Run not registered: %+v", rec)
	}
	for _, w := range []int{300, 0, registry.MaxWeight, registry.MaxWeight} {
		if err := r.SetWeight(t.Context(), w); err != nil {
			t.Fatalf("SetWeight(%d): %v", w, err)
		}
		rec := get(t, cli, keyOf(cfg)) // no polling: SetWeight returned once etcd held it
		if rec == nil || rec.Weight != w || int64(rec.Lease) != st.LeaseID {
			t.Errorf("after SetWeight(%d): %+v, want lease %x", w, rec, st.LeaseID)
		}
		if got := r.Status().Weight; got != w {
			t.Errorf("Status().Weight = %d, want %d", got, w)
		}
	}
	for _, w := range []int{-1, registry.MaxWeight + 1} {
		if err := r.SetWeight(t.Context(), w); !errors.Is(err, registry.ErrInvalidWeight) {
			t.Errorf("SetWeight(%d) = %v, want ErrInvalidWeight", w, err)
		}
	}
	if rec := get(t, cli, keyOf(cfg)); rec == nil || rec.Weight != registry.MaxWeight {
		t.Errorf("bad weights changed the record: %+v", rec)
	}
}

// TestConcurrentUse reads Status and sets weights from several goroutines
// while the registrar recovers from revoked leases (run with -race).
func TestConcurrentUse(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	h := start(t, cli, testConfig("orders-1"))
	waitState(t, h, 5*time.Second, "registered", isRegistered)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	for i := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for ctx.Err() == nil {
				_ = h.Status()
				err := h.SetWeight(ctx, i*10)
				if err != nil && !errors.Is(err, registry.ErrNotRegistered) && ctx.Err() == nil {
					t.Errorf("SetWeight: %v", err)
				}
			}
		}()
	}
	for range 3 {
		st, _ := waitState(t, h, 5*time.Second, "registered", isRegistered)
		if _, err := cli.Revoke(t.Context(), clientv3.LeaseID(st.LeaseID)); err != nil {
			t.Fatal(err)
		}
		waitState(t, h, 5*time.Second, "new lease", func(s registry.Status) bool {
			return isRegistered(s) && s.LeaseID != st.LeaseID
		})
	}
	cancel()
	for range 4 {
		<-done
	}
	if err := h.stop(t); err != nil {
		t.Fatal(err)
	}
}
