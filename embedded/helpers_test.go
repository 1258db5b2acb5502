package embedded

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

var (
	portsMu sync.Mutex
	used    = map[int]bool{}
)

// freeURL returns http://127.0.0.1:PORT on a free port no other test of this
// package was given.
func freeURL(t *testing.T) string {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for {
		p := etcdtest.FreePort(t)
		if !used[p] {
			used[p] = true
			return fmt.Sprintf("http://127.0.0.1:%d", p)
		}
	}
}

// testLogger discards, unless EMBEDDED_TEST_LOG is set (then debug to stderr).
func testLogger() *slog.Logger {
	if os.Getenv("EMBEDDED_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// testConfig is a single member on free loopback ports with fast raft timing.
func testConfig(t *testing.T, name string) Config {
	t.Helper()
	return Config{
		Name:              name,
		DataDir:           filepath.Join(t.TempDir(), "etcd"),
		ListenClientURLs:  []string{freeURL(t)},
		ListenPeerURLs:    []string{freeURL(t)},
		HeartbeatInterval: 50 * time.Millisecond,
		ElectionTimeout:   500 * time.Millisecond,
		StartTimeout:      30 * time.Second,
		Logger:            testLogger(),
	}
}

// clusterConfigs returns n configurations of one static cluster.
func clusterConfigs(t *testing.T, n int) []Config {
	t.Helper()
	cfgs := make([]Config, n)
	var parts []string
	for i := range cfgs {
		cfgs[i] = testConfig(t, fmt.Sprintf("n%d", i+1))
		parts = append(parts, cfgs[i].Name+"="+cfgs[i].ListenPeerURLs[0])
	}
	for i := range cfgs {
		cfgs[i].InitialCluster = strings.Join(parts, ",")
		cfgs[i].InitialClusterToken = "test-" + t.Name()
	}
	return cfgs
}

// mustStart starts cfg and closes the member at cleanup.
func mustStart(t *testing.T, cfg Config) *Member {
	t.Helper()
	m, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Start(%s): %v", cfg.Name, err)
	}
	t.Cleanup(m.Close)
	return m
}

// startCluster starts the members of cfgs concurrently, as a new static
// cluster needs.
func startCluster(t *testing.T, cfgs []Config) []*Member {
	t.Helper()
	ms := make([]*Member, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, cfg := range cfgs {
		wg.Go(func() { ms[i], errs[i] = Start(t.Context(), cfg) })
	}
	wg.Wait()
	for i, m := range ms {
		if m != nil {
			t.Cleanup(m.Close)
		}
		if errs[i] != nil {
			t.Fatalf("Start(%s): %v", cfgs[i].Name, errs[i])
		}
	}
	return ms
}

// newClient returns a client of endpoints, closed at cleanup.
func newClient(t *testing.T, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("client %v: %v", endpoints, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// put writes key=val through cli within 10s.
func put(t *testing.T, cli *clientv3.Client, key, val string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, key, val); err != nil {
		t.Fatalf("put %s via %v: %v", key, cli.Endpoints(), err)
	}
}

// get reads key through cli (linearizable) within 10s.
func get(t *testing.T, cli *clientv3.Client, key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatalf("get %s via %v: %v", key, cli.Endpoints(), err)
	}
	if len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}

// eventually polls f every 50ms until it returns nil or d passes.
func eventually(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true after %s: %v", d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
