package sidecar

import (
	"context"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/election"
	"github.com/sidecar-dev/sidecar/internal/liveness"
)

// leaderStream is what GET /v1/elections/{name}?watch=true sends: each
// leader obs reports, and the last one again whenever etcd stops or starts
// answering (live), marked stale while it does not. Without it a watcher
// would go on showing a leader that may be long gone while etcd is
// unreachable: Observe itself learns nothing until the link is back. The
// channel closes when obs does or ctx ends.
func leaderStream(ctx context.Context, obs <-chan *election.Leader, live *liveness.Monitor, name string) <-chan api.Leader {
	out := make(chan api.Leader)
	changed := make(chan struct{}, 1)
	if live != nil {
		go func() {
			for up := live.Up(); live.WaitForChange(ctx, up); up = !up {
				select {
				case changed <- struct{}{}:
				default: // one pending signal is enough: the reader reads Up itself
				}
			}
		}()
	}
	stale := func() bool { return live != nil && !live.Up() }
	go func() {
		defer close(out)
		var last api.Leader
		have := false
		for {
			select {
			case l, ok := <-obs:
				if !ok {
					return
				}
				last, have = toAPILeader(name, l), true
				last.Stale = stale()
			case <-changed:
				s := stale()
				if !have || s == last.Stale {
					continue
				}
				last.Stale = s
			case <-ctx.Done():
				return
			}
			select {
			case out <- last:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}
