// Package liveness tells, within seconds, whether etcd answers the
// sidecar. It is the daemon's one liveness signal: discovery marks its
// answers stale from it, and /v1/health, /v1/status and the metrics read it,
// so that no request path ever waits on etcd to learn whether etcd is there.
//
// A Monitor keeps one watch open on a key nobody writes, on a gRPC stream
// of its own over the client's existing connection, and asks for a
// progress notification on that stream every Interval: one small message
// each way per Interval, no new connection, no raft round. etcd counts as
// up while answers arrive on a READY connection; it counts as down when
// none arrived for Silence (a blackholed link, a SIGSTOPped member), at
// once when gRPC reports the connection failed (refused, reset), and when
// the member has no leader (the watch requires one). A member that refuses
// the watch (no read permission on the key, an auth token it does not
// know) answered, so it counts as up. It is not a health check of the
// cluster: a member that answers counts as up.
package liveness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/metadata"

	"github.com/sidecar-dev/sidecar/internal/etcdclient"
	"github.com/sidecar-dev/sidecar/internal/retry"
)

// Defaults of Config.
const (
	DefaultInterval = time.Second
	DefaultSilence  = 2 * time.Second
)

// streamTag is outgoing gRPC metadata that gives the monitor's watch a
// gRPC stream of its own (clientv3 shares one stream between watches with
// the same metadata), so progress answers are not broadcast to other
// watchers and no other watcher can delay them.
const streamTag = "sidecar-liveness"

// Config configures a Monitor.
type Config struct {
	// Key is watched and never written; a user with read access to it
	// suffices. Required; the daemon uses <namespace>/health.
	Key string
	// Interval between progress requests. Default DefaultInterval.
	Interval time.Duration
	// Silence: etcd counts as down when no answer arrived for this long.
	// Default DefaultSilence; at least Interval.
	Silence time.Duration
	Logger  *slog.Logger // nil discards; records get component=liveness
}

// State is what the monitor knows now.
type State struct {
	Up bool
	// Answered is false until etcd answered the monitor once.
	Answered bool
	// LastAnswer is when etcd last answered; zero before the first answer.
	LastAnswer time.Time
	// Since is when Up last changed (or the monitor was made).
	Since time.Time
	// Reason says why etcd counts as down; empty while up.
	Reason string
}

// Monitor follows etcd's liveness. Build it with New and call Run once;
// State, Up and WaitForChange are safe for concurrent use, also with Run.
type Monitor struct {
	cli      *clientv3.Client
	cfg      Config
	log      *slog.Logger
	answered chan struct{} // cap 1: an answer arrived

	mu      sync.Mutex
	st      State
	changed chan struct{} // closed and replaced when Up changes
}

// New validates cfg and returns a monitor; it starts nothing and contacts
// nobody. Until the first answer the state is down with a reason saying so.
func New(cli *clientv3.Client, cfg Config) (*Monitor, error) {
	if cli == nil {
		return nil, errors.New("liveness: nil etcd client")
	}
	if cfg.Key == "" {
		return nil, errors.New("liveness: empty key")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Silence <= 0 {
		cfg.Silence = DefaultSilence
	}
	cfg.Silence = max(cfg.Silence, cfg.Interval)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Monitor{
		cli: cli, cfg: cfg, log: log.With("component", "liveness"),
		answered: make(chan struct{}, 1),
		st:       State{Since: time.Now(), Reason: "waiting for etcd's first answer"},
		changed:  make(chan struct{}),
	}, nil
}

// Run follows etcd until ctx ends, then returns nil. It owns every
// goroutine it starts.
func (m *Monitor) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { m.watchdog(gctx); return nil })
	g.Go(func() error { m.followConn(gctx); return nil })
	g.Go(func() error { m.rounds(gctx); return nil })
	return g.Wait()
}

// State returns what the monitor knows now.
func (m *Monitor) State() State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st
}

// Up reports whether etcd answers.
func (m *Monitor) Up() bool { return m.State().Up }

