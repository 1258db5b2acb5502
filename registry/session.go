package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"

	"github.com/sidecar-dev/sidecar/internal/retry"
)

// ackSlack is how much later than clientv3 the keeper may read a
// keep-alive answer; see ackDeadline.
const ackSlack = 50 * time.Millisecond

var errKeepAliveEnded = errors.New("registry: lease keep-alive stream ended (lease expired, revoked, or keep-alive halted)")

// errConflict is wrapped by a write refused because another holder's
// record is at the key.
var errConflict = errors.New("the key holds another holder's record")

// keyState is the key's value and lease as last seen or written.
type keyState struct {
	lease clientv3.LeaseID
	value []byte
}

// session is one lease and the record written with it. Its methods run
// on the loop's goroutine, except keep, which runs on its own.
type session struct {
	r        *Registrar
	id       clientv3.LeaseID
	ttl      time.Duration
	sent     time.Time     // when the Grant was sent
	rtt      time.Duration // the Grant's round trip
	deadline time.Time     // sent + ttl: the lease's end if no keep-alive is acknowledged

	ka       <-chan *clientv3.LeaseKeepAliveResponse
	kaCtx    context.Context // not ended by Run's ctx: the lease lives through draining
	kaCancel context.CancelFunc
	ending   atomic.Bool // the keep-alive stream is being stopped on purpose

	ctx      context.Context // ends with Run's ctx, or with the lease lost (its cause)
	cancel   context.CancelCauseFunc
	lostc    chan struct{} // closed when the lease is lost
	loseOnce sync.Once

	cur     *keyState // the key in etcd as far as we know; nil: absent
	curRev  int64     // the etcd revision cur is known at
	wch     clientv3.WatchChan
	wcancel context.CancelFunc
}

func newSession(ctx context.Context, r *Registrar, id clientv3.LeaseID, ttl time.Duration, sent time.Time, rtt time.Duration) *session {
	s := &session{r: r, id: id, ttl: ttl, sent: sent, rtt: rtt, deadline: sent.Add(ttl), lostc: make(chan struct{})}
	s.kaCtx, s.kaCancel = context.WithCancel(context.WithoutCancel(ctx))
	s.ctx, s.cancel = context.WithCancelCause(ctx)
	return s
}

// hold keeps the record registered under the session's lease until the
// lease is lost (it returns why) or ctx ends (it drains, revokes the lease
// and returns the revoke's error).
func (s *session) hold(ctx context.Context) error {
	var g errgroup.Group
	g.Go(func() error { s.keep(); return nil })
	err := s.run()
	if ctx.Err() != nil {
		err = s.shutdown(ctx)
	} else {
		s.lose(err)
	}
	s.end()
	_ = g.Wait()
	return err
}

// end stops the keep-alive stream and the watch.
func (s *session) end() {
	s.ending.Store(true)
	s.kaCancel()
	s.cancel(nil)
	s.stopWatch()
}

// lose marks the lease lost; the first cause counts.
func (s *session) lose(cause error) {
	s.loseOnce.Do(func() {
		close(s.lostc)
		s.cancel(cause)
		r := s.r
		r.update(func() {
			if r.leaseID == s.id {
				r.leaseID, r.present, r.holder, r.deadline, r.recovering, r.expired = 0, false, nil, time.Time{}, true, false
			}
			r.lastErr = inWords(cause)
		})
	})
}

