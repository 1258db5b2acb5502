package registry_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/naming/endpoints"
	"google.golang.org/grpc"

	"github.com/sidecar-dev/sidecar/internal/etcdclient"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
	"github.com/sidecar-dev/sidecar/registry"
)

// TestMain fails the package when goroutines outlive its tests.
func TestMain(m *testing.M) { etcdtest.RunWithLeakCheck(m, 10*time.Second) }

const prefix = "/sidecar/services"

// testLogger discards, unless REGISTRY_TEST_LOG is set (then debug to stderr).
func testLogger() *slog.Logger {
	if os.Getenv("REGISTRY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// newClient builds a client the way the daemon does (internal/etcdclient:
// reconnect backoff capped under a second, keep-alive pings), closed at
// cleanup.
func newClient(t *testing.T, endpoint string, opts ...grpc.DialOption) *clientv3.Client {
	t.Helper()
	cli, err := etcdclient.New(context.Background(), etcdclient.Config{
		Endpoints: []string{endpoint}, DialTimeout: 2 * time.Second, DialOptions: opts,
	})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// testConfig is a valid Config for service "orders" with a 2s TTL.
func testConfig(id string) registry.Config {
	return registry.Config{
		Prefix:   prefix,
		Service:  "orders",
		ID:       id,
		Node:     "web-1",
		Addr:     "10.0.0.5:8080",
		Weight:   100,
		Metadata: map[string]string{"version": "v1.4.2", "zone": "a"},
		TTL:      2 * time.Second,
		Logger:   testLogger(),
	}
}

func keyOf(cfg registry.Config) string { return cfg.Prefix + "/" + cfg.Service + "/" + cfg.ID }

// running is a Registrar whose Run runs in a goroutine.
type running struct {
	*registry.Registrar
	cancel context.CancelFunc
	done   chan struct{}
	err    error // Run's result, once done is closed
	once   sync.Once
}

// start builds a Registrar and runs it until stop or cleanup.
func start(t *testing.T, cli *clientv3.Client, cfg registry.Config) *running {
	t.Helper()
	r, err := registry.New(cli, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return run(t, r)
}

func run(t *testing.T, r *registry.Registrar) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h := &running{Registrar: r, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		h.err = r.Run(ctx)
	}()
	t.Cleanup(func() { h.stop(t) })
	return h
}

// stop cancels Run and returns its result, failing the test if Run does
// not return within 10s.
func (h *running) stop(t *testing.T) error {
	t.Helper()
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("Run did not return within 10s of cancel")
	}
	return h.err
}

// waitState waits until Status satisfies cond, returning the Status.
func waitState(t *testing.T, r *running, timeout time.Duration, what string, cond func(registry.Status) bool) (registry.Status, time.Duration) {
	t.Helper()
	var st registry.Status
	d := etcdtest.Eventually(t, timeout, what, func() error {
		if st = r.Status(); !cond(st) {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	return st, d
}

func isRegistered(st registry.Status) bool { return st.State == registry.StateRegistered }

// record is the value the registrar writes, decoded.
type record struct {
	Addr     string
	Lease    clientv3.LeaseID
	ID       string
	Weight   int
	Node     string
	Metadata map[string]string
}

type recordMeta struct {
	ID       string            `json:"id"`
	Weight   *int              `json:"weight"`
	Node     string            `json:"node"`
	Metadata map[string]string `json:"metadata"`
}

// decode parses value the way etcd's naming endpoints does.
func decode(t *testing.T, value []byte) record {
	t.Helper()
	var md recordMeta
	var up struct {
		Op       endpoints.Operation
		Addr     string
		Metadata *recordMeta
	}
	up.Metadata = &md
	if err := json.Unmarshal(value, &up); err != nil {
		t.Fatalf("value %s: %v", value, err)
	}
	if up.Op != endpoints.Add || md.Weight == nil {
		t.Fatalf("value %s: want Op 0 and a weight", value)
	}
	return record{Addr: up.Addr, ID: md.ID, Weight: *md.Weight, Node: md.Node, Metadata: md.Metadata}
}

// get reads the key with a direct client; nil when absent.
func get(t *testing.T, cli *clientv3.Client, key string) *record {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil
	}
	rec := decode(t, resp.Kvs[0].Value)
	rec.Lease = clientv3.LeaseID(resp.Kvs[0].Lease)
	return &rec
}

// leases lists the IDs of the leases etcd holds.
func leases(t *testing.T, cli *clientv3.Client) []int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	resp, err := cli.Leases(ctx)
	if err != nil {
		t.Fatalf("leases: %v", err)
	}
	var ids []int64
	for _, l := range resp.Leases {
		ids = append(ids, int64(l.ID))
	}
	return ids
}

// waitLeases waits until etcd holds exactly the leases want.
func waitLeases(t *testing.T, cli *clientv3.Client, timeout time.Duration, want ...int64) {
	t.Helper()
	etcdtest.Eventually(t, timeout, fmt.Sprintf("leases = %x", want), func() error {
		if got := leases(t, cli); !slices.Equal(got, want) {
			return fmt.Errorf("leases %x", got)
		}
		return nil
	})
}

// keyOnLease returns an error unless key holds a record on lease.
func keyOnLease(t *testing.T, cli *clientv3.Client, key string, lease int64) error {
	t.Helper()
	if rec := get(t, cli, key); rec == nil || int64(rec.Lease) != lease {
		return fmt.Errorf("key holds %+v, want lease %x", rec, lease)
	}
	return nil
}
