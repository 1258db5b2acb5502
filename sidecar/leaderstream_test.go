package sidecar

import (
	"context"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/election"
)

// TestLeaderWatchStaleDuringOutage: while the daemon's link to etcd is
// blackholed, `leader --watch` shows the last leader again marked stale
// (within the liveness bound of 3 s), and unmarked once etcd answers.
func TestLeaderWatchStaleDuringOutage(t *testing.T) {
	o := blackholed(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	l, err := election.Campaign(ctx, o.seed, election.Config{Prefix: "/sidecar/elections/primary", TTL: 30 * time.Second}, "node-x", false)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Resign(context.Background()) })
	r := startDaemon(t, coordConfig(t, o.endpoint))
	w, err := r.cli.WatchLeader(t.Context(), "primary")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	lines := make(chan api.Leader, 16)
	go func() {
		for {
			l, err := w.Next()
			if err != nil {
				close(lines)
				return
			}
			lines <- l
		}
	}()
	want := func(stale bool, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		select {
		case got, ok := <-lines:
			if !ok || got.Leader == nil || *got.Leader != "node-x" || got.Fence != l.Fence() || got.Stale != stale {
				t.Fatalf("watch line %+v (open %v), want node-x at fence %d, stale %v", got, ok, l.Fence(), stale)
			}
		case <-time.After(within):
			t.Fatalf("no watch line with stale %v within %s", stale, within)
		}
		return time.Since(start)
	}
	want(false, 5*time.Second)
	o.cut()
	down := want(true, 4*time.Second)
	time.Sleep(500 * time.Millisecond)
	o.heal()
	up := want(false, 2*time.Second)
	t.Logf("stale shown %s after the cut, cleared %s after the heal", down, up)
	select {
	case got := <-lines:
		t.Fatalf("extra line %+v", got)
	case <-time.After(300 * time.Millisecond):
	}
}
