package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/internal/record"
)

// States of the registration, in Status.State: the api package's
// registration states, defined there once.
const (
	StateStarting     = api.RegStarting     // not registered yet: no lease, no passing check, or the first write pending
	StateRegistered   = api.RegRegistered   // the record is in etcd under a live lease
	StateCritical     = api.RegCritical     // the check is critical: record withdrawn, lease kept
	StateLost         = api.RegLost         // the lease is past its deadline, or the lease or record was lost and is not back yet
	StateConflict     = api.RegConflict     // another holder's record is at the key; waiting for it to go, lease kept
	StateDeregistered = api.RegDeregistered // Run has returned
)

var (
	// ErrNotRegistered is returned by SetWeight when there is no record in
	// etcd to update; the weight is kept and written by the next
	// registration.
	ErrNotRegistered = errors.New("registry: not registered now; weight kept for the next registration")
	// ErrInvalidWeight is returned by SetWeight for a weight outside 0..MaxWeight.
	ErrInvalidWeight = fmt.Errorf("registry: weight out of range 0..%d", MaxWeight)
	// ErrRunTwice is returned by a second call of Run.
	ErrRunTwice = errors.New("registry: Run called more than once")
	// ErrClientClosed is returned by Run when the etcd client was closed
	// before Run's context ended.
	ErrClientClosed = errors.New("registry: etcd client closed")
)

// Status is a snapshot of a Registrar.
type Status struct {
	Service, ID, Addr string
	Key               string // Prefix/Service/ID
	Weight            int    // the weight registered, or to be registered; 0 while draining
	State             string // one of the State constants
	LeaseID           int64  // the lease held now; 0 when none
	// TTLRemaining is how long the lease lasts without another
	// acknowledged keep-alive, counted from the send time of the last
	// acknowledged one; 0 without a lease.
	TTLRemaining    time.Duration
	Reregistrations int64 // registrations after the first that restored a lost lease or a deleted record
	// LastError is the last error talking to etcd, or in StateConflict who
	// holds the key (node and lease); cleared by a successful registration.
	LastError  string
	CheckState string // one of the Check constants
	CheckError string // why the last check failed; empty after a pass
	KeepAlives int64  // keep-alive responses received, over all leases
}

// Registrar registers one service instance in etcd and keeps it
// registered. Build it with New and call Run once. Status and SetWeight
// are safe for concurrent use, also with Run.
//
// Its writes are conditional: it writes the key only when it is absent or
// on its own lease, so two registrars configured with one instance id do
// not overwrite each other. The one that finds another's record reports
// StateConflict, keeps its lease alive and takes the key once it is gone.
// A registrar restarted after its previous incarnation was killed (not
// stopped) therefore reports a conflict with that incarnation's record
// until its lease expires, within the TTL.
type Registrar struct {
	cli       *clientv3.Client
	cfg       Config
	key       string
	log       *slog.Logger
	probe     probe // nil: no check
	opTimeout time.Duration
	started   atomic.Bool
	kick      chan struct{} // cap 1: the desired record changed

	mu         sync.Mutex
	weight     int
	weightGen  uint64 // incremented by each SetWeight
	waiters    []*weightWaiter
	check      checkTracker
	checkErr   string
	leaseID    clientv3.LeaseID
	deadline   time.Time // the lease is lost at this time (monotonic) without another ack
	expired    bool      // deadline passed; the lease may still answer
	keepAlives int64
	present    bool    // our record is in etcd under leaseID
	holder     *holder // another holder's record is at the key, as seen under leaseID
	recovering bool    // a lease or our record was lost and not yet put back
	ever       bool    // registered at least once
	reregs     int64
	lastErr    string
	draining   bool
	done       bool
	state      string
}

type weightWaiter struct {
	gen  uint64
	done chan error // cap 1
}

