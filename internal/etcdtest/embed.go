package etcdtest

import (
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Embedded is a single-member etcd cluster running inside the test process.
type Embedded struct {
	Etcd      *embed.Etcd
	ClientURL string // http://127.0.0.1:PORT
	PeerURL   string
	Dir       string
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("etcdtest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// StartEmbedded starts a single etcd member on free loopback ports with its
// data in t.TempDir, waits until it serves, and stops it at test cleanup.
func StartEmbedded(t testing.TB) *Embedded {
	t.Helper()
	dir := t.TempDir()
	cfg := embed.NewConfig()
	cfg.Name = "test"
	cfg.Dir = dir
	cfg.Logger = "zap"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		curl, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", FreePort(t)))
		purl, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", FreePort(t)))
		cfg.ListenClientUrls = []url.URL{*curl}
		cfg.AdvertiseClientUrls = []url.URL{*curl}
		cfg.ListenPeerUrls = []url.URL{*purl}
		cfg.AdvertisePeerUrls = []url.URL{*purl}
		cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			lastErr = err // most likely a port taken between FreePort and Listen
			continue
		}
		t.Cleanup(e.Close)
		select {
		case <-e.Server.ReadyNotify():
		case err := <-e.Err():
			t.Fatalf("etcdtest: embedded etcd failed: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatalf("etcdtest: embedded etcd not ready after 30s")
		}
		return &Embedded{Etcd: e, ClientURL: curl.String(), PeerURL: purl.String(), Dir: dir}
	}
	t.Fatalf("etcdtest: start embedded etcd: %v", lastErr)
	return nil
}

// Client returns a client of the member, closed at test cleanup.
func (e *Embedded) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{e.ClientURL},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("etcdtest: client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}
