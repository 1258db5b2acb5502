package etcdclient_test

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/internal/etcdclient"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// TestReconnectAfterOutage checks the bound on gRPC's reconnect backoff:
// after a 10s outage gRPC's default would wait another ~6.5s (±20%) before
// its next attempt; the client's bound is 800ms (+20% jitter).
func TestReconnectAfterOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("takes a 10s outage")
	}
	const (
		outage = 10 * time.Second
		limit  = 800*time.Millisecond*12/10 + time.Second // backoff bound with jitter, plus a connect
	)
	s := etcdtest.StartServer(t, etcdtest.ServerOptions{})
	cli := newChecked(t, etcdclient.Config{Endpoints: []string{s.ClientURL}})
	get := func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		_, err := cli.Get(ctx, "k", clientv3.WithCountOnly())
		return err
	}
	s.Stop()
	for down := time.Now(); time.Since(down) < outage; {
		if err := get(); err == nil {
			t.Fatalf("Get succeeded while etcd was down")
		}
	}
	s.Restart()
	ready := time.Now()
	for get() != nil {
		if time.Since(ready) > limit {
			t.Fatalf("no reconnect within %s of etcd being ready again", limit)
		}
	}
	t.Logf("reconnected %s after etcd was ready again", time.Since(ready).Round(time.Millisecond))
}
