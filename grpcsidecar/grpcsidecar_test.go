package grpcsidecar

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// The weighted balancer over the sidecar resolver, against a real daemon,
// a real etcd and three real gRPC servers of weights 1, 2 and 3, step by
// step: shares, a weight change without new connections, a drained
// instance, a removed one, and the daemon restarting.
func TestSidecarResolverWeighted(t *testing.T) {
	ev := newEnv(t)
	d := startDaemon(t, ev.etcdURL, ev.socket)
	conn := dial(t, "sidecar:///"+service, grpc.WithResolvers(&Builder{Socket: ev.socket}))
	ev.steps(t, conn)

	t.Run("daemon restart: the list stays, then changes flow again", func(t *testing.T) {
		before := conns(ev.backends)
		if err := d.stop(); err != nil {
			t.Fatalf("daemon stop: %v", err)
		}
		// The daemon is gone: calls go on with the last list.
		got, err := calls(t, conn, ev.backends, 60)
		if err != nil {
			t.Fatalf("calls while the daemon is down: %v", err)
		}
		if err := sharesOff(got, []int{1, 2, 0}); err != nil {
			t.Fatalf("while the daemon is down: %v", err)
		}
		startDaemon(t, ev.etcdURL, ev.socket)
		put(t, ev.cli, map[*backend]int{ev.backends[0]: 2, ev.backends[1]: 1, ev.backends[2]: 1})
		got = waitShares(t, conn, ev.backends, []int{2, 1, 1})
		t.Logf("600 calls after the restart: %v", got)
		if c := conns(ev.backends); !slices.Equal(c, before) {
			t.Fatalf("connections per server %v, before the restart %v: want unchanged", c, before)
		}
	})
}

// The same steps through the etcd resolver, without a daemon.
func TestEtcdResolverWeighted(t *testing.T) {
	ev := newEnv(t)
	rb, err := NewEtcdBuilder(ev.cli, EtcdConfig{Namespace: namespace})
	if err != nil {
		t.Fatal(err)
	}
	conn := dial(t, "etcd:///"+service, grpc.WithResolvers(rb))
	ev.steps(t, conn)
}

// steps runs the common steps on a client of the three backends
// registered with weights 1/2/3; it ends with weights 1/2/0 and the
// second backend removed from etcd.
func (ev *env) steps(t *testing.T, conn *grpc.ClientConn) {
	b1, b2, b3 := ev.backends[0], ev.backends[1], ev.backends[2]
	var first []int64
	t.Run("shares follow weights 1/2/3", func(t *testing.T) {
		got := waitShares(t, conn, ev.backends, []int{1, 2, 3})
		t.Logf("600 calls: %v", got)
		first = conns(ev.backends)
	})
	t.Run("weight change keeps the connections", func(t *testing.T) {
		put(t, ev.cli, map[*backend]int{b1: 3, b2: 2, b3: 1})
		got := waitShares(t, conn, ev.backends, []int{3, 2, 1})
		t.Logf("600 calls: %v", got)
		if c := conns(ev.backends); !slices.Equal(c, first) || !slices.Equal(c, []int64{1, 1, 1}) {
			t.Fatalf("connections per server %v, before the change %v: want one each, unchanged", c, first)
		}
	})
	t.Run("weight 0 gets no new calls", func(t *testing.T) {
		put(t, ev.cli, map[*backend]int{b1: 1, b2: 2, b3: 0})
		got := waitShares(t, conn, ev.backends, []int{1, 2, 0}) // asserts no call to b3 in 600
		t.Logf("600 calls: %v", got)
	})
	t.Run("removed instance stops receiving", func(t *testing.T) {
		if _, err := ev.cli.Delete(t.Context(), key(b2)); err != nil {
			t.Fatal(err)
		}
		got := waitShares(t, conn, ev.backends, []int{1, 0, 0})
		t.Logf("600 calls: %v", got)
		register(t, ev.cli, b2, 2) // back, for the steps that follow
		waitShares(t, conn, ev.backends, []int{1, 2, 0})
	})
}

// The balancer's rule for a list where every instance has weight 0: calls
// fail with Unavailable, saying so; and a service without instances.
func TestNoInstanceToPick(t *testing.T) {
	ev := newEnv(t)
	put(t, ev.cli, map[*backend]int{ev.backends[0]: 0, ev.backends[1]: 0, ev.backends[2]: 0})
	rb, err := NewEtcdBuilder(ev.cli, EtcdConfig{Namespace: namespace})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ service, want string }{
		{service, `every instance of "orders" has weight 0`},
		{"payments", `no instance of "payments" is registered`},
	} {
		t.Run(tc.service, func(t *testing.T) {
			conn := dial(t, "etcd:///"+tc.service, grpc.WithResolvers(rb))
			_, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
			if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("call: %v, want Unavailable with %q", err, tc.want)
			}
			t.Logf("call: %v", err)
		})
	}
}

// Before the daemon has ever answered, the resolver reports why to gRPC;
// a bad service name in the target is refused.
func TestSidecarResolverErrors(t *testing.T) {
	socket := filepath.Join(etcdtest.SocketDir(t), "none.sock")
	for _, tc := range []struct{ target, want string }{
		{"sidecar:///orders", "no daemon on socket " + socket},
		{"sidecar:///-bad", `service "-bad": want a name of`},
	} {
		t.Run(tc.target, func(t *testing.T) {
			conn := dial(t, tc.target, grpc.WithResolvers(&Builder{Socket: socket}))
			_, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
			if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("call: %v, want Unavailable with %q", err, tc.want)
			}
			t.Logf("call: %v", err)
		})
	}
}
