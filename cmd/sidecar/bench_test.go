package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/client"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// Figures for the README. Run with
//
//	go test -run '^$' -bench . -benchtime 20x ./cmd/sidecar
//
// Each benchmark starts real processes; b.N is the number of samples.

func embeddedYAML(b *testing.B) string {
	return fmt.Sprintf("data_dir: %s\nembedded:\n  listen_client_urls: [http://127.0.0.1:%d]\n  listen_peer_urls: [http://127.0.0.1:%d]\nlog: {level: warn}\n",
		b.TempDir(), etcdtest.FreePort(b), etcdtest.FreePort(b))
}

func joinYAML(b *testing.B, url string) string {
	return fmt.Sprintf("data_dir: %s\netcd:\n  endpoints: [%s]\nlog: {level: warn}\n", b.TempDir(), url)
}

// startBench starts `sidecar run` and returns it and the time its health
// first answered 200.
func startBench(b *testing.B, yaml string) (*exec.Cmd, *client.Client, time.Duration) {
	b.Helper()
	bin := sidecarBinary(b)
	dir, _ := os.MkdirTemp("", "scb")
	b.Cleanup(func() { os.RemoveAll(dir) })
	cfg, socket := filepath.Join(dir, "c.yaml"), filepath.Join(dir, "s.sock")
	os.WriteFile(cfg, []byte(yaml), 0o600)
	cmd := exec.Command(bin, "run", "--config", cfg, "--socket", socket)
	cli := client.New(socket)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	for {
		h, err := cli.Health(context.Background())
		if err == nil && h.Healthy {
			return cmd, cli, time.Since(start)
		}
		if time.Since(start) > time.Minute {
			cmd.Process.Kill()
			b.Fatalf("not healthy after 1m: %v", err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func stopBench(cmd *exec.Cmd) {
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
}

// quantiles returns p50 and p99 of samples in milliseconds.
func quantiles(samples []time.Duration) (p50, p99 float64) {
	slices.Sort(samples)
	q := func(p float64) float64 {
		return ms(samples[min(len(samples)-1, int(p*float64(len(samples))))])
	}
	return q(0.5), q(0.99)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func reportQuantiles(b *testing.B, samples []time.Duration) {
	p50, p99 := quantiles(samples)
	b.ReportMetric(p50, "p50_ms")
	b.ReportMetric(p99, "p99_ms")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkStartToHealthy: process start until GET /v1/health is 200. The
// embedded case alternates with its floor, internal/floor/embedstart: a bare
// program that starts an embed member with the sidecar's default member
// settings and reads once (floor_p50_ms, floor_p99_ms), so both see the same
// machine load. A new single member elects itself 1 to 10 ticks (100 ms to
// 1 s) after start: etcd fast-forwards 9 of raft's randomized 10..19 ticks.
func BenchmarkStartToHealthy(b *testing.B) {
	sidecarBinary(b)
	b.Run("embedded", func(b *testing.B) {
		floor := buildFloor(b, "embedstart")
		var samples, floorSamples []time.Duration
		for b.Loop() {
			cmd, _, d := startBench(b, embeddedYAML(b))
			samples = append(samples, d)
			stopBench(cmd)
			floorSamples = append(floorSamples, startFloor(b, floor))
		}
		reportQuantiles(b, samples)
		p50, p99 := quantiles(floorSamples)
		b.ReportMetric(p50, "floor_p50_ms")
		b.ReportMetric(p99, "floor_p99_ms")
		// The fastest start had the shortest election wait (one tick):
		// what is left is the fixed cost of each.
		b.ReportMetric(ms(slices.Min(samples)), "min_ms")
		b.ReportMetric(ms(slices.Min(floorSamples)), "floor_min_ms")
	})
	b.Run("join", func(b *testing.B) {
		srv := etcdtest.StartServer(b, etcdtest.ServerOptions{})
		var samples []time.Duration
		for b.Loop() {
			cmd, _, d := startBench(b, joinYAML(b, srv.ClientURL))
			samples = append(samples, d)
			stopBench(cmd)
		}
		reportQuantiles(b, samples)
	})
}

// buildFloor builds the floor program internal/floor/<name>.
func buildFloor(b *testing.B, name string) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), name)
	if out, err := exec.Command("go", "build", "-o", bin, "../../internal/floor/"+name).CombinedOutput(); err != nil {
		b.Fatalf("build floor %s: %v\n%s", name, err, out)
	}
	return bin
}

// startFloor runs the embedstart floor on a new data dir and free ports
// and returns the time from exec to its "ready" line, printed after its
// first read succeeded.
func startFloor(b *testing.B, bin string) time.Duration {
	b.Helper()
	curl := fmt.Sprintf("http://127.0.0.1:%d", etcdtest.FreePort(b))
	purl := fmt.Sprintf("http://127.0.0.1:%d", etcdtest.FreePort(b))
	cmd := exec.Command(bin, b.TempDir(), curl, purl)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	d := time.Since(start)
	if line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		b.Fatalf("floor embedstart: %q, %v\n%s", line, err, stderr.String())
	}
	stopBench(cmd)
	return d
}

// procSample reads CPU ticks (user+system) and RSS of a process; RSS
// counts the binary's mapped pages too, anon is the private memory.
func procSample(b *testing.B, pid int) (ticks int64, rss memKB) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			switch f[0] {
			case "VmRSS:":
				rss.total, _ = strconv.ParseInt(f[1], 10, 64)
			case "RssAnon:":
				rss.anon, _ = strconv.ParseInt(f[1], 10, 64)
			}
		}
	}
	return ut + st, rss
}

