package lease_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
	"github.com/sidecar-dev/sidecar/internal/lease"
)

const ttl = 2 * time.Second

// start makes a session of TTL 2s (margin 300ms), closed at cleanup.
func start(t *testing.T, cli *clientv3.Client) *lease.Session {
	t.Helper()
	s, err := lease.New(t.Context(), cli, lease.Config{TTL: ttl})
	if err != nil {
		t.Fatalf("new session: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		s.Close(ctx)
	})
	return s
}

// nextDeadline waits for the deadline to move past prev and returns it with
// the time the move was seen.
func nextDeadline(t *testing.T, s *lease.Session, prev time.Time) (d, seen time.Time) {
	t.Helper()
	etcdtest.Eventually(t, 2*time.Second, "next keep-alive acknowledged", func() error {
		if d = s.Deadline(); !d.After(prev) {
			return fmt.Errorf("deadline still %s", prev.Format(time.StampMilli))
		}
		seen = time.Now()
		return nil
	})
	return d, seen
}

// lostWithin waits for Lost and returns when it was seen.
func lostWithin(t *testing.T, s *lease.Session, wait time.Duration) time.Time {
	t.Helper()
	select {
	case <-s.Lost():
		return time.Now()
	case <-time.After(wait):
		t.Fatalf("session not lost within %s (deadline in %s)", wait, time.Until(s.Deadline()))
		return time.Time{}
	}
}

func TestDeadlineFromAcknowledgedSends(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := newClient(t, e.ClientURL)
	before := time.Now()
	s := start(t, cli)
	after := time.Now()
	if s.TTL() != ttl || s.Margin() != 300*time.Millisecond {
		t.Fatalf("ttl %s margin %s, want %s and the default 300ms", s.TTL(), s.Margin(), ttl)
	}
	valid := s.TTL() - s.Margin()
	d := s.Deadline()
	if d.Before(before.Add(valid)) || d.After(after.Add(valid)) {
		t.Fatalf("first deadline %s after the grant was sent, want %s", d.Sub(before), valid)
	}
	// Each acknowledgement moves the deadline to its request's send time
	// + TTL - margin: never past the time the answer was seen + TTL -
	// margin, and not much before (the answer comes within milliseconds).
	for i := range 3 {
		var seen time.Time
		d, seen = nextDeadline(t, s, d)
		if late := d.Sub(seen.Add(valid)); late > 0 {
			t.Fatalf("ack %d: deadline %s after the answer was seen + ttl - margin", i, late)
		}
		if early := seen.Add(valid).Sub(d); early > 300*time.Millisecond {
			t.Fatalf("ack %d: deadline %s before the answer was seen + ttl - margin", i, early)
		}
	}
	if err := s.Err(); err != nil {
		t.Fatalf("lost while acknowledged: %v", err)
	}
}

func TestBlackholeLostAtDeadline(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	p := etcdtest.StartProxy(t, e.ClientURL)
	s := start(t, newClient(t, p.URL()))
	nextDeadline(t, s, s.Deadline())
	p.Blackhole()
	defer p.Heal() // before the cleanup's Close, so the revoke goes through
	at := lostWithin(t, s, 3*time.Second)
	d := s.Deadline() // final: no acknowledgement counts after the loss
	if at.Before(d) {
		t.Fatalf("lost %s before the deadline", d.Sub(at))
	}
	if late := at.Sub(d); late > 150*time.Millisecond {
		t.Fatalf("lost %s after the deadline", late)
	}
	if err := s.Err(); !errors.Is(err, lease.ErrUnacknowledged) {
		t.Fatalf("Err = %v, want ErrUnacknowledged", err)
	}
	t.Logf("lost %s after the deadline: %v", at.Sub(d), s.Err())
}

