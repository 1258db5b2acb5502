package embedded

import (
	"context"
	"errors"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestStartSingleMember(t *testing.T) {
	cfg := testConfig(t, "single")
	m := mustStart(t, cfg)

	if m.ID() == 0 {
		t.Errorf("ID() = 0, want the member's ID")
	}
	if got := m.ClientURLs(); !slices.Equal(got, cfg.ListenClientURLs) {
		t.Errorf("ClientURLs() = %v, want %v (advertise defaults to listen)", got, cfg.ListenClientURLs)
	}
	cli := newClient(t, m.ClientURLs()...)
	put(t, cli, "k", "v1")
	if got := get(t, cli, "k"); got != "v1" {
		t.Fatalf("get k = %q, want v1", got)
	}

	m.Close()
	m.Close() // a no-op
	select {
	case err, ok := <-m.Err():
		if ok {
			t.Errorf("Err() after Close delivered %v, want a closed channel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("Err() not closed after Close")
	}
	for _, s := range append(cfg.ListenClientURLs, cfg.ListenPeerURLs...) {
		u, _ := url.Parse(s)
		l, err := net.Listen("tcp", u.Host)
		if err != nil {
			t.Errorf("%s still taken after Close: %v", s, err)
			continue
		}
		l.Close()
	}
}

func TestRestartKeepsData(t *testing.T) {
	cfg := testConfig(t, "restart")
	m := mustStart(t, cfg)
	id := m.ID()
	put(t, newClient(t, m.ClientURLs()...), "k", "kept")
	m.Close()

	m2 := mustStart(t, cfg)
	if m2.ID() != id {
		t.Errorf("ID after restart = %x, want %x", m2.ID(), id)
	}
	if got := get(t, newClient(t, m2.ClientURLs()...), "k"); got != "kept" {
		t.Fatalf("get k after restart = %q, want kept", got)
	}
}

func TestDataDirInUseBySidecar(t *testing.T) {
	cfg := testConfig(t, "first")
	mustStart(t, cfg)

	second := testConfig(t, "second")
	second.DataDir = cfg.DataDir
	begin := time.Now()
	m, err := Start(t.Context(), second)
	if err == nil {
		m.Close()
		t.Fatalf("second Start on %s succeeded, want it to fail", cfg.DataDir)
	}
	if took := time.Since(begin); took > 5*time.Second {
		t.Errorf("second Start took %s, want it to fail fast", took)
	}
	if !errors.Is(err, ErrDataDirInUse) || !strings.Contains(err.Error(), cfg.DataDir) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Start: %v; want ErrDataDirInUse naming %s", err, cfg.DataDir)
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
			m, err := Start(t.Context(), cfg)
			if err == nil {
				m.Close()
				t.Fatalf("Start on taken %s succeeded", taken)
			}
			if msg := err.Error(); !strings.Contains(msg, taken) || !strings.Contains(msg, "embedded."+field) {
				t.Fatalf("Start: %v; want the error to name %s and embedded.%s", err, taken, field)
			}
			// The failed start released the data dir.
			l.Close()
			mustStart(t, cfg).Close()
		})
	}
}

// TestDiscoverySRVWithoutRecords checks that discovery_srv reaches etcd: with
// no SRV records Start fails at once, naming the records it looked for. It
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
	m, err := Start(t.Context(), cfg)
	if err == nil {
		m.Close()
		t.Fatalf("Start with discovery_srv %s succeeded without SRV records", domain)
	}
	t.Logf("Start: %v", err)
	if !strings.Contains(err.Error(), "_etcd-server._tcp."+domain) {
		t.Fatalf("Start: %v; want it to name _etcd-server._tcp.%s", err, domain)
	}
}

func TestStartTimeoutWithoutQuorum(t *testing.T) {
	cfg := clusterConfigs(t, 3)[0] // the other two never start
	cfg.StartTimeout = 2 * time.Second
	begin := time.Now()
	m, err := Start(t.Context(), cfg)
	if err == nil {
		m.Close()
		t.Fatalf("Start of one member of three succeeded")
	}
	if took := time.Since(begin); took > 10*time.Second {
		t.Errorf("Start took %s with start_timeout 2s", took)
	}
	if msg := err.Error(); !strings.Contains(msg, "start_timeout 2s") || !strings.Contains(msg, "quorum") {
		t.Fatalf("Start: %v; want it to name start_timeout and quorum", err)
	}
	lf, err := lockDataDir(cfg.DataDir)
	if err != nil {
		t.Fatalf("data dir still locked after the failed Start: %v", err)
	}
	lf.Close()
}

func TestStartCanceled(t *testing.T) {
	cfg := clusterConfigs(t, 2)[0] // never ready: the other member never starts
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(300*time.Millisecond, cancel)
	m, err := Start(ctx, cfg)
	if err == nil {
		m.Close()
		t.Fatalf("Start succeeded without quorum")
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Start: %v, want context.Canceled", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	m := mustStart(t, testConfig(t, "shared"))
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			_ = m.ID()
			_ = m.ClientURLs()
			_ = m.Err()
			m.Close()
		}()
	}
	for range 4 {
		<-done
	}
	if _, ok := <-m.Err(); ok {
		t.Fatalf("Err() still open after Close")
	}
}