// keep drains the keep-alive stream until it is closed, and declares the
// lease lost when the stream closes unasked. It also reports the state as
// lost (without giving up the lease, which may answer again) once the
// deadline passes: the send time of the last acknowledged keep-alive plus
// the TTL, on the monotonic clock, so that an unreachable etcd shows
// before clientv3 closes the stream, up to a second after its own deadline.
func (s *session) keep() {
	var prev time.Time // arrival of the previous answer; zero before the first
	deadline := s.deadline
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		select {
		case resp, ok := <-s.ka:
			if !ok {
				if !s.ending.Load() {
					s.lose(errKeepAliveEnded)
				}
				return
			}
			now := time.Now()
			if d := s.ackDeadline(prev, now, time.Duration(resp.TTL)*time.Second); d.After(deadline) {
				deadline = d
				timer.Reset(time.Until(deadline))
			}
			prev = now
			s.r.update(func() {
				s.r.keepAlives++
				if s.r.leaseID == s.id {
					s.r.deadline = deadline
					s.r.expired = !time.Now().Before(deadline)
				}
			})
		case <-timer.C:
			if wait := time.Until(deadline); wait > 0 {
				timer.Reset(wait)
				continue
			}
			s.r.log.Warn("lease deadline passed without keep-alive acknowledgement",
				"lease_id", fmt.Sprintf("%x", int64(s.id)), "ttl_s", s.ttl.Seconds())
			s.r.update(func() {
				if s.r.leaseID == s.id {
					s.r.expired = true
					s.r.lastErr = fmt.Sprintf("lease %x: no keep-alive acknowledged within its %s TTL", int64(s.id), s.ttl)
				}
			})
		}
	}
}

// ackDeadline is the lease's end after an answer arriving at now: the
// keep-alive's send time plus ttl. The stream does not tell send times;
// they are bounded from below:
//   - the first keep-alive was sent after the Grant;
//   - clientv3 sends the next keep-alive no sooner than ttl/3 after an
//     answer arrives, so an answer arriving at least that long after the
//     previous one was sent after prev+ttl/3; and it was sent one round
//     trip before it arrived, estimated by the Grant's round trip;
//   - an answer arriving sooner answers a keep-alive repeated while the
//     stream stalled, sent before prev: it does not move the deadline.
//
// ackSlack allows for the keeper reading an answer later than clientv3
// timed it.
func (s *session) ackDeadline(prev, now time.Time, ttl time.Duration) time.Time {
	switch {
	case prev.IsZero():
		return s.sent.Add(ttl)
	case now.Sub(prev) < ttl/3-ackSlack:
		return time.Time{}
	}
	sent := prev.Add(ttl/3 - ackSlack)
	if est := now.Add(-s.rtt); est.After(sent) {
		sent = est
	}
	return sent.Add(ttl)
}

// run reconciles etcd with the desired record whenever something changes:
// the check's verdict, the weight, or the key (seen through the watch).
// It returns when the lease is lost or Run's ctx ends. While another
// holder's record is at the key, the watch tells when it goes; a retry
// with backoff up to conflictRetryMax is the safety net.
func (s *session) run() error {
	bo := retry.Backoff{Base: backoffBase, Max: backoffMax}
	cbo := retry.Backoff{Base: backoffBase, Max: conflictRetryMax}
	failures := 0
	retry := time.NewTimer(0) // reconcile at once
	defer retry.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return context.Cause(s.ctx)
		case <-s.r.kick:
		case wr, ok := <-s.wch:
			s.onWatch(wr, ok)
		case <-retry.C:
		}
		err := s.reconcile()
		switch {
		case err == nil:
			bo.Reset()
			cbo.Reset()
			failures = 0
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			return err
		case s.ctx.Err() != nil:
			// lost or ending: the next turn returns
		case errors.Is(err, errConflict):
			retry.Reset(cbo.Next()) // reported by setCur, logged by update
		default:
			failures++
			s.r.log.Log(s.ctx, logLevel(failures), "registration not in sync; retrying", "err", err, "attempt", failures)
			s.r.update(func() { s.r.lastErr = inWords(err) })
			retry.Reset(bo.Next())
		}
	}
}

// reconcile (re)starts the watch if needed and puts or deletes the record.
func (s *session) reconcile() error {
	if s.wch == nil {
		if err := s.watch(); err != nil {
			return err
		}
	}
	want, value, gen := s.r.desired(false)
	switch {
	case want && !s.holds(value):
		if err := s.put(value); err != nil {
			return err
		}
	case !want && s.ours():
		return s.remove()
	}
	if want {
		s.settle(gen)
	}
	return nil
}

