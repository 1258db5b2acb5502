package embedded

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// portsFree fails the test for each URL whose port is still taken.
func portsFree(t *testing.T, urls ...string) {
	t.Helper()
	for _, s := range urls {
		u, _ := url.Parse(s)
		l, err := net.Listen("tcp", u.Host)
		if err != nil {
			t.Errorf("%s still taken: %v", s, err)
			continue
		}
		l.Close()
	}
}

// dataDirFree fails the test unless the data dir's lock can be taken
// within d.
func dataDirFree(t *testing.T, dir string, d time.Duration) {
	t.Helper()
	etcdtest.Eventually(t, d, "data dir "+dir+" released", func() error {
		lf, err := lockDataDir(dir)
		if err == nil {
			lf.Close()
		}
		return err
	})
}

func TestRunSingleMember(t *testing.T) {
	cfg := testConfig(t, "single")
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cfg.DataDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after New, stat %s = %v; want New to touch no disk", cfg.DataDir, err)
	}
	portsFree(t, append(cfg.ListenClientURLs, cfg.ListenPeerURLs...)...)
	if got := m.ClientURLs(); !slices.Equal(got, cfg.ListenClientURLs) {
		t.Errorf("ClientURLs() = %v, want %v (advertise defaults to listen)", got, cfg.ListenClientURLs)
	}
	if m.Name() != "single" || !slices.Equal(m.PeerURLs(), cfg.ListenPeerURLs) || m.ID() != 0 {
		t.Errorf("before Run: Name %q, PeerURLs %v, ID %x; want single, %v, 0", m.Name(), m.PeerURLs(), m.ID(), cfg.ListenPeerURLs)
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	select {
	case <-m.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	if m.ID() == 0 {
		t.Errorf("ID() = 0 after Ready, want the member's ID")
	}
	cli := newClient(t, m.ClientURLs()...)
	put(t, cli, "k", "v1")
	if got := get(t, cli, "k"); got != "v1" {
		t.Fatalf("get k = %q, want v1", got)
	}
	if err := m.Run(ctx); err == nil || !strings.Contains(err.Error(), "Run called twice") {
		t.Errorf("second Run = %v, want an error saying Run was called twice", err)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after its context ended = %v, want nil", err)
	}
	portsFree(t, append(cfg.ListenClientURLs, cfg.ListenPeerURLs...)...)
	dataDirFree(t, cfg.DataDir, 0)
}

func TestNewInvalid(t *testing.T) {
	cfg := testConfig(t, "")
	if m, err := New(cfg); err == nil || !strings.Contains(err.Error(), "embedded.name") {
		t.Fatalf("New without a name = %v, %v; want an error naming embedded.name", m, err)
	}
}

func TestRestartKeepsData(t *testing.T) {
	cfg := testConfig(t, "restart")
	r := mustRun(t, cfg)
	id := r.ID()
	put(t, newClient(t, r.ClientURLs()...), "k", "kept")
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	r2 := mustRun(t, cfg)
	if r2.ID() != id {
		t.Errorf("ID after restart = %x, want %x", r2.ID(), id)
	}
	if got := get(t, newClient(t, r2.ClientURLs()...), "k"); got != "kept" {
		t.Fatalf("get k after restart = %q, want kept", got)
	}
}

func TestDataDirInUseBySidecar(t *testing.T) {
	cfg := testConfig(t, "first")
	mustRun(t, cfg)

	second := testConfig(t, "second")
	second.DataDir = cfg.DataDir
	begin := time.Now()
	err := runFails(t, second)
	if took := time.Since(begin); took > 5*time.Second {
		t.Errorf("second Run took %s, want it to fail fast", took)
	}
	if !errors.Is(err, ErrDataDirInUse) || !strings.Contains(err.Error(), cfg.DataDir) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Run: %v; want ErrDataDirInUse naming %s", err, cfg.DataDir)
	}
}

