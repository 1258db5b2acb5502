package chaos

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// Bounds of the soak's flatness, last fifth against first fifth.
const (
	soakGoroutineGrowth = 0.10
	soakGoroutineSlack  = 12 // one sample swings by about as much with the lock traffic
	soakFDGrowth        = 2
	soakRSSGrowth       = 16 << 20
	soakDBInUseFactor   = 2
	soakDBInUseSlack    = 4 << 20
	soakRenewTolerance  = 0.30
)

func (r soakRow) String() string {
	var b strings.Builder
	for i, p := range r.procs {
		fmt.Fprintf(&b, "s%d rss=%.1fMiB goroutines=%.0f fds=%.0f; ", i, p.rss/(1<<20), p.goroutines, p.fds)
	}
	fmt.Fprintf(&b, "renewals=%.2f/s (leases call for %.2f/s) leases=%d leaked=%d keys=%d db=%.2fMiB in_use=%.2fMiB",
		r.renewRate, r.renewWant, r.leases, r.leaked, r.keys, r.dbSize/(1<<20), r.dbInUse/(1<<20))
	return b.String()
}

// soakColumns names the CSV's columns and reads them from a row.
func soakColumns(n int) ([]string, func(soakRow) []float64) {
	names := []string{"t_s"}
	for i := range n {
		names = append(names, fmt.Sprintf("s%d_rss_mib", i), fmt.Sprintf("s%d_goroutines", i), fmt.Sprintf("s%d_fds", i))
	}
	names = append(names, "renewals_per_s", "renewals_want_per_s", "leases", "leases_leaked", "keys", "db_mib", "db_in_use_mib")
	return names, func(r soakRow) []float64 {
		v := []float64{r.at.Seconds()}
		for _, p := range r.procs {
			v = append(v, p.rss/(1<<20), p.goroutines, p.fds)
		}
		return append(v, r.renewRate, r.renewWant, float64(r.leases), float64(r.leaked), float64(r.keys), r.dbSize/(1<<20), r.dbInUse/(1<<20))
	}
}