// watch reads the key and watches it from the revision after the read, so
// no change is missed.
func (s *session) watch() error {
	ctx, cancel := context.WithTimeout(s.ctx, s.r.opTimeout)
	resp, err := s.r.cli.Get(ctx, s.r.key)
	cancel()
	if err != nil {
		return fmt.Errorf("registry: get %q: %w", s.r.key, err)
	}
	s.setCur(firstKey(resp.Kvs), resp.Header.Revision)
	wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(s.ctx))
	s.wch = s.r.cli.Watch(wctx, s.r.key, clientv3.WithRev(resp.Header.Revision+1))
	s.wcancel = wcancel
	return nil
}

func (s *session) stopWatch() {
	if s.wcancel != nil {
		s.wcancel()
	}
	s.wch, s.wcancel = nil, nil
}

// onWatch applies one watch response; a closed or failed watch (no leader,
// compaction) is restarted by the next reconcile.
func (s *session) onWatch(wr clientv3.WatchResponse, ok bool) {
	if !ok || wr.Err() != nil {
		if ok && s.ctx.Err() == nil {
			s.r.log.Debug("watch ended; restarting", "err", wr.Err())
		}
		s.stopWatch()
		return
	}
	for _, ev := range wr.Events {
		if ev.Type == clientv3.EventTypeDelete {
			s.setCur(nil, ev.Kv.ModRevision)
		} else {
			s.setCur(&keyState{lease: clientv3.LeaseID(ev.Kv.Lease), value: ev.Kv.Value}, ev.Kv.ModRevision)
		}
	}
}

func (s *session) ours() bool { return s.cur != nil && s.cur.lease == s.id }

func (s *session) holds(value []byte) bool { return s.ours() && bytes.Equal(s.cur.value, value) }

// put writes value under the session's lease in one transaction, only if
// the key is absent or already on this lease; otherwise the transaction
// reads the key, and put records its holder and returns errConflict. A
// refused write creates no revision, so a registrar waiting for another's
// record does not add to etcd's history.
func (s *session) put(value []byte) error {
	key := s.r.key
	ctx, cancel := context.WithTimeout(s.ctx, s.r.opTimeout)
	defer cancel()
	put := clientv3.OpPut(key, string(value), clientv3.WithLease(s.id))
	resp, err := s.r.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(put).
		Else(clientv3.OpTxn(
			[]clientv3.Cmp{clientv3.Compare(clientv3.LeaseValue(key), "=", s.id)},
			[]clientv3.Op{put},
			[]clientv3.Op{clientv3.OpGet(key)})).
		Commit()
	if err != nil {
		return fmt.Errorf("registry: put %q: %w", key, err)
	}
	rev := resp.Header.Revision
	if resp.Succeeded {
		s.setCur(&keyState{lease: s.id, value: value}, rev)
		return nil
	}
	inner := resp.Responses[0].GetResponseTxn()
	if inner.Succeeded {
		s.setCur(&keyState{lease: s.id, value: value}, rev)
		return nil
	}
	s.setCur(firstKey(inner.Responses[0].GetResponseRange().Kvs), rev)
	if !s.ours() && s.cur != nil {
		return fmt.Errorf("registry: put %q: %w", key, errConflict)
	}
	return fmt.Errorf("registry: put %q: the key changed during the write", key) // deleted since: try again
}

// remove deletes the record if it is still on the session's lease, in one
// transaction: it never deletes another holder's record.
func (s *session) remove() error {
	key := s.r.key
	ctx, cancel := context.WithTimeout(s.ctx, s.r.opTimeout)
	defer cancel()
	resp, err := s.r.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.LeaseValue(key), "=", s.id)).
		Then(clientv3.OpDelete(key)).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return fmt.Errorf("registry: delete %q: %w", key, err)
	}
	if resp.Succeeded {
		s.setCur(nil, resp.Header.Revision)
	} else {
		s.setCur(firstKey(resp.Responses[0].GetResponseRange().Kvs), resp.Header.Revision)
	}
	return nil
}

