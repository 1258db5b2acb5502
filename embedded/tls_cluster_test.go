package embedded

import (
	"crypto/tls"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// toHTTPS gives cfg's URLs the https scheme.
func toHTTPS(cfg *Config) {
	for _, urls := range [][]string{cfg.ListenClientURLs, cfg.ListenPeerURLs, cfg.Join} {
		for i := range urls {
			urls[i] = strings.Replace(urls[i], "http://", "https://", 1)
		}
	}
	cfg.InitialCluster = strings.ReplaceAll(cfg.InitialCluster, "http://", "https://")
}

// withTLS makes cfg a member with client and peer TLS, both requiring
// client certificates: the peer side's files are peerCert, peerKey and
// peerCA, the client side's the test CA's server certificate.
func withTLS(cfg *Config, pki *etcdtest.Certs, peerCert, peerKey, peerCA string) {
	toHTTPS(cfg)
	cfg.ClientTLS = TLS{CertFile: pki.ServerCertFile, KeyFile: pki.ServerKeyFile, TrustedCAFile: pki.CAFile, ClientCertAuth: true}
	cfg.PeerTLS = TLS{CertFile: peerCert, KeyFile: peerKey, TrustedCAFile: peerCA, ClientCertAuth: true}
}

// newTLSClient returns a client of endpoints presenting the test CA's
// client certificate, closed at cleanup.
func newTLSClient(t *testing.T, pki *etcdtest.Certs, endpoints ...string) *clientv3.Client {
	t.Helper()
	info := transport.TLSInfo{CertFile: pki.ClientCertFile, KeyFile: pki.ClientKeyFile, TrustedCAFile: pki.CAFile}
	tlsCfg, err := info.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, TLS: tlsCfg, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("client %v: %v", endpoints, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// TestTLSCluster runs a static cluster of three members with client and
// peer TLS and client certificates required on both, has a fourth member
// join it through its https client URLs (join and promotion use the
// member's client TLS), and refuses a fifth whose peer certificate and peer
// CA come from another CA: its peer handshakes fail, it never gets ready,
// and Run's error names the TLS failure, within start_timeout.
func TestTLSCluster(t *testing.T) {
	pki := etcdtest.GenCerts(t, t.TempDir())
	var logs etcdtest.LogBuffer
	cfgs := clusterConfigs(t, 3)
	for i := range cfgs {
		withTLS(&cfgs[i], pki, pki.ServerCertFile, pki.ServerKeyFile, pki.CAFile)
		cfgs[i].Logger = logs.Logger()
	}
	ms := startCluster(t, cfgs)
	cli := newTLSClient(t, pki, clientURLs(ms...)...)
	if err := checkMembers(cli, "n1", "n2", "n3"); err != nil {
		t.Fatal(err)
	}
	put(t, cli, "tls", "1")
	checkCertRequired(t, pki, ms[0].ClientURLs()[0])

	cfg := testConfig(t, "n4")
	cfg.Join = clientURLs(ms...)
	withTLS(&cfg, pki, pki.ServerCertFile, pki.ServerKeyFile, pki.CAFile)
	m4 := mustRun(t, cfg)
	if err := checkMembers(cli, "n1", "n2", "n3", "n4"); err != nil {
		t.Fatal(err)
	}
	if got := get(t, newTLSClient(t, pki, m4.ClientURLs()...), "tls"); got != "1" {
		t.Fatalf("get tls from n4 = %q, want 1", got)
	}

	bad := testConfig(t, "n5")
	bad.Join = clientURLs(ms...)
	withTLS(&bad, pki, pki.OtherServerCertFile, pki.OtherServerKeyFile, pki.OtherCAFile)
	bad.StartTimeout = 4 * time.Second
	var badLogs etcdtest.LogBuffer
	bad.Logger = slog.New(slog.NewTextHandler(&badLogs, nil))
	begin := time.Now()
	err := runFails(t, bad)
	if took := time.Since(begin); took > bad.StartTimeout+3*time.Second {
		t.Fatalf("Run(n5) failed after %s, want at most start_timeout %s (+3s)", took, bad.StartTimeout)
	}
	if want := "certificate signed by unknown authority"; !strings.Contains(err.Error(), "last TLS failure: ") || !strings.Contains(err.Error(), want) {
		t.Fatalf("Run(n5) = %v; want it to name the TLS failure (%s)", err, want)
	}
	if !strings.Contains(badLogs.String(), "x509: certificate signed by unknown authority") {
		t.Errorf("n5's log shows no refused peer certificate:\n%s", badLogs.String())
	}
	put(t, cli, "after", "2") // the cluster still serves
}

// checkCertRequired checks that the member at url refuses a client without
// certificate (client_cert_auth): TLS 1.3 reports it on the first read.
func checkCertRequired(t *testing.T, pki *etcdtest.Certs, url string) {
	t.Helper()
	tlsCfg, err := transport.TLSInfo{TrustedCAFile: pki.CAFile}.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", strings.TrimPrefix(url, "https://"), tlsCfg)
	if err == nil {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Fatalf("a client without certificate: %v; want the member to require one", err)
	}
}