// New validates cfg, fills defaults and returns a Registrar. It starts
// nothing and contacts nobody.
func New(cli *clientv3.Client, cfg Config) (*Registrar, error) {
	if cli == nil {
		return nil, errors.New("registry: nil etcd client")
	}
	idDerived := cfg.ID == ""
	cfg = cfg.withDefaults()
	if err := cfg.validate(idDerived); err != nil {
		return nil, err
	}
	cfg.TTL = (cfg.TTL + time.Second - 1).Truncate(time.Second)
	cfg.Metadata = maps.Clone(cfg.Metadata)
	if cfg.Metadata == nil {
		cfg.Metadata = map[string]string{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Registrar{
		cli: cli, cfg: cfg, key: cfg.Prefix + "/" + cfg.Service + "/" + cfg.ID,
		log:       cfg.Logger.With("component", "registry", "service", cfg.Service, "id", cfg.ID),
		probe:     newProbe(cfg.Check),
		opTimeout: min(max(cfg.TTL/3, time.Second), 5*time.Second),
		kick:      make(chan struct{}, 1),
		weight:    cfg.Weight,
		check:     checkTracker{state: CheckNone, threshold: cfg.Check.FailuresBeforeCritical},
		state:     StateStarting,
	}
	if r.probe != nil {
		r.check.state = CheckPending
	}
	return r, nil
}

// Run registers the instance and keeps it registered until ctx ends; then
// it drains (weight 0 for DrainTimeout, if set), revokes the lease, so the
// record is gone at once, and returns nil. It returns an error only when
// it could not revoke the lease at the end (the record then expires with
// the lease's TTL), when the etcd client was closed under it, or when
// called twice.
func (r *Registrar) Run(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return ErrRunTwice
	}
	defer r.update(func() {
		r.done, r.leaseID, r.present, r.holder = true, 0, false, nil
	})
	g, gctx := errgroup.WithContext(ctx)
	if r.probe != nil {
		g.Go(func() error {
			return runChecks(gctx, r.probe, r.cfg.Check.Interval, r.cfg.Check.Timeout, r.checkResult)
		})
	}
	g.Go(func() error { return r.loop(gctx) })
	return g.Wait()
}

// SetWeight changes the weight (0..MaxWeight; 0 drains). While the
// instance is registered it writes the record again under the same lease
// and returns nil once etcd holds the new value. When there is no record
// of this registrar in etcd now (before Run, before the first passing
// check, while critical, lost, in conflict or draining), or the
// registration is lost before etcd holds the new value, it returns
// ErrNotRegistered: the weight is kept and written by the next
// registration. If ctx ends first it returns ctx's error, and the
// registrar still writes the weight.
func (r *Registrar) SetWeight(ctx context.Context, w int) error {
	if w < 0 || w > MaxWeight {
		return fmt.Errorf("%w: %d", ErrInvalidWeight, w)
	}
	var ww *weightWaiter
	r.update(func() {
		r.weight = w
		r.weightGen++
		if r.state == StateRegistered && !r.draining {
			ww = &weightWaiter{gen: r.weightGen, done: make(chan error, 1)}
			r.waiters = append(r.waiters, ww)
		}
	})
	if ww == nil {
		return ErrNotRegistered
	}
	r.signalKick()
	select {
	case err := <-ww.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("registry: set weight: %w", ctx.Err())
	}
}

// Status returns a snapshot of the registration.
func (r *Registrar) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := Status{
		Service: r.cfg.Service, ID: r.cfg.ID, Addr: r.cfg.Addr, Key: r.key,
		Weight: r.weightLocked(), State: r.state, LeaseID: int64(r.leaseID),
		Reregistrations: r.reregs, LastError: r.lastErr,
		CheckState: r.check.state, CheckError: r.checkErr, KeepAlives: r.keepAlives,
	}
	if r.leaseID != 0 {
		st.TTLRemaining = max(0, time.Until(r.deadline))
	}
	return st
}