// firstKey is the state of the first of kvs; nil when there is none.
func firstKey(kvs []*mvccpb.KeyValue) *keyState {
	if len(kvs) == 0 {
		return nil
	}
	return &keyState{lease: clientv3.LeaseID(kvs[0].Lease), value: kvs[0].Value}
}

// setCur records what the key holds at revision rev and updates the
// registrar's facts: our record present, or another holder's record
// there. A state older than the one known is ignored: the watch may
// deliver a change after the answer of a later write of ours (a delete
// read late would count a re-registration that never was, and write the
// record again).
func (s *session) setCur(ks *keyState, rev int64) {
	if rev < s.curRev {
		return
	}
	wasOurs := s.ours()
	s.cur, s.curRev = ks, rev
	isOurs := s.ours()
	var h *holder
	if ks != nil && !isOurs {
		h = newHolder(s.r.key, ks.lease, ks.value)
	}
	r := s.r
	r.update(func() {
		if r.leaseID != s.id {
			return
		}
		r.present, r.holder = isOurs, h
		switch {
		case !wasOurs && isOurs:
			if r.recovering && r.ever {
				r.reregs++
			}
			r.recovering, r.ever, r.lastErr = false, true, ""
		case wasOurs && !isOurs && r.wantLocked():
			r.recovering = true // deleted or overwritten by someone else
		}
		if h != nil && r.wantLocked() {
			r.lastErr = h.describe(r.key)
		}
	})
}

// settle returns from the SetWeight calls up to weight generation gen:
// etcd holds their weight, or a later one.
func (s *session) settle(gen uint64) {
	r := s.r
	var done []*weightWaiter
	r.mu.Lock()
	keep := r.waiters[:0]
	for _, w := range r.waiters {
		if w.gen <= gen {
			done = append(done, w)
		} else {
			keep = append(keep, w)
		}
	}
	r.waiters = keep
	r.mu.Unlock()
	for _, w := range done {
		w.done <- nil
	}
}

// shutdown drains (if configured and registered) and revokes the lease.
func (s *session) shutdown(ctx context.Context) error {
	r := s.r
	cctx := context.WithoutCancel(ctx)
	if r.cfg.DrainTimeout > 0 && s.ours() && !s.lost() {
		s.drain(cctx)
	}
	s.ending.Store(true)
	rctx, cancel := context.WithTimeout(cctx, max(r.opTimeout, minShutdownTimeout))
	defer cancel()
	if _, err := r.cli.Revoke(rctx, s.id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("registry: deregister: revoke lease %x: %w", int64(s.id), err)
	}
	r.log.Info("deregistered", "lease_id", fmt.Sprintf("%x", int64(s.id)), "key", r.key)
	return nil
}

// drain writes weight 0, if the record is still on the session's lease,
// and waits DrainTimeout, or until the lease is lost.
func (s *session) drain(ctx context.Context) {
	r := s.r
	r.update(func() { r.draining = true })
	_, value, _ := r.desired(true)
	pctx, cancel := context.WithTimeout(ctx, r.opTimeout)
	resp, err := r.cli.Txn(pctx).
		If(clientv3.Compare(clientv3.LeaseValue(r.key), "=", s.id)).
		Then(clientv3.OpPut(r.key, string(value), clientv3.WithLease(s.id))).
		Commit()
	cancel()
	switch {
	case err != nil:
		r.log.Warn("cannot drain; deregistering now", "err", err)
		return
	case !resp.Succeeded:
		r.log.Warn("record no longer ours; deregistering without draining", "key", r.key)
		return
	}
	r.log.Info("draining", "wait_s", r.cfg.DrainTimeout.Seconds())
	t := time.NewTimer(r.cfg.DrainTimeout)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.lostc:
	}
}

func (s *session) lost() bool {
	select {
	case <-s.lostc:
		return true
	default:
		return false
	}
}
