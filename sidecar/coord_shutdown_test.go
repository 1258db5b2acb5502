package sidecar

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/client"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// leaseOf returns the lease of key in etcd.
func leaseOf(t *testing.T, cli *clientv3.Client, key string) clientv3.LeaseID {
	t.Helper()
	resp, err := cli.Get(t.Context(), key)
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease == 0 {
		t.Fatalf("key %s: %v %v, want it under a lease", key, resp, err)
	}
	return clientv3.LeaseID(resp.Kvs[0].Lease)
}

// waitLost waits until h has ended and returns how it was lost.
func waitLost(t *testing.T, h *client.HoldStream, within time.Duration) *client.LostError {
	t.Helper()
	select {
	case <-h.Done():
	case <-time.After(within):
		t.Fatalf("hold %+v still held after %s", h.Event(), within)
	}
	var le *client.LostError
	if !errors.As(h.Err(), &le) || !errors.Is(h.Err(), client.ErrLost) {
		t.Fatalf("hold %+v ended with %v, want a lost event", h.Event(), h.Err())
	}
	return le
}

// runLogged runs a daemon that logs into logs, until the test ends, and
// waits until it is ready; stop cancels Run and returns its result.
func runLogged(t *testing.T, cfg Config, logs *etcdtest.LogBuffer) (stop func() error) {
	t.Helper()
	d, err := New(cfg, logs.Logger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var runErr error
	go func() { runErr = d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	<-d.Ready()
	return func() error {
		cancel()
		select {
		case <-done:
			return runErr
		case <-time.After(15 * time.Second):
			t.Fatal("Run did not return within 15s")
			return nil
		}
	}
}

// TestShutdownReleasesHolds: stopping the daemon (what SIGTERM does: Run's
// context ends) tells every holder why, releases the lock and resigns the
// election so that their keys and leases are gone from etcd before Run
// returns, answers a waiting caller 503 and ends leader watches; all of it
// before the local API stops.
func TestShutdownReleasesHolds(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	cfg := coordConfig(t, e.ClientURL)
	logs := &etcdtest.LogBuffer{}
	stop := runLogged(t, cfg, logs)
	c := client.New(cfg.SocketPath())
	lk, err := c.Lock(t.Context(), "job", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Close()
	el, err := c.Campaign(t.Context(), "primary", "node-a", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer el.Close()
	waiter := lockAsync(t.Context(), c, "job")
	w, err := c.WatchLeader(t.Context(), "primary")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if l, err := w.Next(); err != nil || l.Leader == nil {
		t.Fatalf("watch: %+v %v", l, err)
	}
	leases := []clientv3.LeaseID{leaseOf(t, cli, lk.Event().Key), leaseOf(t, cli, el.Event().Key)}
	etcdtest.Eventually(t, 5*time.Second, "second caller waiting", func() error {
		if keysUnder(t, cli, "/sidecar/locks/job/") != 2 {
			return errors.New("not yet")
		}
		return nil
	})

	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	for _, h := range []*client.HoldStream{lk, el} {
		if le := waitLost(t, h, 5*time.Second); le.Reason != api.ReasonShutdown {
			t.Errorf("%s lost for %q, want %q", le.Name, le.Reason, api.ReasonShutdown)
		}
	}
	var ae *client.APIError
	if res := <-waiter; !errors.As(res.err, &ae) || ae.StatusCode != http.StatusServiceUnavailable || !strings.Contains(ae.Message, "shutting down") {
		t.Errorf("waiting caller: %v, want 503 saying the sidecar shuts down", res.err)
	}
	if l, err := w.Next(); !errors.Is(err, client.ErrDaemonGone) {
		t.Errorf("leader watch after shutdown: %+v %v, want ErrDaemonGone", l, err)
	}
	checkReleased(t, cli, leases)
	assertOrder(t, logs.String(), "why=shutdown", `part="locks and elections"`, `part="local api"`, `part="etcd client"`)
}

// checkReleased fails unless etcd has no key under /sidecar/ and none of
// leases.
func checkReleased(t *testing.T, cli *clientv3.Client, leases []clientv3.LeaseID) {
	t.Helper()
	if n := keysUnder(t, cli, "/sidecar/"); n != 0 {
		t.Errorf("%d keys left under /sidecar/ after shutdown", n)
	}
	for _, id := range leases {
		if ttl, err := cli.TimeToLive(t.Context(), id); err != nil || ttl.TTL != -1 {
			t.Errorf("lease %x after shutdown: %+v %v, want revoked", id, ttl, err)
		}
	}
}

// TestHoldLostWhileEtcdSilent: with the link to etcd blackholed, the holder
// is told the lock is lost by the sidecar's own deadline, within the TTL
// of the last keep-alive and while etcd still has the holder's key, so
// that nobody else can hold the lock yet; the loss is counted and the hold
// leaves the status.
func TestHoldLostWhileEtcdSilent(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	p := etcdtest.StartProxy(t, e.ClientURL)
	seed := e.Client(t)
	cfg := coordConfig(t, p.URL())
	r := startDaemon(t, cfg)
	ctx := t.Context()
	lk, err := r.cli.Lock(ctx, "job", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Close()
	key := lk.Event().Key
	p.Blackhole()
	defer p.Heal()
	cut := time.Now()
	le := waitLost(t, lk, 3*cfg.Coordination.TTL)
	told := time.Since(cut)
	resp, err := seed.Get(ctx, key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("told after %s, when etcd had already dropped the key (%v %v): another holder could have had the lock", told, resp, err)
	}
	t.Logf("holder told after %s: %s", told, le.Reason)
	if told > cfg.Coordination.TTL || le.Reason == "" || le.Fence != lk.Event().Fence {
		t.Errorf("told after %s (TTL %s) with %+v", told, cfg.Coordination.TTL, le)
	}
	if st, err := r.cli.Status(ctx); err != nil || len(st.Locks) != 0 {
		t.Errorf("status locks after the loss: %+v %v, want none", st.Locks, err)
	}
	m := get(t, r.cli, "/metrics", http.StatusOK)
	if v := metricValue(m, `sidecar_coordination_lost_total{kind="lock",reason="session"}`); v != 1 {
		t.Errorf(`sidecar_coordination_lost_total{kind="lock",reason="session"} = %v, want 1`, v)
	}
}

// TestHoldLostWhenKeyDeleted: someone deletes the holder's key in etcd:
// the holder is told, with the reason, and the loss is counted as such.
func TestHoldLostWhenKeyDeleted(t *testing.T) {
	r, cli := coordDaemon(t)
	ctx := t.Context()
	lk, err := r.cli.Lock(ctx, "job", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Close()
	if _, err := cli.Delete(ctx, lk.Event().Key); err != nil {
		t.Fatal(err)
	}
	if le := waitLost(t, lk, 5*time.Second); !strings.Contains(le.Reason, "deleted") {
		t.Errorf("lost for %q, want the key's deletion", le.Reason)
	}
	m := get(t, r.cli, "/metrics", http.StatusOK)
	if v := metricValue(m, `sidecar_coordination_lost_total{kind="lock",reason="deleted"}`); v != 1 {
		t.Errorf(`sidecar_coordination_lost_total{kind="lock",reason="deleted"} = %v, want 1`, v)
	}
}

// TestWaitSurvivesSessionLoss: a caller waits for a lock that another
// client holds; the daemon's link is blackholed past the waiting session's
// deadline, as a long etcd leader election would leave it, then healed.
// Nothing was held and the caller asked to wait, so the wait goes on with
// a new session instead of failing; once the other holder unlocks, the
// caller holds the lock.
func TestWaitSurvivesSessionLoss(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	p := etcdtest.StartProxy(t, e.ClientURL)
	seed := e.Client(t)
	cfg := coordConfig(t, p.URL())
	r := startDaemon(t, cfg)
	ctx := t.Context()
	sess, err := concurrency.NewSession(seed, concurrency.WithTTL(30))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	other := concurrency.NewMutex(sess, "/sidecar/locks/job")
	if err := other.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	got := lockAsync(ctx, r.cli, "job")
	etcdtest.Eventually(t, 5*time.Second, "caller waiting in etcd", func() error {
		if n := keysUnder(t, seed, "/sidecar/locks/job/"); n != 2 {
			return fmt.Errorf("%d keys under the lock", n)
		}
		return nil
	})
	p.Blackhole()
	time.Sleep(cfg.Coordination.TTL + 500*time.Millisecond) // past the waiting session's deadline
	p.Heal()
	select {
	case res := <-got:
		t.Fatalf("the wait ended while the lock was held: %v", res.err)
	case <-time.After(3 * time.Second):
	}
	if err := other.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-got:
		if res.err != nil {
			t.Fatalf("caller: %v", res.err)
		}
		res.h.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("caller not served within 10s of the unlock")
	}
}
