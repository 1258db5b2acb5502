package sidecar

import (
	"context"
	"log/slog"
	"slices"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// part is a long-lived component run in a goroutine of its own, under a
// context of its own, so that the daemon decides when each one stops.
type part struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{} // closed when run has returned
	err    error         // run's result; read after done
}

// startPart runs run in a goroutine until the part is stopped. A part that
// returns before it was asked to stop fails the daemon with its error (or
// with a plain cancellation, when it returned nil).
func startPart(name string, fail context.CancelCauseFunc, run func(context.Context) error) *part {
	ctx, cancel := context.WithCancel(context.Background())
	p := &part{name: name, cancel: cancel, done: make(chan struct{})}
	go func() {
		p.err = run(ctx)
		close(p.done)
		if ctx.Err() == nil {
			if p.err != nil {
				fail(p.err)
			} else {
				fail(context.Canceled)
			}
		}
	}()
	return p
}

// stop cancels the part and waits until it has cleaned up; nil does
// nothing.
func (p *part) stop(log *slog.Logger) {
	if p == nil {
		return
	}
	p.cancel()
	<-p.done
	if p.err != nil {
		log.Warn("stopped with an error", "part", p.name, "err", p.err)
	}
	log.Debug("stopped", "part", p.name)
}

// parts are the daemon's components, each nil until it started.
type parts struct {
	log       *slog.Logger
	api       *part
	member    *part
	cli       *clientv3.Client
	liveness  *part
	connState *part
	alarms    *part
	discovery *part
	mirrors   []*part
	reloaders []*part
	batches   *batchHub // its streams end once the mappings stopped
	registry  *part
	coord     *part // locks and elections: stopping it gives every hold up
}

// shutdown stops the daemon's parts in the one documented order (SPEC §6,
// STYLE.md): deregister (revoke the lease; the record is gone at once) →
// release locks and resign elections → stop the config mappings (their
// files stay as they are) → end discovery's streams and stop the local API
// → stop the liveness monitor → close the etcd client → stop the embedded
// member. Each step finishes before the next starts, so the
// API answers while the registration is withdrawn, and every cleanup can
// still reach etcd.
func (p *parts) shutdown() {
	p.registry.stop(p.log)
	p.coord.stop(p.log) // tells each holder, then releases locks and resigns elections
	for _, m := range slices.Concat(p.mirrors, p.reloaders) {
		m.stop(p.log)
	}
	if p.batches != nil {
		p.batches.closeAll()
	}
	p.discovery.stop(p.log)
	p.api.stop(p.log)
	p.liveness.stop(p.log)
	p.connState.stop(p.log)
	p.alarms.stop(p.log)
	if p.cli != nil {
		p.cli.Close()
		p.log.Debug("stopped", "part", "etcd client")
	}
	p.member.stop(p.log)
}
