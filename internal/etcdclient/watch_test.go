package etcdclient_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/sidecar-dev/sidecar/internal/etcdclient"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// TestWatchOnStreamWithExpiredToken: etcd (simple tokens, 1 s TTL)
// refuses every watch created on a stream whose token expired, and
// clientv3 keeps such a stream open while any watch lives on it
// (etcd-io/etcd#12385). Each case keeps a watch on the stream while its
// token expires, then creates another watch with the same metadata: a
// plain watch, and a concurrency.Mutex waiting for the holder's key, as a
// lock request does. Pass: the new watch is created and sees events, the
// old one still sees events, and the waiter gets the lock within 2 s of
// its release.
func TestWatchOnStreamWithExpiredToken(t *testing.T) {
	const user, pass, prefix = "app", "pw", "/t/"
	s := etcdtest.StartServer(t, etcdtest.ServerOptions{Args: []string{"--auth-token=simple", "--auth-token-ttl=1"}})
	root := etcdtest.EnableAuth(t, s.Client(t), user, pass, etcdtest.Grant{Prefix: prefix, Perm: clientv3.PermissionType(clientv3.PermReadWrite)})
	cli, err := etcdclient.New(t.Context(), etcdclient.Config{Endpoints: []string{s.ClientURL}, Username: user, Password: pass})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	const expire = 2500 * time.Millisecond // TTL 1 s, checked each second

	t.Run("watch", func(t *testing.T) {
		ctx := clientv3.WithRequireLeader(t.Context())
		keeper := created(t, cli.Watch(ctx, prefix+"keep", clientv3.WithCreatedNotify()))
		time.Sleep(expire)
		fresh := created(t, cli.Watch(ctx, prefix+"new", clientv3.WithCreatedNotify()))
		for key, wch := range map[string]clientv3.WatchChan{prefix + "new": fresh, prefix + "keep": keeper} {
			if _, err := root.Put(t.Context(), key, "v"); err != nil {
				t.Fatal(err)
			}
			select {
			case wr := <-wch:
				if wr.Err() != nil || len(wr.Events) != 1 || string(wr.Events[0].Kv.Key) != key {
					t.Errorf("watch of %s: %+v, err %v", key, wr.Events, wr.Err())
				}
			case <-time.After(5 * time.Second):
				t.Errorf("watch of %s: no event within 5s", key)
			}
		}
	})

	t.Run("lock waiter", func(t *testing.T) {
		ctx := t.Context()
		created(t, cli.Watch(ctx, prefix+"keep", clientv3.WithCreatedNotify())) // the waiter's stream
		holder, waiter := session(t, cli), session(t, cli)
		hm := concurrency.NewMutex(holder, prefix+"lock")
		if err := hm.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(expire)
		got := make(chan error, 1)
		go func() { got <- concurrency.NewMutex(waiter, prefix+"lock").Lock(ctx) }()
		time.Sleep(300 * time.Millisecond) // the waiter watches the holder's key
		if err := hm.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-got:
			if err != nil {
				t.Errorf("waiter: %v", err)
			}
		case <-time.After(2 * time.Second):
			t.Error("waiter: no lock within 2s of the release")
		}
	})
}

// created reads the first response of wch, which must say it was created.
func created(t *testing.T, wch clientv3.WatchChan) clientv3.WatchChan {
	t.Helper()
	select {
	case wr := <-wch:
		if !wr.Created || wr.Err() != nil {
			t.Fatalf("watch not created: canceled %v, err %v", wr.Canceled, wr.Err())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch not created within 5s")
	}
	return wch
}

func session(t *testing.T, cli *clientv3.Client) *concurrency.Session {
	t.Helper()
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Orphan()
		cli.Revoke(ctx, s.Lease())
	})
	return s
}

// TestIsRefusal: each form a refusal reaches callers in: the client
// error, the gRPC status, wrapped, and a refused watch's error (the gRPC
// error's text).
func TestIsRefusal(t *testing.T) {
	tests := []struct {
		err            error
		token, refusal bool
	}{
		{rpctypes.ErrInvalidAuthToken, true, true},
		{rpctypes.ErrGRPCInvalidAuthToken, true, true},
		{errors.New(rpctypes.ErrGRPCInvalidAuthToken.Error()), true, true},
		{fmt.Errorf("get: %w", rpctypes.ErrAuthOldRevision), true, true},
		{errors.New(rpctypes.ErrGRPCPermissionDenied.Error()), false, true},
		{rpctypes.ErrPermissionDenied, false, true},
		{rpctypes.ErrNoLeader, false, false},
		{errors.New("etcdserver: invalid auth token?"), false, false},
		{nil, false, false},
	}
	for _, tc := range tests {
		if got := etcdclient.IsTokenRefusal(tc.err); got != tc.token {
			t.Errorf("IsTokenRefusal(%v) = %v, want %v", tc.err, got, tc.token)
		}
		if got := etcdclient.IsRefusal(tc.err); got != tc.refusal {
			t.Errorf("IsRefusal(%v) = %v, want %v", tc.err, got, tc.refusal)
		}
	}
}
