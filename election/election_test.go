package election_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/election"
	"github.com/sidecar-dev/sidecar/internal/etcdclient"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
	"github.com/sidecar-dev/sidecar/internal/lease"
	"github.com/sidecar-dev/sidecar/internal/lease/leasetest"
)

func TestMain(m *testing.M) { etcdtest.RunWithLeakCheck(m, 10*time.Second) }

const (
	prefix = "/sidecar/elections/nightly"
	ttl    = 2 * time.Second
)

var cfg = election.Config{Prefix: prefix, TTL: ttl}

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

// campaign wins the election with value within 10s; it resigns at cleanup.
func campaign(t *testing.T, cli *clientv3.Client, value string) *election.Leadership {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	l, err := election.Campaign(ctx, cli, cfg, value, false)
	if err != nil {
		t.Fatalf("campaign %q: %v", value, err)
	}
	t.Cleanup(func() { resign(t, l) })
	return l
}

func resign(t *testing.T, l *election.Leadership) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := l.Resign(ctx); err != nil {
		t.Errorf("resign: %v", err)
	}
}

type result struct {
	l   *election.Leadership
	err error
}

// campaigning runs a blocking Campaign in the background.
func campaigning(t *testing.T, cli *clientv3.Client, value string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		l, err := election.Campaign(ctx, cli, cfg, value, false)
		ch <- result{l, err}
	}()
	return ch
}

func await(t *testing.T, ch <-chan result, wait time.Duration) result {
	t.Helper()
	select {
	case r := <-ch:
		if r.l != nil {
			t.Cleanup(func() { resign(t, r.l) })
		}
		return r
	case <-time.After(wait):
		t.Fatalf("Campaign did not return within %s", wait)
		return result{}
	}
}

// keys lists the candidates' keys, oldest first.
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

// current is the leader now, which must be want (nil: none).
func current(t *testing.T, cli *clientv3.Client, want *election.Leader) {
	t.Helper()
	got, err := election.Current(t.Context(), cli, prefix)
	if err != nil {
		t.Fatalf("current: %v", err)
	}
	if (got == nil) != (want == nil) || got != nil && *got != *want {
		t.Fatalf("current leader %+v, want %+v", got, want)
	}
}

func TestCampaignResignHandoff(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	a, b := newClient(t, e.ClientURL), newClient(t, e.ClientURL)
	current(t, a, nil)
	la := campaign(t, a, "a")
	current(t, a, &election.Leader{Value: "a", Key: la.Key(), Fence: la.Fence()})
	ch := campaigning(t, b, "b")
	etcdtest.Eventually(t, 5*time.Second, "b waiting", keyCount(t, a, 2))
	select {
	case r := <-ch:
		t.Fatalf("b elected while a leads: %v", r.err)
	case <-time.After(200 * time.Millisecond):
	}
	resign(t, la)
	if !errors.Is(la.Err(), lease.ErrClosed) {
		t.Fatalf("a's Err after Resign: %v", la.Err())
	}
	r := await(t, ch, 2*time.Second)
	if r.err != nil {
		t.Fatalf("b: %v", r.err)
	}
	if r.l.Fence() <= la.Fence() {
		t.Fatalf("fence %d after %d", r.l.Fence(), la.Fence())
	}
	current(t, a, &election.Leader{Value: "b", Key: r.l.Key(), Fence: r.l.Fence()})
	resign(t, r.l)
	current(t, a, nil)
}

func TestTry(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	a, b := newClient(t, e.ClientURL), newClient(t, e.ClientURL)
	la := campaign(t, a, "a")
	if _, err := election.Campaign(t.Context(), b, cfg, "b", true); !errors.Is(err, election.ErrNotElected) {
		t.Fatalf("try while a leads: %v, want ErrNotElected", err)
	}
	if ks := keys(t, b); len(ks) != 1 || ks[0] != la.Key() {
		t.Fatalf("keys after a failed try: %q, want only the leader's", ks)
	}
	leases, err := b.Leases(t.Context())
	if err != nil || len(leases.Leases) != 1 {
		t.Fatalf("leases after a failed try: %+v %v, want only the leader's", leases, err)
	}
	resign(t, la)
	lb, err := election.Campaign(t.Context(), b, cfg, "b", true)
	if err != nil {
		t.Fatalf("try with no leader: %v", err)
	}
	defer resign(t, lb)
	if lb.Fence() <= la.Fence() {
		t.Fatalf("fence %d after %d", lb.Fence(), la.Fence())
	}
	current(t, a, &election.Leader{Value: "b", Key: lb.Key(), Fence: lb.Fence()})
}

