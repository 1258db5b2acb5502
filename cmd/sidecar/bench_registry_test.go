package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/client"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// Registration figures for the README, against a real etcd process:
//
//	go test -run '^$' -bench 'Deregister|Register' -benchtime 20x ./cmd/sidecar

// startRegistered starts a sidecar registering orders with the given TTL
// and returns once the key is visible to watcher w.
func startRegistered(b *testing.B, etcdURL string, ttl string, w clientv3.WatchChan) (*daemonHandle, time.Duration) {
	b.Helper()
	dir, _ := os.MkdirTemp("", "scb")
	b.Cleanup(func() { os.RemoveAll(dir) })
	yaml := fmt.Sprintf("name: node-a\ndata_dir: %s\netcd: {endpoints: [%s]}\nlog: {level: warn}\n"+
		"service: {name: orders, address: 127.0.0.1, port: 8080, ttl: %s}\n", dir, etcdURL, ttl)
	cfg, socket := filepath.Join(dir, "c.yaml"), filepath.Join(dir, "s.sock")
	os.WriteFile(cfg, []byte(yaml), 0o600)
	h := &daemonHandle{cmd: exec.Command(sidecarBinary(b), "run", "--config", cfg, "--socket", socket), cli: client.New(socket)}
	start := time.Now()
	if err := h.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	waitEvent(b, w, mvccpb.PUT)
	return h, time.Since(start)
}

type daemonHandle struct {
	cmd *exec.Cmd
	cli *client.Client
}

func waitEvent(b *testing.B, w clientv3.WatchChan, typ mvccpb.Event_EventType) {
	b.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case resp := <-w:
			for _, ev := range resp.Events {
				if ev.Type == typ {
					return
				}
			}
		case <-timeout:
			b.Fatalf("no %v event within 30s", typ)
		}
	}
}

// BenchmarkDeregister: signal to the remote watcher seeing the DELETE.
// sigterm: the sidecar revokes its lease; floor: a bare clientv3 Revoke of a
// lease holding a key; sigkill: nobody revokes, the lease expires (TTL 2s).
func BenchmarkDeregister(b *testing.B) {
	srv := etcdtest.StartServer(b, etcdtest.ServerOptions{})
	cli := srv.Client(b)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		b.Run(sig.String(), func(b *testing.B) {
			var samples []time.Duration
			for b.Loop() {
				ctx, cancel := context.WithCancel(context.Background())
				w := cli.Watch(ctx, ordersKey)
				h, _ := startRegistered(b, srv.ClientURL, "2s", w)
				start := time.Now()
				h.cmd.Process.Signal(sig)
				waitEvent(b, w, mvccpb.DELETE)
				samples = append(samples, time.Since(start))
				cancel()
				h.cmd.Wait()
			}
			reportQuantiles(b, samples)
		})
	}
	b.Run("floor-bare-revoke", func(b *testing.B) {
		var samples []time.Duration
		for b.Loop() {
			ctx, cancel := context.WithCancel(context.Background())
			w := cli.Watch(ctx, ordersKey)
			lease, err := cli.Grant(ctx, 2)
			if err != nil {
				b.Fatal(err)
			}
			cli.Put(ctx, ordersKey, "x", clientv3.WithLease(lease.ID))
			waitEvent(b, w, mvccpb.PUT)
			start := time.Now()
			cli.Revoke(ctx, lease.ID)
			waitEvent(b, w, mvccpb.DELETE)
			samples = append(samples, time.Since(start))
			cancel()
		}
		reportQuantiles(b, samples)
	})
}

// BenchmarkRegister: `sidecar run` started → its key seen by a remote watcher.
func BenchmarkRegister(b *testing.B) {
	srv := etcdtest.StartServer(b, etcdtest.ServerOptions{})
	cli := srv.Client(b)
	var samples []time.Duration
	for b.Loop() {
		ctx, cancel := context.WithCancel(context.Background())
		w := cli.Watch(ctx, ordersKey)
		h, d := startRegistered(b, srv.ClientURL, "5s", w)
		samples = append(samples, d)
		h.cmd.Process.Signal(syscall.SIGTERM)
		h.cmd.Wait()
		cancel()
	}
	reportQuantiles(b, samples)
}