// checkResult records one health check result.
func (r *Registrar) checkResult(err error) {
	var changed bool
	var state string
	r.update(func() {
		changed = r.check.record(err)
		state = r.check.state
		r.checkErr = ""
		if err != nil {
			r.checkErr = err.Error()
		}
	})
	if changed {
		r.log.Info("health check state changed", "check", r.cfg.Check.kind(), "check_state", state, "err", err)
		r.signalKick()
	}
}

func (r *Registrar) signalKick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// update runs fn under the lock, recomputes the state, settles SetWeight
// waiters that can no longer succeed, and logs a change of state.
func (r *Registrar) update(fn func()) {
	r.mu.Lock()
	fn()
	old := r.state
	r.state = r.stateLocked()
	var fail []*weightWaiter
	if r.state != StateRegistered || r.draining {
		fail, r.waiters = r.waiters, nil
	}
	state, lease, h := r.state, r.leaseID, r.holder
	r.mu.Unlock()

	for _, w := range fail {
		w.done <- ErrNotRegistered
	}
	switch {
	case old == state:
	case state == StateConflict:
		r.log.Warn("instance id held by another registrar; waiting for its record to go",
			"holder_node", h.node, "holder_lease_id", leaseHex(h.lease), "lease_id", leaseHex(lease), "key", r.key)
	default:
		r.log.Info("registration state changed", "state", state, "old_state", old, "lease_id", leaseHex(lease), "key", r.key)
	}
}

// stateLocked derives State from the registrar's facts.
func (r *Registrar) stateLocked() string {
	want := r.wantLocked()
	switch {
	case r.done:
		return StateDeregistered
	case r.expired:
		return StateLost
	case r.leaseID != 0 && r.present && (want || r.draining):
		return StateRegistered
	case r.holder != nil && want:
		return StateConflict
	case r.recovering && (r.leaseID == 0 || want):
		return StateLost
	case r.check.state == CheckCritical:
		return StateCritical
	}
	return StateStarting
}

// wantLocked reports whether the record should be in etcd now.
func (r *Registrar) wantLocked() bool {
	return r.check.state == CheckNone || r.check.state == CheckPassing
}

func (r *Registrar) weightLocked() int {
	if r.draining {
		return 0
	}
	return r.weight
}

// desired returns whether the record should be in etcd, its value with the
// current weight (0 when drain is set), and the weight generation.
func (r *Registrar) desired(drain bool) (want bool, value []byte, gen uint64) {
	r.mu.Lock()
	want, w, gen := r.wantLocked(), r.weight, r.weightGen
	r.mu.Unlock()
	if drain {
		w = 0
	}
	value = record.Encode(record.Instance{
		ID: r.cfg.ID, Addr: r.cfg.Addr, Weight: w, Node: r.cfg.Node, Metadata: r.cfg.Metadata,
	})
	return want, value, gen
}

// holder is another writer's record found at our key.
type holder struct {
	node  string // from the record's metadata; "" when it has none
	lease clientv3.LeaseID
}

// newHolder describes the record value found at key under lease.
func newHolder(key string, lease clientv3.LeaseID, value []byte) *holder {
	in, _ := record.Decode(key, value) // not a record: no node to name
	return &holder{node: in.Node, lease: lease}
}

// describe says who holds key, for Status.LastError: a state for people
// to read, not an error chain, so without the package prefix.
func (h *holder) describe(key string) string {
	who := "another writer (not a sidecar record)"
	if h.node != "" {
		who = fmt.Sprintf("node %q", h.node)
	}
	if h.lease == 0 {
		return fmt.Sprintf("%s is held by %s without a lease; it stays until deleted", key, who)
	}
	return fmt.Sprintf("%s is held by %s under lease %s; waiting for it to be released", key, who, leaseHex(h.lease))
}

// leaseHex writes a lease id as etcdctl does.
func leaseHex(id clientv3.LeaseID) string { return fmt.Sprintf("%x", int64(id)) }
