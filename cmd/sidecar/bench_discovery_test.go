package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/naming/endpoints"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/client"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// BenchmarkDiscoveryUpdate: a weight change Put by another client → the
// sidecar's /v1/services/big?watch=true stream shows it, with N instances
// in the service. The floor is a bare clientv3 watch on the same prefix
// seeing the same Put. Also reports the sidecar's RSS with N instances
// watched.
//
//	go test -run '^$' -bench DiscoveryUpdate -benchtime 200x ./cmd/sidecar
func BenchmarkDiscoveryUpdate(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) { benchDiscovery(b, n) })
	}
}

const bigPrefix = "/sidecar/services/big"

func populate(b *testing.B, cli *clientv3.Client, n int) {
	em, _ := endpoints.NewManager(cli, bigPrefix)
	for i := 0; i < n; i += 100 {
		var ops []*endpoints.UpdateWithOpts
		for j := i; j < min(i+100, n); j++ {
			ops = append(ops, endpoints.NewAddUpdateOpts(fmt.Sprintf("%s/i%05d", bigPrefix, j), endpoints.Endpoint{
				Addr: fmt.Sprintf("10.1.%d.%d:8080", j/250, j%250), Metadata: map[string]any{"weight": 100, "node": "n"}}))
		}
		if err := em.Update(context.Background(), ops); err != nil {
			b.Fatal(err)
		}
	}
}

func benchDiscovery(b *testing.B, n int) {
	srv := etcdtest.StartServer(b, etcdtest.ServerOptions{})
	cli := srv.Client(b)
	populate(b, cli, n)
	dir, _ := os.MkdirTemp("", "scb")
	b.Cleanup(func() { os.RemoveAll(dir) })
	cfg, socket := filepath.Join(dir, "c.yaml"), filepath.Join(dir, "s.sock")
	os.WriteFile(cfg, []byte(joinYAML(b, srv.ClientURL)), 0o600)
	cmd := exec.Command(sidecarBinary(b), "run", "--config", cfg, "--socket", socket)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	sc := client.New(socket)
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		if h, err := sc.Health(context.Background()); err == nil && h.Healthy {
			break
		}
		if time.Since(start) > time.Minute {
			b.Fatal("sidecar not healthy")
		}
	}
	stream, err := sc.WatchService(context.Background(), "big")
	if err != nil {
		b.Fatal(err)
	}
	defer stream.Close()
	if first, err := stream.Next(); err != nil || len(first.Instances) != n {
		b.Fatalf("first snapshot: %d instances, %v", len(first.Instances), err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The floor's events are stamped as they arrive, on their own
	// goroutine, so neither observer waits for the other.
	floor := cli.Watch(wctx, bigPrefix+"/", clientv3.WithPrefix())
	floorAt := make(chan time.Time, 1)
	go func() {
		for range floor {
			floorAt <- time.Now()
		}
		close(floorAt)
	}()
	em, _ := endpoints.NewManager(cli, bigPrefix)
	var viaSidecar, viaWatch []time.Duration
	i := 0
	for b.Loop() {
		i++
		key := fmt.Sprintf("%s/i%05d", bigPrefix, i%n)
		weight := 1 + i%1000
		start := time.Now()
		em.AddEndpoint(context.Background(), key, endpoints.Endpoint{Addr: "10.9.9.9:1", Metadata: map[string]any{"weight": weight}})
		for {
			s, err := stream.Next()
			if err != nil {
				b.Fatal(err)
			}
			if hasWeight(s, fmt.Sprintf("i%05d", i%n), weight) {
				break
			}
		}
		viaSidecar = append(viaSidecar, time.Since(start))
		viaWatch = append(viaWatch, (<-floorAt).Sub(start))
	}
	reportQuantiles(b, viaSidecar)
	floorP50, floorP99 := quantiles(viaWatch)
	b.ReportMetric(floorP50, "floor_p50_ms")
	b.ReportMetric(floorP99, "floor_p99_ms")
	_, rss := procSample(b, cmd.Process.Pid)
	reportMem(b, rss)
}

func hasWeight(s api.Service, id string, w int) bool {
	for _, in := range s.Instances {
		if in.ID == id {
			return in.Weight == w
		}
	}
	return false
}
