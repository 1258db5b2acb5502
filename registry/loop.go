package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"

	"github.com/sidecar-dev/sidecar/internal/retry"
)

// Retry pacing: the first retry after ~100ms, then doubling up to a cap
// low enough that a registration lands within ~1s of etcd answering again.
const (
	backoffBase = 100 * time.Millisecond
	backoffMax  = 800 * time.Millisecond
)

// conflictRetryMax caps the retries while another holder's record is at
// the key: the watch on the key tells when it goes, so they are a safety
// net only.
const conflictRetryMax = 5 * time.Second

// minShutdownTimeout bounds the final revoke at least this long.
const minShutdownTimeout = 2 * time.Second

// loop holds one lease after another until ctx ends: grant, register,
// keep alive; when the lease is lost, revoke it if etcd still knows it,
// and start again, for ever.
func (r *Registrar) loop(ctx context.Context) error {
	bo := retry.Backoff{Base: backoffBase, Max: backoffMax}
	failures := 0              // consecutive, for logging
	var stale clientv3.LeaseID // a lease we abandoned and must revoke before holding another
	for {
		if ctx.Err() != nil {
			r.revokeStale(ctx, stale)
			return nil
		}
		if r.cli.Ctx().Err() != nil {
			return ErrClientClosed
		}
		s, err := r.open(ctx, &stale)
		if err == nil {
			start := time.Now()
			err = s.hold(ctx)
			if ctx.Err() != nil {
				return err // the result of draining and revoking
			}
			stale = s.id
			if time.Since(start) >= r.cfg.TTL {
				bo.Reset()
				failures = 0
			}
		}
		if ctx.Err() == nil {
			failures++
			r.log.Log(ctx, logLevel(failures), "registration interrupted; retrying", "err", err, "attempt", failures)
			r.update(func() { r.lastErr = inWords(err) })
		}
		retry.Sleep(ctx, bo.Next())
	}
}

// open revokes the stale lease, if any, grants a new one and starts its
// keep-alive stream.
func (r *Registrar) open(ctx context.Context, stale *clientv3.LeaseID) (*session, error) {
	if *stale != 0 {
		if err := r.revoke(ctx, *stale); err != nil {
			return nil, err
		}
		*stale = 0
	}
	sent := time.Now()
	gctx, cancel := context.WithTimeout(ctx, r.opTimeout)
	resp, err := r.cli.Grant(gctx, int64(r.cfg.TTL/time.Second))
	rtt := time.Since(sent)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("registry: grant lease: %w", err)
	}
	s := newSession(ctx, r, resp.ID, time.Duration(resp.TTL)*time.Second, sent, rtt)
	ka, err := r.cli.KeepAlive(s.kaCtx, resp.ID)
	if err != nil {
		s.end()
		*stale = resp.ID
		return nil, fmt.Errorf("registry: keep lease %x alive: %w", int64(resp.ID), err)
	}
	s.ka = ka
	r.update(func() {
		r.leaseID, r.deadline, r.present, r.expired = resp.ID, s.deadline, false, false
	})
	r.log.Debug("lease granted", "lease_id", fmt.Sprintf("%x", int64(resp.ID)), "ttl_s", resp.TTL)
	return s, nil
}

// revoke revokes a lease this registrar abandoned. A lease etcd does not
// know is fine; so is one etcd refuses to revoke (it is not kept alive and
// expires): only an unreachable etcd makes it fail.
func (r *Registrar) revoke(ctx context.Context, id clientv3.LeaseID) error {
	rctx, cancel := context.WithTimeout(ctx, r.opTimeout)
	defer cancel()
	_, err := r.cli.Revoke(rctx, id)
	switch {
	case err == nil, errors.Is(err, rpctypes.ErrLeaseNotFound):
		return nil
	case refused(err):
		r.log.Warn("cannot revoke abandoned lease; it expires by itself",
			"lease_id", fmt.Sprintf("%x", int64(id)), "err", err)
		return nil
	}
	return fmt.Errorf("registry: revoke abandoned lease %x: %w", int64(id), err)
}

// revokeStale revokes the abandoned lease, if any, when Run ends between
// leases. Failing is harmless: nobody keeps that lease alive.
func (r *Registrar) revokeStale(ctx context.Context, id clientv3.LeaseID) {
	if id == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opTimeout)
	defer cancel()
	if err := r.revoke(cctx, id); err != nil {
		r.log.Debug("abandoned lease not revoked; it expires by itself", "err", err)
	}
}

// refused reports whether etcd answered err itself, other than with
// "unavailable": asking again will not help.
func refused(err error) bool {
	var ee rpctypes.EtcdError
	if !errors.As(err, &ee) {
		return false
	}
	switch ee.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Unknown:
		return false
	}
	return true
}

// logLevel is Warn for the first failure in a row and Debug for the rest,
// so an outage is logged once, not every second.
func logLevel(failures int) slog.Level {
	if failures == 1 {
		return slog.LevelWarn
	}
	return slog.LevelDebug
}