// WaitForChange blocks until Up differs from up (true) or ctx ends
// (false), like gRPC's ClientConn.WaitForStateChange.
func (m *Monitor) WaitForChange(ctx context.Context, up bool) bool {
	for {
		m.mu.Lock()
		cur, ch := m.st.Up, m.changed
		m.mu.Unlock()
		if cur != up {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// Answered records that etcd answered just now. Components that talk to
// etcd anyway (a list, a watch response) call it, so that the one signal
// counts every answer. An answer counts only while gRPC's connection is
// READY: a stopping etcd keeps answering on streams it already has for
// seconds after it stopped taking new connections and requests.
func (m *Monitor) Answered() {
	if conn := m.cli.ActiveConnection(); conn != nil && conn.GetState() != connectivity.Ready {
		return
	}
	m.set(true, "")
	select {
	case m.answered <- struct{}{}:
	default:
	}
}

// down records that etcd counts as down, and why.
func (m *Monitor) down(reason string) { m.set(false, reason) }

func (m *Monitor) set(up bool, reason string) {
	now := time.Now()
	m.mu.Lock()
	was, first := m.st.Up, !m.st.Answered
	if up {
		m.st.Answered, m.st.LastAnswer = true, now
	}
	if was == up {
		if !up && m.st.Answered {
			m.st.Reason = reason // the newest reason; the state is unchanged
		}
		m.mu.Unlock()
		return
	}
	m.st.Up, m.st.Since, m.st.Reason = up, now, reason
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
	switch {
	case up && first:
		m.log.Debug("etcd answers") // the daemon says "etcd ready"
	case up:
		m.log.Info("etcd answers again")
	default:
		m.log.Warn("etcd does not answer", "reason", reason)
	}
}

// watchdog declares etcd down when no answer arrived for Silence. Time
// the process itself did not run (SIGSTOP, a suspended VM) is not etcd's
// silence: the monotonic clock runs on meanwhile, so when the watchdog
// finds its own ticks late by more than an Interval it gives etcd one
// more Interval to answer the probe that resumes with the process.
func (m *Monitor) watchdog(ctx context.Context) {
	t := time.NewTimer(m.cfg.Silence)
	defer t.Stop()
	tick := time.NewTicker(m.cfg.Interval / 2)
	defer tick.Stop()
	lastTick := time.Now()
	paused := func(now time.Time) bool { return now.Sub(lastTick) > m.cfg.Interval+m.cfg.Interval/2 }
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.answered:
			t.Reset(m.cfg.Silence)
		case now := <-tick.C:
			if paused(now) {
				t.Reset(m.cfg.Interval)
			}
			lastTick = now
		case now := <-t.C:
			if paused(now) {
				lastTick = now
				t.Reset(m.cfg.Interval)
				continue
			}
			m.down(fmt.Sprintf("no answer from etcd for %s", m.cfg.Silence))
			t.Reset(m.cfg.Interval) // say it again with the newest reason, cheaply
		}
	}
}

// followConn declares etcd down at once when gRPC reports that the
// connection failed; a connection coming back counts only once etcd
// answers on it.
func (m *Monitor) followConn(ctx context.Context) {
	conn := m.cli.ActiveConnection()
	if conn == nil {
		return
	}
	for s := conn.GetState(); ; s = conn.GetState() {
		if s == connectivity.TransientFailure {
			m.down("cannot connect to etcd (gRPC connection " + s.String() + ")")
		}
		if !conn.WaitForStateChange(ctx, s) {
			return
		}
	}
}

// rounds opens the watch again after each failure, until ctx ends.
func (m *Monitor) rounds(ctx context.Context) {
	bo := retry.Backoff{Base: 100 * time.Millisecond, Max: m.cfg.Interval}
	for ctx.Err() == nil {
		start := time.Now()
		err := m.round(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > m.cfg.Silence {
			bo.Reset()
		}
		m.log.Debug("liveness watch ended; opening it again", "err", err)
		retry.Sleep(ctx, bo.Next())
	}
}

// round opens the watch and asks for progress on its stream every
// Interval, until the watch fails, stays silent for Silence, or ctx ends;
// it returns why it ended. Every response on the watch, created or
// progress, is an answer. A silent round is not trusted to recover: after
// etcd restarts, clientv3 resumes the watch on a new stream whose progress
// requests may go unanswered, so the next round opens a fresh one.
func (m *Monitor) round(ctx context.Context) error {
	sctx, cancel := context.WithCancel(streamContext(ctx))
	wch := m.cli.Watch(sctx, m.cfg.Key, clientv3.WithCreatedNotify())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); m.probe(sctx) }()
	defer func() { cancel(); wg.Wait() }()
	last := time.Now()
	check := time.NewTicker(m.cfg.Interval)
	defer check.Stop()
	for {
		var resp clientv3.WatchResponse
		var ok bool
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-check.C:
			if time.Since(last) > m.cfg.Silence {
				return errSilent
			}
			continue
		case resp, ok = <-wch:
		}
		switch err := resp.Err(); {
		case !ok:
			return errWatchClosed
		case etcdclient.IsRefusal(err):
			// etcd answered, refusing the watch (the key is not
			// readable by this user, or the stream's token kept being
			// refused); it is opened again each Interval instead.
			m.Answered()
			return err
		case err != nil:
			m.down(describe(err))
			return err
		}
		last = time.Now()
		m.Answered()
	}
}

var errSilent = errors.New("liveness: no answer on the watch stream")

var errWatchClosed = errors.New("liveness: watch closed")

// probe asks for a progress notification every Interval until ctx ends.
// A request that cannot be sent (the stream is reconnecting) waits, so at
// most one is outstanding.
func (m *Monitor) probe(ctx context.Context) {
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := m.cli.RequestProgress(ctx); err != nil && ctx.Err() == nil {
			m.log.Debug("progress request failed", "err", err)
		}
	}
}

// streamContext tags ctx so that the monitor's watch has a gRPC stream of
// its own, and requires a leader, so that a member cut off from its
// cluster cancels the watch.
func streamContext(ctx context.Context) context.Context {
	return clientv3.WithRequireLeader(metadata.AppendToOutgoingContext(ctx, streamTag, "1"))
}

// describe words a watch failure for people.
func describe(err error) string {
	if errors.Is(err, rpctypes.ErrNoLeader) {
		return "the etcd member has no leader"
	}
	return "etcd watch failed: " + err.Error()
}
