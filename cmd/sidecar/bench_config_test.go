package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/client"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// The prefix of the initial-sync benchmark: syncKeys keys of
// syncValueBytes each.
const (
	syncPrefix     = "/bench/initial/"
	syncKeys       = 10000
	syncValueBytes = 1024
)

// BenchmarkInitialSync: an etcd server (go tool server) holds 10,000 keys
// of 1 KiB under a prefix; `sidecar run` in join mode, with a config
// mapping of that prefix into a new directory, is timed from exec until
// GET /v1/config shows the mapping at a revision (its initial sync is on
// disk; polled every 10 ms), and then its peak RSS (VmHWM in
// /proc/PID/status) is read, before it is stopped. Its floor runs in each
// iteration too, measured the same way: internal/floor/listwrite, a
// bare clientv3 program that reads the prefix in pages of 500 at one
// revision and writes each file atomically and durably, timed from exec
// to its "synced" line. Both directories are checked to hold the 10,000
// values, then removed and the disk synced. Which of the two runs first
// alternates (before the disk was synced in between, the second ran up to
// twice as long as the first, either way round): use an even count.
// sync_ms is the median over the iterations (the higher of two),
// sync_min_ms the fastest, peak_rss_MiB the highest.
//
//	go test -run '^$' -bench InitialSync -benchtime 4x ./cmd/sidecar
func BenchmarkInitialSync(b *testing.B) {
	srv := etcdtest.StartServer(b, etcdtest.ServerOptions{})
	fillPrefix(b, srv.Client(b))
	floor := buildFloor(b, "listwrite")
	sidecarBinary(b)
	var syncs, floorSyncs []time.Duration
	var peak, floorPeak int64 // KiB
	side := func() {
		d, hwm := syncSidecar(b, srv.ClientURL)
		syncs, peak = append(syncs, d), max(peak, hwm)
	}
	bare := func() {
		d, hwm := syncFloor(b, floor, srv.ClientURL)
		floorSyncs, floorPeak = append(floorSyncs, d), max(floorPeak, hwm)
	}
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			side()
			bare()
		} else {
			bare()
			side()
		}
	}
	p50, _ := quantiles(syncs)
	f50, _ := quantiles(floorSyncs)
	b.ReportMetric(p50, "sync_ms")
	b.ReportMetric(float64(peak)/1024, "peak_rss_MiB")
	b.ReportMetric(f50, "floor_sync_ms")
	b.ReportMetric(float64(floorPeak)/1024, "floor_peak_rss_MiB")
	b.ReportMetric(ms(slices.Min(syncs)), "sync_min_ms")
	b.ReportMetric(ms(slices.Min(floorSyncs)), "floor_sync_min_ms")
	b.ReportMetric(0, "ns/op")
}

// fillPrefix puts the benchmark's keys, 100 to a transaction.
func fillPrefix(b *testing.B, cli *clientv3.Client) {
	for k := 0; k < syncKeys; k += 100 {
		var ops []clientv3.Op
		for i := k; i < min(k+100, syncKeys); i++ {
			ops = append(ops, clientv3.OpPut(syncPrefix+syncName(i), syncValue(i)))
		}
		if _, err := cli.Txn(b.Context()).Then(ops...).Commit(); err != nil {
			b.Fatal(err)
		}
	}
}

func syncName(i int) string { return fmt.Sprintf("k%05d", i) }

func syncValue(i int) string {
	v := fmt.Sprintf("value of key %05d\n", i)
	return v + strings.Repeat("v", syncValueBytes-len(v))
}