// soakWrite writes the samples as CSV to out and their plot beside it
// (out with .svg for its extension).
func soakWrite(t *testing.T, out string, rows []soakRow) {
	t.Helper()
	names, values := soakColumns(len(rows[0].procs))
	var recs [][]string
	recs = append(recs, names)
	var series [][]float64
	for _, r := range rows {
		v := values(r)
		series = append(series, v)
		rec := make([]string, len(v))
		for i, x := range v {
			rec[i] = strconv.FormatFloat(x, 'f', 2, 64)
		}
		recs = append(recs, rec)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	cw := csv.NewWriter(f)
	cw.WriteAll(recs)
	if err := errors.Join(cw.Error(), f.Close()); err != nil {
		t.Fatalf("write %s: %v", out, err)
	}
	svg := strings.TrimSuffix(out, filepath.Ext(out)) + ".svg"
	if err := os.WriteFile(svg, soakSVG(names, series), 0o644); err != nil {
		t.Fatalf("write %s: %v", svg, err)
	}
	t.Logf("soak: samples in %s, plot in %s", out, svg)
}

// soakWindows reduces f over the first and the last fifth of the samples
// (at least 3 each) after the first tenth (the warm-up), with soakMean or
// soakMin.
func soakWindows(rows []soakRow, f func(soakRow) float64, reduce func([]float64) float64) (first, last float64) {
	rows = rows[max(len(rows)/10, 1):]
	k := max(len(rows)/5, 3)
	var vs []float64
	for _, r := range rows {
		vs = append(vs, f(r))
	}
	return reduce(vs[:k]), reduce(vs[len(vs)-k:])
}

func soakMean(vs []float64) float64 {
	s := 0.0
	for _, v := range vs {
		s += v
	}
	return s / float64(len(vs))
}

// soakMin is the floor of a window: goroutines and fds swing by a dozen
// with the lock traffic (a hold streams while it lasts), and a leak raises
// the floor.
func soakMin(vs []float64) float64 { return slices.Min(vs) }

// soakCheckFlat checks that the series stay flat and logs their FIGURE
// lines: the floor (min) of goroutines and fds, the mean of the others.
func soakCheckFlat(t *testing.T, rows []soakRow) {
	t.Helper()
	for i := range rows[0].procs {
		g0, g1 := soakWindows(rows, func(r soakRow) float64 { return r.procs[i].goroutines }, soakMin)
		f0, f1 := soakWindows(rows, func(r soakRow) float64 { return r.procs[i].fds }, soakMin)
		m0, m1 := soakWindows(rows, func(r soakRow) float64 { return r.procs[i].rss }, soakMean)
		t.Logf("FIGURE scenario=soak_sidecar sidecar=%d goroutines_floor_first=%.0f goroutines_floor_last=%.0f fds_floor_first=%.0f fds_floor_last=%.0f rss_first_mib=%.1f rss_last_mib=%.1f",
			i, g0, g1, f0, f1, m0/(1<<20), m1/(1<<20))
		if g1 > max(g0*(1+soakGoroutineGrowth), g0+soakGoroutineSlack) {
			t.Errorf("sidecar %d: goroutines grew from %.1f to %.1f", i, g0, g1)
		}
		if f1 > f0+soakFDGrowth {
			t.Errorf("sidecar %d: open fds grew from %.1f to %.1f", i, f0, f1)
		}
		if m1 > m0+soakRSSGrowth {
			t.Errorf("sidecar %d: RSS grew from %.1f MiB to %.1f MiB", i, m0/(1<<20), m1/(1<<20))
		}
	}
	d0, d1 := soakWindows(rows, func(r soakRow) float64 { return r.dbInUse }, soakMean)
	s0, s1 := soakWindows(rows, func(r soakRow) float64 { return r.dbSize }, soakMean)
	r0, r1 := soakWindows(rows[1:], func(r soakRow) float64 { return r.renewRate }, soakMean)
	w0, w1 := soakWindows(rows[1:], func(r soakRow) float64 { return r.renewWant }, soakMean)
	t.Logf("FIGURE scenario=soak_etcd db_in_use_first_mib=%.2f db_in_use_last_mib=%.2f db_first_mib=%.2f db_last_mib=%.2f renewals_first=%.2f/s renewals_last=%.2f/s renewals_want_first=%.2f/s renewals_want_last=%.2f/s",
		d0/(1<<20), d1/(1<<20), s0/(1<<20), s1/(1<<20), r0, r1, w0, w1)
	if d1 > d0*soakDBInUseFactor+soakDBInUseSlack {
		t.Errorf("etcd db size in use grew from %.2f MiB to %.2f MiB", d0/(1<<20), d1/(1<<20))
	}
	if r1 < w1*(1-soakRenewTolerance) || r1 > w1*(1+soakRenewTolerance) {
		t.Errorf("lease renewals %.2f/s at the end, the live leases call for %.2f/s (±%.0f%%)", r1, w1, 100*soakRenewTolerance)
	}
}

// soakCheckEnd checks the end state: every mirrored directory equals etcd,
// and once the lock loops have stopped etcd holds exactly the three
// registrations and the two election keys, each on a live lease.
func soakCheckEnd(t *testing.T, w *world, ps []*sidecarProc, dirs []string) {
	t.Helper()
	c, cancel := ctx(t)
	resp, err := w.cli.Get(c, soakPrefix, clientv3.WithPrefix())
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, kv := range resp.Kvs {
		want[strings.TrimPrefix(string(kv.Key), soakPrefix)] = string(kv.Value)
	}
	for _, dir := range dirs {
		etcdtest.Eventually(t, 10*time.Second, dir+" equals etcd", func() error { return soakDirEquals(dir, want) })
	}
	var regs []string
	for i := range ps {
		regs = append(regs, fmt.Sprintf("%sservices/soak/soak-%d", namespace, i))
	}
	etcdtest.Eventually(t, soakTTL+5*time.Second, "etcd holds the registrations and two election keys", func() error {
		keys, err := w.keys(t)
		if err != nil {
			return err
		}
		elections := slices.DeleteFunc(slices.Clone(keys), func(k string) bool { return !strings.HasPrefix(k, namespace+"elections/soakelect/") })
		if rest := slices.DeleteFunc(keys, func(k string) bool { return strings.HasPrefix(k, namespace+"elections/") }); !slices.Equal(rest, regs) || len(elections) != 2 {
			return fmt.Errorf("keys %q", keys)
		}
		n, err := w.leases(t)
		if err == nil && (len(n.leaked) != 0 || len(n.live) != len(regs)+2) {
			err = fmt.Errorf("%d live leases (want %d), %d leaked", len(n.live), len(regs)+2, len(n.leaked))
		}
		return err
	})
}

// soakDirEquals compares dir's regular files with want (path → content).
func soakDirEquals(dir string, want map[string]string) error {
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		got[rel] = string(b)
		return err
	})
	if err != nil {
		return err
	}
	for k, v := range want {
		if got[k] != v {
			return fmt.Errorf("%s: %d bytes on disk, %d in etcd", k, len(got[k]), len(v))
		}
	}
	if len(got) != len(want) {
		return fmt.Errorf("%d files, %d keys", len(got), len(want))
	}
	return nil
}

// soakStop stops p with SIGTERM and waits up to 30 s for it to exit 0.
func soakStop(p *sidecarProc) error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("send SIGTERM: %w", err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		return errors.New("no exit within 30s of SIGTERM")
	}
	if p.err != nil {
		return fmt.Errorf("after SIGTERM: %w", p.err)
	}
	return nil
}

// soakEtcdMetric reads the sum of the samples of metric (any labels) from
// the /metrics of the member at url.
func soakEtcdMetric(url, metric string) (float64, error) {
	cl := http.Client{Timeout: 3 * time.Second}
	resp, err := cl.Get(url + "/metrics")
	if err != nil {
		return 0, fmt.Errorf("metrics of %s: %w", url, err)
	}
	defer resp.Body.Close()
	sum, found := 0.0, false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if base, _, _ := strings.Cut(name, "{"); !ok || base != metric {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			sum, found = sum+v, true
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("metrics of %s: %w", url, err)
	}
	if !found {
		return 0, fmt.Errorf("metrics of %s: no %s", url, metric)
	}
	return sum, nil
}
