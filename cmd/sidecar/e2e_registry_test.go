package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/client"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

func serviceYAML(t *testing.T, etcdURL string) string {
	return fmt.Sprintf(`
name: node-a
data_dir: %s
etcd: {endpoints: [%s]}
service: {name: orders, address: 127.0.0.1, port: 8080, ttl: 2s, metadata: {zone: a}}
`, t.TempDir(), etcdURL)
}

const ordersKey = "/sidecar/services/orders/orders-node-a-8080"

func waitKey(t *testing.T, cli *clientv3.Client, present bool, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		resp, err := cli.Get(context.Background(), ordersKey)
		if err == nil && (len(resp.Kvs) == 1) == present {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("key present=%v not reached within %s (err %v)", present, within, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startOrders runs `sidecar run` registering orders through etcdURL and
// returns once cli sees the key.
func startOrders(t *testing.T, cli *clientv3.Client, etcdURL string) *daemonProc {
	t.Helper()
	p := startProc(t, serviceYAML(t, etcdURL))
	p.waitHealthy(t)
	waitKey(t, cli, true, 5*time.Second)
	return p
}

// The built binary registers, answers the CLI, changes weight, and on
// SIGTERM removes its key at once and leaves no lease behind.
func TestE2ERegisterWeightSigterm(t *testing.T) {
	srv := etcdtest.StartServer(t, etcdtest.ServerOptions{})
	cli := srv.Client(t)
	p := startOrders(t, cli, srv.ClientURL)

	out, err := p.cli(t, "services")
	if err != nil || strings.TrimSpace(out) != "orders" {
		t.Fatalf("services: %q %v", out, err)
	}
	out, err = p.cli(t, "services", "orders")
	if err != nil || !strings.Contains(out, "orders-node-a-8080") || !strings.Contains(out, "127.0.0.1:8080") || !strings.Contains(out, "zone=a") {
		t.Fatalf("services orders:\n%s %v", out, err)
	}
	if out, err := p.cli(t, "weight", "0"); err != nil || out != "weight 0\n" {
		t.Fatalf("weight 0: %q %v", out, err)
	}
	out, err = p.cli(t, "services", "orders", "--json")
	var s api.Service
	if err != nil || json.Unmarshal([]byte(out), &s) != nil || len(s.Instances) != 1 || s.Instances[0].Weight != 0 {
		t.Fatalf("services --json after weight 0: %s %v", out, err)
	}
	if _, err := p.cli(t, "weight", "-3"); err == nil {
		t.Fatal("weight -3 accepted")
	}

	p.cmd.Process.Signal(syscall.SIGTERM)
	gone := waitKey(t, cli, false, 5*time.Second)
	t.Logf("key gone %s after SIGTERM", gone)
	if code := p.terminate(t); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if out, err := etcdtest.Etcdctl(t, srv.ClientURL, "lease", "list"); err != nil || !strings.Contains(out, "found 0 leases") {
		t.Fatalf("etcdctl lease list after SIGTERM: %q %v", out, err)
	}
}

// Metadata keys and values written by the user reach etcd unchanged:
// etcdctl reads Version and AZ, not version and az.
func TestE2EMetadataKeepsCase(t *testing.T) {
	srv := etcdtest.StartServer(t, etcdtest.ServerOptions{})
	cli := srv.Client(t)
	p := startProc(t, fmt.Sprintf(`
name: node-a
data_dir: %s
etcd: {endpoints: [%s]}
service:
  name: orders
  address: 127.0.0.1
  port: 8080
  ttl: 2s
  metadata: {Version: v1, AZ: eu-1a}
`, t.TempDir(), srv.ClientURL))
	p.waitHealthy(t)
	waitKey(t, cli, true, 5*time.Second)

	out, err := etcdtest.Etcdctl(t, srv.ClientURL, "get", ordersKey, "--print-value-only")
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Metadata struct {
			Metadata map[string]string `json:"metadata"`
		}
	}
	if err := json.Unmarshal([]byte(out), &rec); err != nil {
		t.Fatalf("etcdctl get: %v\n%s", err, out)
	}
	if want := map[string]string{"Version": "v1", "AZ": "eu-1a"}; !maps.Equal(rec.Metadata.Metadata, want) {
		t.Fatalf("metadata in etcd = %v, want %v\n%s", rec.Metadata.Metadata, want, out)
	}
	if out, err := p.cli(t, "services", "orders"); err != nil || !strings.Contains(out, "AZ=eu-1a,Version=v1") {
		t.Fatalf("services orders: %v\n%s", err, out)
	}
}

// SIGKILL: nobody revokes, so the key goes when the lease expires (TTL 2s).
func TestE2ESigkillKeyExpires(t *testing.T) {
	srv := etcdtest.StartServer(t, etcdtest.ServerOptions{})
	cli := srv.Client(t)
	p := startOrders(t, cli, srv.ClientURL)
	p.cmd.Process.Signal(syscall.SIGKILL)
	gone := waitKey(t, cli, false, 10*time.Second)
	t.Logf("key gone %s after SIGKILL (ttl 2s)", gone)
	if gone < time.Second {
		t.Fatalf("key gone after %s: a killed sidecar cannot revoke, it must live until the lease expires", gone)
	}
}

// `etcdctl del` of the key: the sidecar writes it back.
func TestE2EKeyDeletedByOperator(t *testing.T) {
	srv := etcdtest.StartServer(t, etcdtest.ServerOptions{})
	cli := srv.Client(t)
	startOrders(t, cli, srv.ClientURL)
	if out, err := etcdtest.Etcdctl(t, srv.ClientURL, "del", ordersKey); err != nil || strings.TrimSpace(out) != "1" {
		t.Fatalf("etcdctl del: %q %v", out, err)
	}
	back := waitKey(t, cli, true, 5*time.Second)
	t.Logf("key back %s after etcdctl del", back)
}

// A partition longer than the TTL between the sidecar and etcd (a TCP proxy
// that blackholes): the key expires, the sidecar reports lost and 503; once
// the proxy heals it registers again by itself.
func TestE2EPartitionHeals(t *testing.T) {
	srv := etcdtest.StartServer(t, etcdtest.ServerOptions{})
	cli := srv.Client(t)
	proxy := etcdtest.StartProxy(t, srv.ClientURL)
	p := startOrders(t, cli, proxy.URL())

	proxy.Blackhole()
	waitKey(t, cli, false, 10*time.Second) // TTL 2s, nobody keeps it alive
	p.waitStatus(t, "lost registration", 10*time.Second, func(st api.Status) bool {
		return st.Registration != nil && st.Registration.State == api.RegLost
	})
	if h, err := client.New(p.socket).Health(t.Context()); err != nil || h.Healthy || h.Components["registration"].State != api.RegLost {
		t.Fatalf("health while lost = %+v, %v; want 503 naming lost", h, err)
	}

	proxy.Heal()
	back := waitKey(t, cli, true, 15*time.Second)
	t.Logf("key back %s after the partition healed", back)
	p.waitStatus(t, "registration again", 10*time.Second, func(st api.Status) bool {
		return st.Registration.State == api.RegRegistered && st.Registration.Reregistrations >= 1
	})
}