// syncSidecar runs the sidecar with a mapping of syncPrefix into a new
// directory, and returns the time from exec until the mapping reports a
// revision, and the process's peak RSS in KiB then.
func syncSidecar(b *testing.B, url string) (time.Duration, int64) {
	dir := filepath.Join(b.TempDir(), "files")
	defer clearDir(dir)
	sock := etcdtest.SocketDir(b)
	cfg, socket := filepath.Join(sock, "c.yaml"), filepath.Join(sock, "s.sock")
	yaml := joinYAML(b, url) + fmt.Sprintf("config:\n  - prefix: %s\n    dir: %s\n", syncPrefix, dir)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		b.Fatal(err)
	}
	p := startBenchProc(b, false, sidecarBinary(b), "run", "--config", cfg, "--socket", socket)
	defer p.stop()
	cli := client.New(socket)
	defer cli.Close()
	var d time.Duration
	etcdtest.Eventually(b, 5*time.Minute, "sidecar initial sync", func() error {
		p.checkRunning(b)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cm, err := cli.Config(ctx)
		if err != nil {
			return err
		}
		if len(cm.Mappings) != 1 || cm.Mappings[0].Revision == 0 {
			return fmt.Errorf("mappings: %+v", cm.Mappings)
		}
		d = time.Since(p.start)
		return nil
	})
	hwm := peakRSS(b, p.cmd.Process.Pid)
	checkSynced(b, dir)
	return d, hwm
}

// syncFloor runs the listwrite floor into a new directory and returns the
// time from exec to its "synced" line, and its peak RSS in KiB then.
func syncFloor(b *testing.B, bin, url string) (time.Duration, int64) {
	dir := filepath.Join(b.TempDir(), "files")
	defer clearDir(dir)
	p := startBenchProc(b, true, bin, url, syncPrefix, dir)
	defer p.stop()
	line, err := p.stdout.ReadString('\n')
	d := time.Since(p.start)
	if want := fmt.Sprintf("synced %d\n", syncKeys); line != want {
		b.Fatalf("floor listwrite: %q, %v\n%s", line, err, p.stop())
	}
	hwm := peakRSS(b, p.cmd.Process.Pid)
	checkSynced(b, dir)
	return d, hwm
}

// clearDir removes dir and waits until the disk has it all, so that the
// next run does not start on a disk busy with this one.
func clearDir(dir string) {
	os.RemoveAll(dir)
	syscall.Sync()
}

// benchProc is a benchmarked process, its exit watched.
type benchProc struct {
	cmd    *exec.Cmd
	start  time.Time     // just before exec
	stdout *bufio.Reader // nil unless asked for
	stderr *strings.Builder
	done   chan struct{} // closed when it has exited, err set
	err    error
}

// startBenchProc starts bin, its stdout readable as p.stdout when lines is set
// (and discarded otherwise).
func startBenchProc(b *testing.B, lines bool, bin string, args ...string) *benchProc {
	p := &benchProc{cmd: exec.Command(bin, args...), stderr: &strings.Builder{}, done: make(chan struct{})}
	p.cmd.Stderr = p.stderr
	if lines {
		out, err := p.cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		p.stdout = bufio.NewReader(out)
	}
	p.start = time.Now()
	if err := p.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	return p
}

// checkRunning fails the benchmark if the process has exited.
func (p *benchProc) checkRunning(b *testing.B) {
	select {
	case <-p.done:
		b.Fatalf("%s exited: %v\n%s", p.cmd.Path, p.err, p.stderr.String())
	default:
	}
}

// stop ends the process with SIGTERM, or SIGKILL after 30s, and returns
// its stderr.
func (p *benchProc) stop() string {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
	return p.stderr.String()
}

// peakRSS reads a process's VmHWM, in KiB.
func peakRSS(b *testing.B, pid int) int64 {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "VmHWM:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				b.Fatalf("VmHWM: %q", line)
			}
			return kb
		}
	}
	b.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}

// checkSynced fails the benchmark unless dir holds exactly the files of
// the benchmark's keys, each with its value.
func checkSynced(b *testing.B, dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	if len(names) != syncKeys {
		b.Fatalf("%s: %d files, want %d", dir, len(names), syncKeys)
	}
	for i, name := range names {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if name != syncName(i) || err != nil || string(data) != syncValue(i) {
			b.Fatalf("%s: file %d is %q (%d bytes, %v), want %q", dir, i, name, len(data), err, syncName(i))
		}
	}
}