func TestPortInUse(t *testing.T) {
	for _, field := range []string{"listen_peer_urls", "listen_client_urls"} {
		t.Run(field, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			taken := "http://" + l.Addr().String()
			cfg := testConfig(t, "busy")
			if field == "listen_peer_urls" {
				cfg.ListenPeerURLs = []string{taken}
			} else {
				cfg.ListenClientURLs = []string{taken}
			}
			err = runFails(t, cfg)
			if msg := err.Error(); !strings.Contains(msg, taken) || !strings.Contains(msg, "embedded."+field) {
				t.Fatalf("Run: %v; want the error to name %s and embedded.%s", err, taken, field)
			}
			// The failed start released the data dir.
			l.Close()
			if err := mustRun(t, cfg).stop(); err != nil {
				t.Fatalf("Run once the port is free: %v", err)
			}
		})
	}
}

// TestDiscoverySRVWithoutRecords checks that discovery_srv reaches etcd: with
// no SRV records Run fails at once, naming the records it looked for. It
// needs the system resolver to answer NXDOMAIN for the reserved .invalid TLD.
func TestDiscoverySRVWithoutRecords(t *testing.T) {
	const domain = "sidecar-test.invalid"
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	var dnsErr *net.DNSError
	if _, _, err := net.DefaultResolver.LookupSRV(ctx, "etcd-server", "tcp", domain); !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Skipf("the system resolver does not answer NXDOMAIN for %s quickly: %v", domain, err)
	}
	cfg := testConfig(t, "srv")
	cfg.DiscoverySRV = domain
	if err := runFails(t, cfg); !strings.Contains(err.Error(), "_etcd-server._tcp."+domain) {
		t.Fatalf("Run: %v; want it to name _etcd-server._tcp.%s", err, domain)
	}
}

func TestStartTimeoutWithoutQuorum(t *testing.T) {
	cfg := clusterConfigs(t, 3)[0] // the other two never start
	cfg.StartTimeout = 2 * time.Second
	begin := time.Now()
	err := runFails(t, cfg)
	if took := time.Since(begin); took > 10*time.Second {
		t.Errorf("Run took %s with start_timeout 2s", took)
	}
	if msg := err.Error(); !strings.Contains(msg, "start_timeout 2s") || !strings.Contains(msg, "quorum") {
		t.Fatalf("Run: %v; want it to name start_timeout and quorum", err)
	}
	dataDirFree(t, cfg.DataDir, 0)
}

// TestRunCanceledDuringStart: a member that cannot get ready (its cluster
// has no quorum) stops when Run's context ends, and that is not an error.
func TestRunCanceledDuringStart(t *testing.T) {
	cfg := clusterConfigs(t, 2)[0] // never ready: the other member never starts
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(300*time.Millisecond, cancel)
	begin := time.Now()
	if err := m.Run(ctx); err != nil {
		t.Fatalf("Run cancelled during start-up = %v, want nil", err)
	}
	if took := time.Since(begin); took > 5*time.Second {
		t.Errorf("Run took %s to return after its context ended at 300ms", took)
	}
	select {
	case <-m.Ready():
		t.Fatalf("Ready closed, but the member had no quorum")
	default:
	}
	// Released at once, unless the cancel came while etcd's own start-up
	// call was running: then as soon as that returns.
	dataDirFree(t, cfg.DataDir, 10*time.Second)
	portsFree(t, append(cfg.ListenClientURLs, cfg.ListenPeerURLs...)...)
}

func TestConcurrentUse(t *testing.T) {
	cfg := testConfig(t, "shared")
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		done <- m.Run(ctx)
	}()
	ids := make([]uint64, 4)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() {
			for {
				_, _, _ = m.Name(), m.ClientURLs(), m.PeerURLs()
				select {
				case <-m.Ready():
					ids[i] = m.ID()
					return
				case <-returned:
					return
				default:
					_ = m.ID()
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	for i, id := range ids {
		if id == 0 || id != ids[0] {
			t.Errorf("reader %d saw ID %x after Ready, want %x (nonzero)", i, id, ids[0])
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
