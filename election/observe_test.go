package election_test

import (
	"context"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/election"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// next is Observe's next report.
func next(t *testing.T, ch <-chan *election.Leader) *election.Leader {
	t.Helper()
	select {
	case l, ok := <-ch:
		if !ok {
			t.Fatal("Observe's channel closed")
		}
		return l
	case <-time.After(5 * time.Second):
		t.Fatal("no report from Observe within 5s")
		return nil
	}
}

func wantLeader(t *testing.T, got *election.Leader, l interface {
	Key() string
	Fence() int64
}, value string) {
	t.Helper()
	want := election.Leader{Value: value, Key: l.Key(), Fence: l.Fence()}
	if got == nil || *got != want {
		t.Fatalf("observed %+v, want %+v", got, want)
	}
}

func wantNone(t *testing.T, got *election.Leader) {
	t.Helper()
	if got != nil {
		t.Fatalf("observed %+v, want no leader", got)
	}
}

// TestObserveNoLeaderBetween: the observer hears "no leader" whenever the
// leader's key goes with no candidate behind it, by resignation or by its
// lease's end, and hears each new leader.
func TestObserveNoLeaderBetween(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := newClient(t, e.ClientURL)
	ctx, cancel := context.WithCancel(t.Context())
	ch := election.Observe(ctx, cli, prefix)
	wantNone(t, next(t, ch))

	a := campaign(t, cli, "a")
	wantLeader(t, next(t, ch), a, "a")
	resign(t, a)
	wantNone(t, next(t, ch))

	b := campaign(t, cli, "b")
	wantLeader(t, next(t, ch), b, "b")
	if _, err := e.Client(t).Revoke(t.Context(), b.Lease()); err != nil {
		t.Fatal(err)
	}
	wantNone(t, next(t, ch))

	c := campaign(t, cli, "c")
	wantLeader(t, next(t, ch), c, "c")
	if c.Fence() <= b.Fence() || b.Fence() <= a.Fence() {
		t.Fatalf("fences %d, %d, %d do not increase", a.Fence(), b.Fence(), c.Fence())
	}
	cancel()
	select {
	case l, ok := <-ch:
		if ok {
			t.Fatalf("report after cancel: %+v", l)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("channel open 2s after ctx ended")
	}
}

// TestObserveThroughOutage: changes made while the observer's link to etcd
// is down are reported once it is back.
func TestObserveThroughOutage(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	p := etcdtest.StartProxy(t, e.ClientURL)
	cli := newClient(t, e.ClientURL)
	ch := election.Observe(t.Context(), newClient(t, p.URL()), prefix)
	wantNone(t, next(t, ch))
	a := campaign(t, cli, "a")
	wantLeader(t, next(t, ch), a, "a")

	p.Drop()
	resign(t, a)
	b := campaign(t, cli, "b")
	if _, err := cli.Compact(t.Context(), b.Fence()); err != nil { // the missed changes are gone
		t.Fatal(err)
	}
	p.Heal()
	got := next(t, ch)
	if got == nil { // "no leader" may come first if the missed changes are replayed
		got = next(t, ch)
	}
	wantLeader(t, got, b, "b")
	select {
	case l := <-ch:
		t.Fatalf("report after catching up: %+v", l)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestObserveHandOver: when the leader's key goes with a candidate already
// waiting behind it, the observer hears "no leader", then the new leader;
// a waiting candidate's key alone changes nothing.
func TestObserveHandOver(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := newClient(t, e.ClientURL)
	ch := election.Observe(t.Context(), cli, prefix)
	wantNone(t, next(t, ch))
	a := campaign(t, cli, "a")
	wantLeader(t, next(t, ch), a, "a")

	waiting := campaigning(t, cli, "b")
	select {
	case l := <-ch:
		t.Fatalf("report while b only waits: %+v", l)
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := e.Client(t).Revoke(t.Context(), a.Lease()); err != nil { // as when a's sidecar dies
		t.Fatal(err)
	}
	wantNone(t, next(t, ch))
	b := await(t, waiting, 5*time.Second)
	if b.err != nil {
		t.Fatalf("b's campaign: %v", b.err)
	}
	t.Cleanup(func() { resign(t, b.l) })
	wantLeader(t, next(t, ch), b.l, "b")
}
