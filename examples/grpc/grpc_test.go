package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/client"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
	"github.com/sidecar-dev/sidecar/internal/record"
	"github.com/sidecar-dev/sidecar/sidecar"
)

// The README's walk-through, in one process: three servers registered
// with weights 1, 2 and 3, a sidecar daemon, and `call` through
// sidecar:///orders printing shares that follow the weights.
func TestCallFollowsWeights(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	socket := filepath.Join(etcdtest.SocketDir(t), "s.sock")
	startDaemon(t, e.ClientURL, socket)
	t.Setenv(client.SocketEnv, socket) // the registered resolver reads it

	addrs := make([]string, 3)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("127.0.0.1:%d", etcdtest.FreePort(t))
		id := fmt.Sprintf("orders-%d", i+1)
		v := record.Encode(record.Instance{ID: id, Addr: addrs[i], Weight: i + 1})
		if _, err := cli.Put(t.Context(), "/sidecar/services/orders/"+id, string(v)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- run(ctx, append([]string{"serve"}, addrs...), nil) }()
	t.Cleanup(func() { cancel(); <-served })
	etcdtest.Eventually(t, 10*time.Second, "servers listening", func() error {
		for _, a := range addrs {
			c, err := net.Dial("tcp", a)
			if err != nil {
				return err
			}
			c.Close()
		}
		return nil
	})

	var out bytes.Buffer
	if err := run(t.Context(), []string{"call", "-n", "600", "sidecar:///orders"}, &out); err != nil {
		t.Fatal(err)
	}
	t.Logf("output:\n%s", &out)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want one line per server, got:\n%s", &out)
	}
	weight := map[string]int{addrs[0]: 1, addrs[1]: 2, addrs[2]: 3}
	for _, line := range lines {
		var addr string
		var n int
		var pct float64
		if _, err := fmt.Sscanf(line, "%s\t%d calls\t%f%%", &addr, &n, &pct); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		want := 100 * float64(weight[addr]) / 6
		if pct < want-3 || pct > want+3 {
			t.Errorf("line %q: want %.1f%% ± 3 pp (weight %d of 6)", line, want, weight[addr])
		}
	}
}

// startDaemon runs a sidecar daemon in join mode on the etcd at endpoint
// until the test ends.
func startDaemon(t *testing.T, endpoint, socket string) {
	cfg := sidecar.Defaults()
	cfg.Name = "example"
	cfg.DataDir = t.TempDir()
	cfg.Etcd.Endpoints = []string{endpoint}
	cfg.API.Socket = socket
	d, err := sidecar.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-d.Ready():
	case err := <-done:
		t.Fatalf("daemon ended before ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("daemon not ready after 30s")
	}
}
