package sidecar

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/api"
)

// releaseTimeout bounds giving up a hold (release, resign) after its
// request ended, the hold was lost, or the daemon began to stop: past it
// the key goes when its session's lease expires.
const releaseTimeout = 3 * time.Second

// Why the coordinator admits no request: the daemon stops (this also ends
// the requests admitted before), or etcd is not up yet.
var (
	errShuttingDown = errors.New("sidecar shutting down")
	errNotStarted   = errors.New("etcd not up yet")
)

// held is what a lock.Hold and an election.Leadership have in common.
type held interface {
	Key() string
	Fence() int64
	Lost() <-chan struct{}
	Err() error
	Deadline() time.Time // valid until then, unless lost sooner
}

// holding is an acquired lock or leadership and the way to give it up
// (Release or Resign).
type holding struct {
	held
	release func(context.Context) error
}

// holdEntry is one row of the table of holds.
type holdEntry struct {
	kind, name, value, key string // kind: api.KindLock or api.KindElection
	fence                  int64
	peer                   peerCred
	hasPeer                bool // the connection carried SO_PEERCRED
	since                  time.Time
	waiting                bool // in line: key and fence not known yet; since is when it began to wait
}

// coordinator serves the locks and elections of the local API and keeps
// the table of what is held through this sidecar: one hold per request,
// given up when the request ends. While Run runs it admits requests; when
// Run's ctx ends it tells every holder, gives every hold up and waits for
// the requests to finish. It is safe for concurrent use.
type coordinator struct {
	ns      string        // etcd.namespace, the root of the prefixes
	ttl     time.Duration // coordination.ttl, the sessions' TTL
	log     *slog.Logger  // component=coordination
	pkgLog  *slog.Logger  // the daemon's, for lock and election, which add their component
	metrics *coordMetrics

	mu       sync.Mutex
	cli      *clientv3.Client // set while Run runs
	stopping bool             // Run's ctx has ended: admit no more
	base     context.Context  // Run's: ends when the daemon stops
	holds    map[*holdEntry]struct{}
	reqs     sync.WaitGroup // admitted requests, and the releases they started
	admits   chan struct{}  // closed once Run admits requests
}

func newCoordinator(cfg Config, log *slog.Logger) *coordinator {
	c := &coordinator{ns: cfg.Etcd.Namespace, ttl: cfg.Coordination.TTL, log: log.With("component", "coordination"),
		pkgLog: log, holds: map[*holdEntry]struct{}{}, admits: make(chan struct{})}
	c.metrics = newCoordMetrics(c.count)
	return c
}

// Run admits requests through cli until ctx ends (Admitting is closed once
// it does; Run is called once); then every holder gets
// a lost event saying the sidecar shuts down, every hold is given up, and
// Run returns once the last request has finished (each release is bounded
// by releaseTimeout). It returns nil.
func (c *coordinator) Run(ctx context.Context, cli *clientv3.Client) error {
	c.mu.Lock()
	c.cli, c.base = cli, ctx
	c.mu.Unlock()
	close(c.admits)
	<-ctx.Done()
	c.mu.Lock()
	c.cli, c.stopping = nil, true
	n := len(c.holds)
	c.mu.Unlock()
	if n > 0 {
		c.log.Info("releasing locks and resigning elections", "holds", n)
	}
	c.reqs.Wait()
	return nil
}

// Admitting is closed once Run admits requests.
func (c *coordinator) Admitting() <-chan struct{} { return c.admits }

// begin admits a request: it returns the etcd client, a context that ends
// when the daemon stops, and the function the request calls when it has
// finished. While Run does not run it fails: with errNotStarted before
// (etcd is not up yet), errShuttingDown after.
func (c *coordinator) begin() (cli *clientv3.Client, base context.Context, end func(), err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.stopping:
		return nil, nil, nil, errShuttingDown
	case c.cli == nil:
		return nil, nil, nil, errNotStarted
	}
	c.reqs.Add(1)
	return c.cli, c.base, c.reqs.Done, nil
}

// prefix is the etcd prefix of a lock or election (SPEC §4).
func (c *coordinator) prefix(kind, name string) string {
	if kind == api.KindLock {
		return c.ns + "/locks/" + name
	}
	return c.ns + "/elections/" + name
}

// enter puts e in the table, waiting.
func (c *coordinator) enter(e *holdEntry) {
	c.mu.Lock()
	e.waiting = true
	c.holds[e] = struct{}{}
	c.mu.Unlock()
}

// won records that e's caller now holds h.
func (c *coordinator) won(e *holdEntry, h held) {
	c.mu.Lock()
	e.waiting, e.key, e.fence, e.since = false, h.Key(), h.Fence(), time.Now()
	c.mu.Unlock()
	c.metrics.acquired.WithLabelValues(e.kind).Inc()
}

func (c *coordinator) remove(e *holdEntry) {
	c.mu.Lock()
	delete(c.holds, e)
	c.mu.Unlock()
}

// count is how many holds of kind the table has now.
func (c *coordinator) count(kind string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for e := range c.holds {
		if e.kind == kind && !e.waiting {
			n++
		}
	}
	return n
}

// status lists the holds of kind, by name and then age, for /v1/status.
// It reads the table only, never etcd.
func (c *coordinator) status(kind string) []api.Hold {
	c.mu.Lock()
	var es []*holdEntry
	for e := range c.holds {
		if e.kind == kind {
			es = append(es, e)
		}
	}
	c.mu.Unlock()
	slices.SortFunc(es, func(a, b *holdEntry) int {
		return cmp.Or(cmp.Compare(a.name, b.name), a.since.Compare(b.since))
	})
	out := make([]api.Hold, 0, len(es))
	c.mu.Lock() // e's fields change when it wins
	defer c.mu.Unlock()
	for _, e := range es {
		h := api.Hold{Name: e.name, Kind: e.kind, Key: e.key, Fence: e.fence, Value: e.value, Waiting: e.waiting}
		if since := e.since.UTC().Format(time.RFC3339); e.waiting {
			h.WaitingSince = since
		} else {
			h.HeldSince = since
		}
		if e.hasPeer {
			uid := e.peer.UID
			h.PID, h.UID = e.peer.PID, &uid
		}
		out = append(out, h)
	}
	return out
}

// giveUp releases or resigns h, on a context of its own: the request's
// has ended, or is about to.
func (c *coordinator) giveUp(e *holdEntry, h holding, why string) {
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	if err := h.release(ctx); err != nil {
		c.log.Warn("give up failed; the key goes when its session expires", "kind", e.kind, "name", e.name,
			"key", e.key, "why", why, "err", err, "ttl_s", c.ttl.Seconds())
		return
	}
	c.log.Info("given up", "kind", e.kind, "name", e.name, "key", e.key, "fence", e.fence, "why", why)
}