func TestKeyDeletedLosesLeadership(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	l := campaign(t, newClient(t, e.ClientURL), "a")
	if _, err := e.Client(t).Delete(t.Context(), l.Key()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Lost():
	case <-time.After(2 * time.Second):
		t.Fatal("leadership not lost when its key was deleted")
	}
	if !errors.Is(l.Err(), lease.ErrKeyDeleted) {
		t.Fatalf("Err = %v, want ErrKeyDeleted", l.Err())
	}
}

// TestCandidateLostStopsWaiting: a candidate whose session is lost while
// it waits stops waiting.
func TestCandidateLostStopsWaiting(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	admin := e.Client(t)
	l := campaign(t, newClient(t, e.ClientURL), "a")
	ch := campaigning(t, newClient(t, e.ClientURL), "b")
	etcdtest.Eventually(t, 5*time.Second, "b waiting", keyCount(t, admin, 2))
	waiter := keys(t, admin)[1]
	id, err := strconv.ParseInt(waiter[strings.LastIndex(waiter, "/")+1:], 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Revoke(t.Context(), clientv3.LeaseID(id)); err != nil {
		t.Fatal(err)
	}
	if r := await(t, ch, 2*time.Second); !errors.Is(r.err, lease.ErrExpired) {
		t.Fatalf("candidate: %v, want its session's loss", r.err)
	}
	if l.Err() != nil {
		t.Fatalf("leader lost: %v", l.Err())
	}
}

func TestEtcdctlInterop(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := newClient(t, e.ClientURL)
	t.Run("etcdctl leads", func(t *testing.T) {
		p := leasetest.StartEtcdctl(t, e.ClientURL, "elect", prefix, "ctl")
		key, ok := p.Line(10 * time.Second)
		if !ok || !strings.HasPrefix(key, prefix+"/") {
			t.Fatalf("etcdctl elect printed %q, %v", key, ok)
		}
		if l, err := election.Current(t.Context(), cli, prefix); err != nil || l == nil || l.Value != "ctl" || l.Key != key {
			t.Fatalf("current leader %+v, %v; want etcdctl's", l, err)
		}
		if _, err := election.Campaign(t.Context(), cli, cfg, "b", true); !errors.Is(err, election.ErrNotElected) {
			t.Fatalf("try while etcdctl leads: %v", err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 700*time.Millisecond)
		defer cancel()
		if _, err := election.Campaign(ctx, cli, cfg, "b", false); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("campaign while etcdctl leads: %v, want the wait to time out", err)
		}
		ch := campaigning(t, cli, "b")
		etcdtest.Eventually(t, 5*time.Second, "waiting behind etcdctl", keyCount(t, cli, 2))
		p.Stop() // etcdctl resigns
		if r := await(t, ch, 5*time.Second); r.err != nil {
			t.Fatalf("campaign after etcdctl resigned: %v", r.err)
		}
	})
	t.Run("we lead", func(t *testing.T) {
		l := campaign(t, cli, "ours")
		obs := leasetest.StartEtcdctl(t, e.ClientURL, "elect", "-l", prefix)
		if k, _ := obs.Line(10 * time.Second); k != l.Key() {
			t.Fatalf("etcdctl elect -l printed key %q, want %q", k, l.Key())
		}
		if v, _ := obs.Line(time.Second); v != "ours" {
			t.Fatalf("etcdctl elect -l printed value %q, want ours", v)
		}
		p := leasetest.StartEtcdctl(t, e.ClientURL, "elect", prefix, "ctl")
		if line, ok := p.Line(time.Second); ok {
			t.Fatalf("etcdctl elected while we lead: %q", line)
		}
		resign(t, l)
		key, ok := p.Line(5 * time.Second)
		if !ok || !strings.HasPrefix(key, prefix+"/") {
			t.Fatalf("etcdctl elect after Resign printed %q, %v", key, ok)
		}
		cur, err := election.Current(t.Context(), cli, prefix)
		if err != nil || cur == nil || cur.Key != key || cur.Value != "ctl" || cur.Fence <= l.Fence() {
			t.Fatalf("leader %+v, %v: want etcdctl's, with a fence over %d", cur, err, l.Fence())
		}
		p.Stop()
		obs.Stop()
	})
}