type memKB struct{ total, anon int64 }

func reportMem(b *testing.B, m memKB) {
	b.ReportMetric(float64(m.total)/1024, "rss_MiB")
	b.ReportMetric(float64(m.anon)/1024, "rss_anon_MiB")
}

// etcdCalls reads the daemon's gRPC client metrics: unary calls started,
// and messages sent on streams (keep-alives among them), in total and on
// LeaseKeepAlive.
func etcdCalls(b *testing.B, cli *client.Client) (unary, streamMsgs, keepAlives float64) {
	resp, err := cli.Do(context.Background(), "GET", "/metrics", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		switch {
		case strings.HasPrefix(line, "grpc_client_started_total{") && strings.Contains(line, `grpc_type="unary"`):
			unary += v
		case strings.HasPrefix(line, "grpc_client_msg_sent_total{") && !strings.Contains(line, `grpc_type="unary"`):
			streamMsgs += v
			if strings.Contains(line, `grpc_method="LeaseKeepAlive"`) {
				keepAlives += v
			}
		}
	}
	return unary, streamMsgs, keepAlives
}

// BenchmarkIdle: CPU, RSS and requests to etcd of an idle daemon over
// SIDECAR_BENCH_IDLE (default 60s); run with -benchtime 1x.
func BenchmarkIdle(b *testing.B) {
	window := 60 * time.Second
	if s := os.Getenv("SIDECAR_BENCH_IDLE"); s != "" {
		window, _ = time.ParseDuration(s)
	}
	fi, _ := os.Stat(sidecarBinary(b))
	run := func(b *testing.B, yaml string) {
		for b.Loop() {
			cmd, cli, _ := startBench(b, yaml)
			time.Sleep(5 * time.Second) // settle
			t0, _ := procSample(b, cmd.Process.Pid)
			u0, s0, k0 := etcdCalls(b, cli)
			time.Sleep(window)
			t1, rss := procSample(b, cmd.Process.Pid)
			u1, s1, k1 := etcdCalls(b, cli)
			stopBench(cmd)
			b.ReportMetric(float64(t1-t0)/100/window.Seconds()*100, "cpu_%")
			reportMem(b, rss)
			b.ReportMetric(u1-u0, "etcd_unary_calls")
			b.ReportMetric(s1-s0, "etcd_stream_msgs")
			b.ReportMetric(k1-k0, "keepalives")
			b.ReportMetric(float64(fi.Size())/(1<<20), "binary_MiB")
			b.ReportMetric(0, "ns/op")
		}
	}
	b.Run("join", func(b *testing.B) {
		srv := etcdtest.StartServer(b, etcdtest.ServerOptions{})
		run(b, joinYAML(b, srv.ClientURL))
	})
	b.Run("join-registered-ttl5s", func(b *testing.B) {
		srv := etcdtest.StartServer(b, etcdtest.ServerOptions{})
		run(b, joinYAML(b, srv.ClientURL)+"service: {name: orders, address: 127.0.0.1, port: 8080, ttl: 5s}\n")
	})
	b.Run("embedded", func(b *testing.B) { run(b, embeddedYAML(b)) })
	b.Run("floor-bare-clientv3", func(b *testing.B) {
		srv := etcdtest.StartServer(b, etcdtest.ServerOptions{})
		bin := buildFloor(b, "idleclient")
		for b.Loop() {
			cmd := exec.Command(bin, srv.ClientURL)
			out, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			out.Read(make([]byte, 6)) // "ready"
			time.Sleep(5 * time.Second)
			t0, _ := procSample(b, cmd.Process.Pid)
			time.Sleep(window)
			t1, rss := procSample(b, cmd.Process.Pid)
			stopBench(cmd)
			b.ReportMetric(float64(t1-t0)/100/window.Seconds()*100, "cpu_%")
			reportMem(b, rss)
			b.ReportMetric(0, "ns/op")
		}
	})
}
