package chaos

// The soak is not part of CI. Run it with its duration in SIDECAR_SOAK:
//
//	SIDECAR_SOAK=30m SIDECAR_SOAK_OUT=$PWD/docs/soak.csv \
//	    go test -run TestSoak -count=1 -timeout 40m -v ./internal/chaos
//
// It writes one CSV row per 10 s sample to SIDECAR_SOAK_OUT (default:
// soak.csv in a new temporary directory, named in the log) and, beside it,
// the plot of the same series as an SVG (docs/soak.svg with the command
// above). SIDECAR_SOAK=2m checks the soak itself in a few minutes.

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// The soak's load and its sampling.
const (
	soakTTL        = 3 * time.Second // registration and coordination TTL: a keep-alive a second per lease
	soakInterval   = 10 * time.Second
	soakSidecars   = 3
	soakKeys       = 300 // config keys under soakPrefix, mirrored by every sidecar
	soakPutsPerSec = 20
	soakFlapEvery  = 30 * time.Second // the flapping sidecar is stopped and started again
	soakPrefix     = "/soak/cfg/"
	// soakCompaction is what the members run with, as an operator would:
	// without compaction etcd keeps every revision of the config churn.
	soakCompaction = "--auto-compaction-mode=periodic --auto-compaction-retention=1m"
)

// TestSoak runs for SIDECAR_SOAK (skipped when unset): a three-member
// cluster (periodic auto-compaction, 1 minute), three sidecars that each
// register an instance, mirror a config prefix of 300 keys that changes 20
// times a second, and run `sidecar lock soaklock -- sleep 0.2` in a loop;
// two of them compete in election soakelect under `sidecar elect` and the
// third watches it with `sidecar leader --watch`; a fourth sidecar
// registers and is stopped (SIGTERM) and started again every 30 s. Every
// 10 s it records each of the three sidecars' RSS, goroutines and open fds
// (from their /metrics), etcd's lease renewals per second (the sum of
// etcd_debugging_lease_renewed_total over the members) beside the rate
// the live leases call for (one per lease per TTL/3), the live and leaked
// leases, the keys under /sidecar/, and the largest member's db size and
// size in use. Pass, comparing the last fifth of the samples with the
// first fifth (at least 3 samples each) after a tenth of warm-up (the
// floor of goroutines and fds, which swing with the lock traffic; the
// mean of the others): goroutines grow by at most 10% (or 12), open fds
// by at most 2, RSS by at most 16 MiB; the db size in use at most doubles
// (plus 4 MiB); the renewal rate is within 30% of what the live leases
// call for. Throughout: no lock wrapper fails, the flapping sidecar exits
// 0 each time. At the end the three mirrored directories equal etcd, and
// once the traffic stops etcd holds exactly the registrations and the
// election keys, with no leaked lease.
func TestSoak(t *testing.T) {
	d := soakDuration(t)
	out := soakOut(t)
	w := &world{cluster: etcdtest.StartCluster(t, 3, etcdtest.ServerOptions{Args: strings.Fields(soakCompaction)})}
	w.cli = w.cluster.Client(t)
	soakSeedConfig(t, w)
	var ps []*sidecarProc
	var dirs []string
	for i := range soakSidecars {
		dir := filepath.Join(t.TempDir(), "cfg")
		ps = append(ps, startSidecar(t, soakYAML(t, w, fmt.Sprintf("soak-%d", i), dir)))
		dirs = append(dirs, dir)
	}
	for _, p := range ps {
		p.waitConnected(t, 20*time.Second)
	}
	ctx, stop := context.WithCancel(t.Context())
	l := &soakLoad{}
	l.start(ctx, t, w, ps)
	samples := soakSampleFor(t, w, ps, d)
	stop()
	l.wg.Wait()
	soakWrite(t, out, samples)
	soakCheckFlat(t, samples)
	if n, m := l.lockFailures.Load(), l.flapFailures.Load(); n != 0 || m != 0 {
		t.Errorf("%d lock wrappers failed (of %d), %d flapping sidecar stops failed; first: %s", n, l.locks.Load(), m, l.firstFailure())
	}
	t.Logf("FIGURE scenario=soak duration=%s samples=%d lock_cycles=%d lock_failures=%d config_puts=%d flaps=%d",
		d, len(samples), l.locks.Load(), l.lockFailures.Load(), l.puts.Load(), l.flaps.Load())
	soakCheckEnd(t, w, ps, dirs)
}

