package etcdclient_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/sidecar-dev/sidecar/internal/etcdclient"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

const proxyChildEnv = "ETCDCLIENT_TEST_PROXY_ENDPOINT"

// TestIgnoresProxy runs TestIgnoresProxyChild in a new process, with the
// proxy variables pointing at a dead proxy: net/http reads them once per
// process, and gRPC skips the proxy for loopback addresses anyway, so the
// server listens on a non-loopback address.
func TestIgnoresProxy(t *testing.T) {
	ip := nonLoopbackIPv4(t)
	s := etcdtest.StartServer(t, etcdtest.ServerOptions{Host: ip})
	dead := fmt.Sprintf("http://127.0.0.1:%d", etcdtest.FreePort(t))
	for _, name := range []string{"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"} {
		t.Setenv(name, dead)
	}
	t.Setenv("NO_PROXY", "")
	t.Setenv("no_proxy", "")
	t.Setenv(proxyChildEnv, s.ClientURL)

	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestIgnoresProxyChild$", "-test.v", "-test.count=1")
	out, err := cmd.CombinedOutput()
	t.Logf("child output:\n%s", out)
	if err != nil || !strings.Contains(string(out), "--- PASS: TestIgnoresProxyChild") {
		t.Fatalf("child test failed: %v", err)
	}
}

func TestIgnoresProxyChild(t *testing.T) {
	ep := os.Getenv(proxyChildEnv)
	if ep == "" {
		t.Skip("run by TestIgnoresProxy")
	}
	// Control: a client that honours the proxy variables cannot get through.
	raw, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if _, err := raw.Get(ctx, "k"); err == nil {
		t.Fatalf("control: a default clientv3 client reached %s through the dead proxy %s; the test proves nothing", ep, os.Getenv("HTTPS_PROXY"))
	} else {
		t.Logf("control client: %v", err)
	}
	putGet(t, newChecked(t, etcdclient.Config{Endpoints: []string{ep}}))
}

// nonLoopbackIPv4 returns an address of this host that is not loopback,
// or skips the test.
func nonLoopbackIPv4(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Skipf("no interface addresses: %v", err)
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.To4() == nil || ipn.IP.IsLoopback() || ipn.IP.IsLinkLocalUnicast() {
			continue
		}
		if l, err := net.Listen("tcp", net.JoinHostPort(ipn.IP.String(), "0")); err == nil {
			l.Close()
			return ipn.IP.String()
		}
	}
	t.Skip("no usable non-loopback IPv4 address")
	return ""
}