// TestDelayedAcknowledgement: answers held back on their way to the
// client count from when their requests were sent, so the deadline is
// earlier, by at least the delay, than one counted from their arrival.
func TestDelayedAcknowledgement(t *testing.T) {
	const delay = 600 * time.Millisecond
	e := etcdtest.StartEmbedded(t)
	p := etcdtest.StartProxy(t, e.ClientURL)
	s := start(t, newClient(t, p.URL()))
	d, _ := nextDeadline(t, s, s.Deadline())
	p.Delay(delay)
	from := time.Now().Add(delay)
	valid := s.TTL() - s.Margin()
	for checked := 0; checked < 2; {
		var seen time.Time
		d, seen = nextDeadline(t, s, d)
		if seen.Before(from) {
			continue // possibly answered before the delay began
		}
		checked++
		naive := seen.Add(valid) // counted from the answer's arrival
		early := naive.Sub(d)
		if early < delay || early > delay+300*time.Millisecond {
			t.Fatalf("deadline %s before the arrival + ttl - margin, want the delay %s (+ a round trip)", early, delay)
		}
		t.Logf("deadline %s earlier than counted from the answer's arrival", early)
	}
	if err := s.Err(); err != nil {
		t.Fatalf("lost while acknowledged late: %v", err)
	}
}

func TestCloseRevokes(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := newClient(t, e.ClientURL)
	s := start(t, cli)
	if _, err := cli.Put(t.Context(), "k", "v", clientv3.WithLease(s.ID())); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatalf("close: %v", err)
	}
	if resp, err := cli.Get(t.Context(), "k"); err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("key on the lease after Close: %v %v", resp.Kvs, err)
	}
	if ttl, err := cli.TimeToLive(t.Context(), s.ID()); err != nil || ttl.TTL != -1 {
		t.Fatalf("lease after Close: ttl %v, %v", ttl, err)
	}
	select {
	case <-s.Lost():
	default:
		t.Fatal("Lost open after Close")
	}
	if err := s.Err(); !errors.Is(err, lease.ErrClosed) {
		t.Fatalf("Err = %v, want ErrClosed", err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := lease.New(t.Context(), cli, lease.Config{TTL: time.Second}); err == nil {
		t.Fatal("TTL 1s accepted")
	}
}

func TestRevokedElsewhere(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := newClient(t, e.ClientURL)
	s := start(t, cli)
	nextDeadline(t, s, s.Deadline())
	if _, err := e.Client(t).Revoke(t.Context(), s.ID()); err != nil {
		t.Fatal(err)
	}
	// the next keep-alive, within TTL/3, is answered "no such lease"
	lostWithin(t, s, s.TTL()/3+500*time.Millisecond)
	if err := s.Err(); !errors.Is(err, lease.ErrExpired) {
		t.Fatalf("Err = %v, want ErrExpired", err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatalf("close of a revoked lease: %v", err)
	}
	if !errors.Is(s.Err(), lease.ErrExpired) {
		t.Fatalf("Close replaced the reason: %v", s.Err())
	}
}

// TestCloseDuringElection: the etcd leader of a three-member cluster is
// SIGKILLed just before Close. A revoke sent while the others elect a new
// leader is dropped and answered only at etcd's request timeout; Close
// tries again, so it returns nil, with the key gone, once the cluster has
// a leader: well within the 3 s given, and before the lease could expire
// (which the new leader would allow only after a full TTL).
func TestCloseDuringElection(t *testing.T) {
	c := etcdtest.StartCluster(t, 3, etcdtest.ServerOptions{})
	cli := c.Client(t)
	s := start(t, cli)
	if _, err := cli.Put(t.Context(), "k", "v", clientv3.WithLease(s.ID())); err != nil {
		t.Fatal(err)
	}
	leader := c.Leader(t)
	if leader < 0 {
		t.Fatal("no leader")
	}
	c.Members[leader].Kill()
	begin := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("close %s after the leader was killed: %v", time.Since(begin), err)
	}
	t.Logf("close took %s with the leader killed", time.Since(begin))
	if resp, err := cli.Get(t.Context(), "k"); err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("key on the lease after Close: %v %v", resp.Kvs, err)
	}
}