// soakDuration is SIDECAR_SOAK, or a skip.
func soakDuration(t *testing.T) time.Duration {
	v := os.Getenv("SIDECAR_SOAK")
	if v == "" {
		t.Skip("the soak runs only with SIDECAR_SOAK=DURATION (e.g. 30m)")
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 6*soakInterval {
		t.Fatalf("SIDECAR_SOAK=%q: want a duration of at least %s", v, 6*soakInterval)
	}
	return d
}

// soakOut is the CSV path: SIDECAR_SOAK_OUT or soak.csv in a new
// temporary directory that outlives the test.
func soakOut(t *testing.T) string {
	if p := os.Getenv("SIDECAR_SOAK_OUT"); p != "" {
		return p
	}
	dir, err := os.MkdirTemp("", "sidecar-soak")
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "soak.csv")
}

// soakYAML configures sidecar name: registered as soak/<name>, mirroring
// soakPrefix into dir, with the soak's TTLs.
func soakYAML(t *testing.T, w *world, name, dir string) string {
	return fmt.Sprintf(`name: %s
data_dir: %s
etcd: {endpoints: %s}
service: {name: soak, id: %s, address: 127.0.0.1, port: 9000, ttl: %s}
coordination: {ttl: %s}
config:
  - {prefix: %s, dir: %s}
`, name, t.TempDir(), w.endpoints(true), name, soakTTL, soakTTL, soakPrefix, dir)
}

// soakSeedConfig writes every config key once.
func soakSeedConfig(t *testing.T, w *world) {
	t.Helper()
	for i := range soakKeys {
		c, cancel := ctx(t)
		_, err := w.cli.Put(c, soakKey(i), "seed\n")
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
}

func soakKey(i int) string { return fmt.Sprintf("%sk%03d.conf", soakPrefix, i) }

// soakLoad is the soak's traffic and what it counted.
type soakLoad struct {
	wg                               sync.WaitGroup
	puts, locks, lockFailures, flaps atomic.Int64
	flapFailures                     atomic.Int64
	mu                               sync.Mutex
	failure                          string
}

func (l *soakLoad) fail(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failure == "" {
		l.failure = fmt.Sprintf(format, args...)
	}
}

func (l *soakLoad) firstFailure() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failure
}

// start starts the traffic until ctx ends: config churn, a lock loop per
// sidecar, the election and its observer, and the flapping sidecar.
func (l *soakLoad) start(ctx context.Context, t *testing.T, w *world, ps []*sidecarProc) {
	t.Helper()
	l.wg.Go(func() { l.churn(ctx, w) })
	for _, p := range ps {
		l.wg.Go(func() { l.lockLoop(ctx, t, p) })
	}
	ps[0].run(t, "elect", "--value", "soak-0", "soakelect", "--", "sleep", "86400")
	ps[1].run(t, "elect", "--value", "soak-1", "soakelect", "--", "sleep", "86400")
	ps[2].run(t, "leader", "soakelect", "--watch", "--json")
	l.wg.Go(func() { l.flap(ctx, t, w) })
}

// churn puts soakPutsPerSec values a second on random config keys, of
// 100 to 1,000 bytes; one put in fifty is a delete.
func (l *soakLoad) churn(ctx context.Context, w *world) {
	r := rand.New(rand.NewPCG(1, 2))
	tick := time.NewTicker(time.Second / soakPutsPerSec)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		c, cancel := context.WithTimeout(ctx, 3*time.Second)
		key := soakKey(r.IntN(soakKeys))
		var err error
		if r.IntN(50) == 0 {
			_, err = w.cli.Delete(c, key)
		} else {
			_, err = w.cli.Put(c, key, strings.Repeat(strconv.Itoa(r.IntN(10)), 100+r.IntN(900))+"\n")
		}
		cancel()
		if err == nil {
			l.puts.Add(1)
		}
	}
}

