package etcdtest_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

func TestGenCerts(t *testing.T) {
	c := etcdtest.GenCerts(t, t.TempDir(), "10.1.2.3", "etcd.example.test")
	roots := pool(t, c.CAFile)
	other := pool(t, c.OtherCAFile)

	server := leaf(t, c.ServerCertFile, c.ServerKeyFile)
	for _, host := range []string{"127.0.0.1", "::1", "localhost", "10.1.2.3", "etcd.example.test"} {
		if _, err := server.Verify(x509.VerifyOptions{Roots: roots, DNSName: host}); err != nil {
			t.Errorf("server certificate for %s: %v", host, err)
		}
	}
	if _, err := server.Verify(x509.VerifyOptions{Roots: other, DNSName: "localhost"}); err == nil {
		t.Errorf("server certificate verifies against the other CA")
	}
	client := leaf(t, c.ClientCertFile, c.ClientKeyFile)
	if client.Subject.CommonName != etcdtest.ClientUser {
		t.Errorf("client CN = %q, want %q", client.Subject.CommonName, etcdtest.ClientUser)
	}
	opts := x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if _, err := client.Verify(opts); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	otherClient := leaf(t, c.OtherClientCertFile, c.OtherClientKeyFile)
	if _, err := otherClient.Verify(opts); err == nil {
		t.Errorf("other client certificate verifies against the CA")
	}
	if fi, err := os.Stat(c.ClientKeyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("client key mode: %v %v", fi.Mode(), err)
	}
}

func pool(t *testing.T, file string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		t.Fatalf("%s: no certificate", file)
	}
	return p
}

func leaf(t *testing.T, certFile, keyFile string) *x509.Certificate {
	t.Helper()
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		t.Fatalf("key pair %s: %v", certFile, err)
	}
	b, _ := os.ReadFile(certFile)
	block, _ := pem.Decode(b)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestStartServerRestartKill(t *testing.T) {
	s := etcdtest.StartServer(t, etcdtest.ServerOptions{})
	if !strings.HasPrefix(s.ClientURL, "http://127.0.0.1:") {
		t.Errorf("ClientURL = %q", s.ClientURL)
	}
	cli := s.Client(t)
	if _, err := cli.Put(t.Context(), "k", "v1"); err != nil {
		t.Fatalf("put: %v", err)
	}
	s.Restart()
	resp, err := cli.Get(t.Context(), "k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v1" {
		t.Fatalf("get after restart: %v %v", resp, err)
	}
	if out, err := etcdtest.Etcdctl(t, s.ClientURL, "get", "k", "--print-value-only"); err != nil || strings.TrimSpace(out) != "v1" {
		t.Fatalf("etcdctl get = %q, %v", out, err)
	}
	s.Kill()
	if s.Running() {
		t.Fatalf("running after Kill")
	}
	if _, err := etcdtest.Etcdctl(t, s.ClientURL, "get", "k", "--command-timeout=1s"); err == nil {
		t.Fatalf("etcdctl get succeeded after Kill")
	}
}

func TestStartServerTLSAuth(t *testing.T) {
	c := etcdtest.GenCerts(t, t.TempDir())
	s := etcdtest.StartServer(t, etcdtest.ServerOptions{TLS: &etcdtest.ServerTLS{
		CertFile: c.ServerCertFile, KeyFile: c.ServerKeyFile, TrustedCAFile: c.CAFile, ClientCertAuth: true,
		ClientCertFile: c.ClientCertFile, ClientKeyFile: c.ClientKeyFile,
	}})
	if !strings.HasPrefix(s.ClientURL, "https://") {
		t.Fatalf("ClientURL = %q", s.ClientURL)
	}
	tlsArgs := []string{"--cacert=" + c.CAFile, "--cert=" + c.ClientCertFile, "--key=" + c.ClientKeyFile}
	for _, args := range [][]string{{"user", "add", "root:pw", "--interactive=false"}, {"auth", "enable"}} {
		if out, err := etcdtest.Etcdctl(t, s.ClientURL, append(tlsArgs, args...)...); err != nil {
			t.Fatalf("etcdctl %v: %v\n%s", args, err, out)
		}
	}
	if _, err := etcdtest.Etcdctl(t, s.ClientURL, "--cacert="+c.CAFile, "get", "k", "--command-timeout=2s"); err == nil {
		t.Errorf("etcdctl without a client certificate succeeded")
	}
	// The client certificate's CN is the root user.
	cli := s.Client(t)
	if _, err := cli.Put(t.Context(), "k", "v"); err != nil {
		t.Fatalf("put as %s: %v", etcdtest.ClientUser, err)
	}
	start := time.Now()
	s.Restart() // readiness with auth on
	t.Logf("restart with TLS and auth took %s", time.Since(start))
}
