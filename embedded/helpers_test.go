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

// running is a Member whose Run a test runs in a goroutine.
type running struct {
	*Member
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error         // Run's result, once done is closed
}

// run makes a Member of cfg with New and runs it until stop or the end of
// the test. It returns when the member is ready (nil) or Run returned (Run's
// error, or one saying Run returned nil before Ready). It may be called
// from any goroutine.
func run(t *testing.T, cfg Config) (*running, error) {
	m, err := New(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(t.Context())
	r := &running{Member: m, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = m.Run(ctx)
	}()
	t.Cleanup(func() { r.stop() })
	select {
	case <-m.Ready():
		return r, nil
	case <-r.done:
		if r.err == nil {
			return r, fmt.Errorf("Run(%s) returned nil before Ready", cfg.Name)
		}
		return r, r.err
	}
}

// stop cancels Run's context and returns Run's result once it returned.
func (r *running) stop() error {
	r.cancel()
	<-r.done
	return r.err
}

// wait returns Run's result once Run returns on its own, failing the test
// after d.
func (r *running) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(d):
		t.Fatalf("Run(%s) still running after %s", r.Name(), d)
		return nil
	}
}

// mustRun runs cfg (see run), failing the test unless the member gets ready.
func mustRun(t *testing.T, cfg Config) *running {
	t.Helper()
	r, err := run(t, cfg)
	if err != nil {
		t.Fatalf("Run(%s): %v", cfg.Name, err)
	}
	return r
}

// runFails runs cfg, expecting its start-up to fail, and returns Run's
// error. It checks that Ready stays open.
func runFails(t *testing.T, cfg Config) error {
	t.Helper()
	r, err := run(t, cfg)
	switch {
	case r == nil:
		t.Fatalf("New(%s): %v", cfg.Name, err)
	case err == nil:
		r.stop()
		t.Fatalf("Run(%s) got ready, want its start-up to fail", cfg.Name)
	}
	select {
	case <-r.Ready():
		t.Errorf("Ready closed although Run(%s) failed", cfg.Name)
	default:
	}
	t.Logf("Run(%s): %v", cfg.Name, err)
	return err
}

// startCluster runs the members of cfgs concurrently, as a new static
// cluster needs, and waits until all are ready.
func startCluster(t *testing.T, cfgs []Config) []*running {
	t.Helper()
	rs := make([]*running, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, cfg := range cfgs {
		wg.Go(func() { rs[i], errs[i] = run(t, cfg) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Run(%s): %v", cfgs[i].Name, err)
		}
	}
	return rs
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