// lockLoop runs `sidecar lock --wait 1m soaklock -- sleep 0.2` against p
// again and again; a wrapper that exits non-zero is a failure, unless the
// soak was ending.
func (l *soakLoad) lockLoop(ctx context.Context, t *testing.T, p *sidecarProc) {
	for ctx.Err() == nil {
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, sidecarBinary(t), "--socket", p.socket, "lock", "--wait", "1m", "soaklock", "--", "sleep", "0.2")
		cmd.Stderr = &stderr
		cmd.WaitDelay = time.Second
		err := cmd.Run()
		if ctx.Err() != nil {
			return
		}
		l.locks.Add(1)
		if err != nil {
			l.lockFailures.Add(1)
			l.fail("%v: %v: %s", cmd.Args[3:], err, stderr.String())
		}
	}
}

// flap keeps a fourth sidecar registered, stopping it with SIGTERM and
// starting it again every soakFlapEvery.
func (l *soakLoad) flap(ctx context.Context, t *testing.T, w *world) {
	for ctx.Err() == nil {
		p := startSidecar(t, soakYAML(t, w, "soak-flap", filepath.Join(t.TempDir(), "cfg")))
		select {
		case <-ctx.Done():
		case <-time.After(soakFlapEvery):
		}
		if err := soakStop(p); err != nil {
			l.fail("flapping sidecar: %v\n%s", err, p.log)
			l.flapFailures.Add(1)
		}
		l.flaps.Add(1)
	}
}

// soakRow is one sample of the soak.
type soakRow struct {
	at                   time.Duration // since the first sample
	procs                []fuzzProc
	renewRate, renewWant float64 // lease renewals per second: measured, and what the live leases call for
	leases, leaked, keys int
	dbSize, dbInUse      float64 // bytes, the largest member's
	renewTotal           float64
}

// soakSampleFor samples every soakInterval for d.
func soakSampleFor(t *testing.T, w *world, ps []*sidecarProc, d time.Duration) []soakRow {
	t.Helper()
	start := time.Now()
	var rows []soakRow
	tick := time.NewTicker(soakInterval)
	defer tick.Stop()
	for {
		r := soakSample(t, w, ps)
		r.at = time.Since(start)
		if n := len(rows); n > 0 {
			prev := rows[n-1]
			r.renewRate = (r.renewTotal - prev.renewTotal) / (r.at - prev.at).Seconds()
		}
		rows = append(rows, r)
		t.Logf("soak %s: %s", r.at.Round(time.Second), r)
		if time.Since(start)+soakInterval > d {
			return rows
		}
		<-tick.C
	}
}

// soakSample takes one sample; a figure it cannot read fails t.
func soakSample(t *testing.T, w *world, ps []*sidecarProc) soakRow {
	t.Helper()
	var r soakRow
	for _, p := range ps {
		s, err := fuzzReadProc(p)
		if err != nil {
			t.Fatalf("sidecar %s: %v", p.socket, err)
		}
		r.procs = append(r.procs, s)
	}
	n, err := w.leases(t)
	if err != nil {
		t.Fatal(err)
	}
	r.leases, r.leaked = len(n.live), len(n.leaked)
	r.renewWant = float64(r.leases+r.leaked) / (soakTTL / 3).Seconds()
	keys, err := w.keys(t)
	if err != nil {
		t.Fatal(err)
	}
	r.keys = len(keys)
	for _, u := range w.cluster.ClientURLs() {
		c, cancel := ctx(t)
		st, err := w.cli.Status(c, u)
		cancel()
		if err != nil {
			t.Fatalf("status of %s: %v", u, err)
		}
		r.dbSize, r.dbInUse = max(r.dbSize, float64(st.DbSize)), max(r.dbInUse, float64(st.DbSizeInUse))
		m, err := soakEtcdMetric(u, "etcd_debugging_lease_renewed_total")
		if err != nil {
			t.Fatal(err)
		}
		r.renewTotal += m
	}
	return r
}
