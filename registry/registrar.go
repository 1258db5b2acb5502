package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/naming/endpoints"
	"golang.org/x/sync/errgroup"
)

// States of the registration, in Status.State.
const (
	StateStarting     = "starting"     // not registered yet: no lease, no passing check, or the first put pending
	StateRegistered   = "registered"   // the record is in etcd under a live lease
	StateCritical     = "critical"     // the check is critical: record withdrawn, lease kept
	StateLost         = "lost"         // the lease is past its deadline, or the lease or record was lost and is not back yet
	StateDeregistered = "deregistered" // Run has returned
)

var (
	// ErrNotRegistered is returned by SetWeight when there is no record in
	// etcd to update; the weight is kept and written by the next
	// registration.
	ErrNotRegistered = errors.New("registry: not registered now; weight kept for the next registration")
	// ErrInvalidWeight is returned by SetWeight for a weight outside 0..MaxWeight.
	ErrInvalidWeight = errors.New("registry: weight out of range 0..10000")
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
	Reregistrations int64  // registrations after the first that restored a lost lease or a deleted record
	LastError       string // the last error talking to etcd; cleared by a successful registration
	CheckState      string // one of the Check constants
	CheckError      string // why the last check failed; empty after a pass
	KeepAlives      int64  // keep-alive responses received, over all leases
}

// Registrar registers one service instance in etcd and keeps it
// registered. Build it with New and call Run once. Status, SetWeight and
// Changes are safe for concurrent use, also with Run.
type Registrar struct {
	cli       *clientv3.Client
	mgr       endpoints.Manager
	cfg       Config
	key       string
	log       *slog.Logger
	probe     probe // nil: no check
	opTimeout time.Duration
	started   atomic.Bool
	kick      chan struct{} // cap 1: the desired record changed
	changes   chan struct{} // cap 1: Status changed

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
	present    bool // our record is in etcd under leaseID
	recovering bool // a lease or our record was lost and not yet put back
	ever       bool // registered at least once
	reregs     int64
	lastErr    string
	draining   bool
	done       bool
	state      string
	lastSig    signature
}

// signature is what a Changes signal reports a change of.
type signature struct {
	state, check string
	lease        clientv3.LeaseID
	weight       int
	reregs       int64
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
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.TTL = (cfg.TTL + time.Second - 1).Truncate(time.Second)
	key := cfg.Prefix + "/" + cfg.Service + "/" + cfg.ID
	mgr, err := endpoints.NewManager(cli, cfg.Prefix+"/"+cfg.Service)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	r := &Registrar{
		cli: cli, mgr: mgr, cfg: cfg, key: key,
		log:       cfg.Logger.With("service", cfg.Service, "id", cfg.ID),
		probe:     newProbe(cfg.Check),
		opTimeout: min(max(cfg.TTL/3, time.Second), 5*time.Second),
		kick:      make(chan struct{}, 1),
		changes:   make(chan struct{}, 1),
		weight:    cfg.Weight,
		check:     checkTracker{state: CheckNone, threshold: cfg.Check.FailuresBeforeCritical},
		state:     StateStarting,
	}
	if r.probe != nil {
		r.check.state = CheckPending
	}
	r.lastSig = r.signatureLocked()
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
		r.done, r.leaseID, r.present = true, 0, false
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
// in etcd now (before Run, before the first passing check, while critical,
// lost or draining), or the registration is lost before etcd holds the new
// value, it returns ErrNotRegistered: the weight is kept and written by
// the next registration. If ctx ends first it returns ctx's error, and the
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

// Changes returns a channel that receives a value, without blocking the
// registrar, after State, LeaseID, Weight, CheckState or Reregistrations
// change; several changes may be coalesced into one value. Read Status
// after each. The channel is never closed.
func (r *Registrar) Changes() <-chan struct{} { return r.changes }

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
// waiters that can no longer succeed, and signals Changes.
func (r *Registrar) update(fn func()) {
	r.mu.Lock()
	fn()
	old := r.state
	r.state = r.stateLocked()
	var fail []*weightWaiter
	if r.state != StateRegistered || r.draining {
		fail, r.waiters = r.waiters, nil
	}
	sig := r.signatureLocked()
	changed := sig != r.lastSig
	r.lastSig = sig
	lease := r.leaseID
	r.mu.Unlock()

	for _, w := range fail {
		w.done <- ErrNotRegistered
	}
	if changed {
		select {
		case r.changes <- struct{}{}:
		default:
		}
	}
	if old != sig.state {
		r.log.Info("registration state changed", "state", sig.state, "old_state", old,
			"lease_id", fmt.Sprintf("%x", int64(lease)), "key", r.key)
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
	case r.recovering && (r.leaseID == 0 || want):
		return StateLost
	case r.check.state == CheckCritical:
		return StateCritical
	}
	return StateStarting
}

func (r *Registrar) signatureLocked() signature {
	return signature{state: r.state, check: r.check.state, lease: r.leaseID, weight: r.weightLocked(), reregs: r.reregs}
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

// recordMeta is the Metadata of the endpoints.Endpoint written to etcd.
type recordMeta struct {
	ID       string            `json:"id"`
	Weight   int               `json:"weight"`
	Node     string            `json:"node"`
	Metadata map[string]string `json:"metadata"`
}

// wireRecord has the fields, in order, of the value that
// endpoints.Manager.AddEndpoint writes; its JSON is byte for byte the same.
type wireRecord struct {
	Op       uint8
	Addr     string
	Metadata any
}

// desired returns whether the record should be in etcd, the endpoint to
// write with the given weight, its encoded value, and the weight generation.
func (r *Registrar) desired(drain bool) (want bool, ep endpoints.Endpoint, value []byte, gen uint64) {
	r.mu.Lock()
	want, w, gen := r.wantLocked(), r.weight, r.weightGen
	r.mu.Unlock()
	if drain {
		w = 0
	}
	ep = endpoints.Endpoint{Addr: r.cfg.Addr, Metadata: recordMeta{
		ID: r.cfg.ID, Weight: w, Node: r.cfg.Node, Metadata: r.cfg.Metadata,
	}}
	value, _ = json.Marshal(wireRecord{Addr: ep.Addr, Metadata: ep.Metadata}) // cannot fail: strings and ints
	return want, ep, value, gen
}
