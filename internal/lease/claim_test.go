package lease_test

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
	"github.com/sidecar-dev/sidecar/internal/lease"
)

// claimed puts key on s's lease and claims it.
func claimed(t *testing.T, cli *clientv3.Client, s *lease.Session, key string) *lease.Claim {
	t.Helper()
	resp, err := cli.Put(t.Context(), key, "", clientv3.WithLease(s.ID()))
	if err != nil {
		t.Fatal(err)
	}
	c := s.Claim(key, resp.Header.Revision, resp.Header.Revision)
	t.Cleanup(c.Stop)
	return c
}

func claimLost(t *testing.T, c *lease.Claim, want ...error) {
	t.Helper()
	select {
	case <-c.Lost():
	case <-time.After(3 * time.Second):
		t.Fatalf("claim not lost")
	}
	err := c.Err()
	for _, w := range want {
		if errors.Is(err, w) {
			return
		}
	}
	t.Fatalf("Err = %v, want one of %v", err, want)
}

func TestClaim(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := newClient(t, e.ClientURL)
	t.Run("key deleted", func(t *testing.T) {
		s := start(t, cli)
		c := claimed(t, cli, s, "/claim/a")
		if _, err := cli.Put(t.Context(), "/claim/other", ""); err != nil {
			t.Fatal(err)
		}
		select {
		case <-c.Lost():
			t.Fatalf("lost before anything happened to the key: %v", c.Err())
		case <-time.After(100 * time.Millisecond):
		}
		if _, err := cli.Delete(t.Context(), "/claim/a"); err != nil {
			t.Fatal(err)
		}
		claimLost(t, c, lease.ErrKeyDeleted)
		if s.Err() != nil {
			t.Fatalf("session lost with the key: %v", s.Err())
		}
	})
	t.Run("session lost", func(t *testing.T) {
		s := start(t, cli)
		c := claimed(t, cli, s, "/claim/b")
		if _, err := cli.Revoke(t.Context(), s.ID()); err != nil {
			t.Fatal(err)
		}
		// the watch sees the key go with the lease, or the next keep-alive
		// is answered "no such lease", whichever comes first
		claimLost(t, c, lease.ErrKeyDeleted, lease.ErrExpired)
		select {
		case <-s.Lost():
		case <-time.After(2 * time.Second):
			t.Fatal("session not lost")
		}
	})
	t.Run("stopped", func(t *testing.T) {
		s := start(t, cli)
		c := claimed(t, cli, s, "/claim/c")
		c.Stop()
		claimLost(t, c, lease.ErrClosed)
		c.Stop()
	})
}

func TestAwait(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := newClient(t, e.ClientURL)
	wait := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	t.Run("session lost", func(t *testing.T) {
		s := start(t, cli)
		go func() {
			time.Sleep(200 * time.Millisecond)
			cli.Revoke(context.Background(), s.ID())
		}()
		if err := s.Await(t.Context(), wait); !errors.Is(err, lease.ErrExpired) {
			t.Fatalf("Await = %v, want the session's loss", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		s := start(t, cli)
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		if err := s.Await(ctx, wait); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Await = %v, want DeadlineExceeded", err)
		}
	})
	t.Run("op fails", func(t *testing.T) {
		s := start(t, cli)
		boom := errors.New("boom")
		if err := s.Await(t.Context(), func(context.Context) error { return boom }); err != boom {
			t.Fatalf("Await = %v, want op's error", err)
		}
		if err := s.Await(t.Context(), func(context.Context) error { return nil }); err != nil {
			t.Fatalf("Await = %v", err)
		}
	})
	t.Run("slow cleanup abandoned", func(t *testing.T) {
		s := start(t, cli)
		release := make(chan struct{})
		done := make(chan struct{})
		defer func() { close(release); <-done }()
		stubborn := func(ctx context.Context) error {
			defer close(done)
			<-ctx.Done()
			<-release // cleanup blocked, as on a partitioned link
			return ctx.Err()
		}
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		if err := s.Await(ctx, stubborn); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Await = %v", err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("Await waited %s for a blocked cleanup", took)
		}
	})
}
