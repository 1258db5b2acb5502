package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// TestMain fails the package when goroutines outlive its tests: every
// process a test starts is waited for.
func TestMain(m *testing.M) { etcdtest.RunWithLeakCheck(m, 10*time.Second) }

// TestLedger pins the fencing rule: a fence lower than the highest accepted
// is refused, an equal or higher one accepted, and a refused write leaves
// the ledger as it was.
func TestLedger(t *testing.T) {
	tests := []struct {
		name    string
		fences  []int64 // written in order
		refused int     // index of the first refused write; -1: none
	}{
		{"increasing", []int64{5, 9, 12}, -1},
		{"same holder again", []int64{5, 5, 5}, -1},
		{"stale after newer", []int64{5, 9, 5}, 2},
		{"stale first of two", []int64{9, 8}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := Ledger{Path: filepath.Join(t.TempDir(), "ledger")}
			for i, f := range tt.fences {
				e := Entry{Fence: f, Kind: "lock", Name: "nightly", Seq: 1, Of: 1, By: "t", At: time.Now()}
				err := l.Append(e)
				var stale *StaleFenceError
				if i == tt.refused {
					if !errors.As(err, &stale) || stale.Highest != slices.Max(tt.fences[:i]) {
						t.Fatalf("write %d (fence %d): got %v, want a refusal naming fence %d", i, f, err, slices.Max(tt.fences[:i]))
					}
					break
				}
				if err != nil {
					t.Fatalf("write %d (fence %d): %v", i, f, err)
				}
			}
			got, err := l.Entries()
			if err != nil {
				t.Fatal(err)
			}
			want := tt.fences
			if tt.refused >= 0 {
				want = tt.fences[:tt.refused]
			}
			if fs := fences(got); !slices.Equal(fs, want) {
				t.Fatalf("ledger fences %v, want %v", fs, want)
			}
		})
	}
}

// TestHoldFromEnv pins which variables the job reads.
func TestHoldFromEnv(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want hold // zero: an error
	}{
		{"lock", map[string]string{"SIDECAR_LOCK_NAME": "nightly", "SIDECAR_LOCK_FENCE": "41"}, hold{"lock", "nightly", 41}},
		{"election", map[string]string{"SIDECAR_ELECTION_NAME": "nightly", "SIDECAR_ELECTION_FENCE": "7"}, hold{"election", "nightly", 7}},
		{"none", map[string]string{}, hold{}},
		{"both", map[string]string{"SIDECAR_LOCK_NAME": "a", "SIDECAR_LOCK_FENCE": "1", "SIDECAR_ELECTION_NAME": "b", "SIDECAR_ELECTION_FENCE": "2"}, hold{}},
		{"not a number", map[string]string{"SIDECAR_LOCK_NAME": "nightly", "SIDECAR_LOCK_FENCE": "x"}, hold{}},
		{"zero", map[string]string{"SIDECAR_LOCK_NAME": "nightly", "SIDECAR_LOCK_FENCE": "0"}, hold{}},
		{"no name", map[string]string{"SIDECAR_LOCK_FENCE": "3"}, hold{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := holdFromEnv(func(k string) string { return tt.env[k] })
			if got != tt.want || (err != nil) != (tt.want == hold{}) {
				t.Fatalf("holdFromEnv = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// fences lists the fence of each entry.
func fences(entries []Entry) []int64 {
	var fs []int64
	for _, e := range entries {
		fs = append(fs, e.Fence)
	}
	return fs
}

// TestTakingTurns runs the README's two nodes for real: the built sidecar
// as node A (embedded etcd, node-a.yaml) and node B (join mode against A's
// etcd, node-b.yaml), on free ports and short socket paths, and the built
// job under `sidecar lock` and `sidecar elect` on both.
func TestTakingTurns(t *testing.T) {
	bins := buildBinaries(t)
	work := t.TempDir()
	clientURL := fmt.Sprintf("http://127.0.0.1:%d", etcdtest.FreePort(t))
	ttl := "SIDECAR_COORDINATION_TTL=2s" // the shortest allowed: the stale holder loses it sooner
	a := startNode(t, bins, work, "node-a.yaml", ttl,
		"SIDECAR_EMBEDDED_LISTEN_CLIENT_URLS="+clientURL,
		fmt.Sprintf("SIDECAR_EMBEDDED_LISTEN_PEER_URLS=http://127.0.0.1:%d", etcdtest.FreePort(t)))
	a.waitConnected(t)
	b := startNode(t, bins, work, "node-b.yaml", ttl, "SIDECAR_ETCD_ENDPOINTS="+clientURL)
	b.waitConnected(t)

	t.Run("lock", func(t *testing.T) { testLockTurns(t, bins, a, b) })
	t.Run("elect", func(t *testing.T) { testElectTurns(t, bins, a, b) })
	t.Run("stale holder refused", func(t *testing.T) { testStaleHolder(t, bins, a, b) })
}

// testLockTurns runs the job under `sidecar lock nightly` through A, and,
// once A's job has written, through B: B's job waits for A's to end, and
// the ledger holds A's entries, then B's, with a higher fence. A late
// write of A's job (its fence, now stale) is refused.
func testLockTurns(t *testing.T, bins binaries, a, b *node) {
	ledger := Ledger{Path: filepath.Join(t.TempDir(), "ledger")}
	wa := startProc(t, bins.wrapper(a, "lock", "nightly", bins.job(ledger, "node-a", 3, 200*time.Millisecond))...)
	waitEntries(t, ledger, 1)
	wb := startProc(t, bins.wrapper(b, "lock", "nightly", bins.job(ledger, "node-b", 3, 200*time.Millisecond))...)
	wa.wantExit(t, 0)
	wb.wantExit(t, 0)
	runs := checkTurns(t, ledger, "lock", "nightly", 3, 3)
	if runs[0].By != "node-a" || runs[1].By != "node-b" {
		t.Errorf("turns by %s then %s, want node-a then node-b", runs[0].By, runs[1].By)
	}

	// A's job again with A's fence: the write of a holder that does not
	// know it was superseded.
	before, _ := os.ReadFile(ledger.Path)
	late := newProc(bins.job(ledger, "node-a", 1, 0)...)
	late.cmd.Env = append(late.cmd.Env, "SIDECAR_LOCK_NAME=nightly", "SIDECAR_LOCK_FENCE="+strconv.FormatInt(runs[0].Fence, 10))
	late.start(t)
	late.wantExit(t, exitRefused)
	want := fmt.Sprintf("refused a write with fence %d: fence %d was accepted already", runs[0].Fence, runs[1].Fence)
	if !strings.Contains(late.stderr.String(), want) {
		t.Errorf("late write's stderr %q lacks %q", late.stderr, want)
	}
	if after, _ := os.ReadFile(ledger.Path); string(after) != string(before) {
		t.Errorf("the refused write changed the ledger:\n%s", after)
	}
}

// testElectTurns runs the job under `sidecar elect nightly` through A,
// then through B while A leads; `sidecar leader nightly` shows each leader
// with the fence its job writes, and "no leader" once both are done.
func testElectTurns(t *testing.T, bins binaries, a, b *node) {
	ledger := Ledger{Path: filepath.Join(t.TempDir(), "ledger")}
	wa := startProc(t, bins.wrapper(a, "elect", "--value", "node-a", "nightly", bins.job(ledger, "node-a", 3, 300*time.Millisecond))...)
	la := waitLeader(t, bins, b, "node-a")
	wb := startProc(t, bins.wrapper(b, "elect", "--value", "node-b", "nightly", bins.job(ledger, "node-b", 3, 300*time.Millisecond))...)
	lb := waitLeader(t, bins, a, "node-b")
	wa.wantExit(t, 0)
	wb.wantExit(t, 0)
	runs := checkTurns(t, ledger, "election", "nightly", 3, 3)
	if runs[0].Fence != la.Fence || runs[1].Fence != lb.Fence {
		t.Errorf("ledger fences %d, %d; `sidecar leader` showed %d, %d", runs[0].Fence, runs[1].Fence, la.Fence, lb.Fence)
	}
	etcdtest.Eventually(t, 5*time.Second, "sidecar leader: no leader", func() error {
		out, err := exec.Command(bins.sidecar, "leader", "--socket", a.socket, "nightly").Output()
		if err != nil || string(out) != "nightly: no leader\n" {
			return fmt.Errorf("%q, %v", out, err)
		}
		return nil
	})
}

// testStaleHolder stops node B's sidecar (SIGSTOP) while B's job holds the
// lock. B's sidecar cannot speak, so B's wrapper counts the hold lost at
// the last deadline it was told, stops the job and exits 75 — before A's
// job gets the lock, so the ledger shows B's run, then A's, never mixed.
// (The fence would refuse a write B made later; that rule is tested by
// testLockTurns and the ledger's own tests.)
func testStaleHolder(t *testing.T, bins binaries, a, b *node) {
	ledger := Ledger{Path: filepath.Join(t.TempDir(), "ledger")}
	wb := startProc(t, bins.wrapper(b, "lock", "nightly", bins.job(ledger, "node-b", 200, 50*time.Millisecond))...)
	waitEntries(t, ledger, 1)
	wa := startProc(t, bins.wrapper(a, "lock", "nightly", bins.job(ledger, "node-a", 2, 50*time.Millisecond))...)
	b.pause(t)
	wb.wantExit(t, api.ExitHoldLost) // the wrapper's exit code for a lost hold (EX_TEMPFAIL)
	wa.wantExit(t, 0)
	b.resume(t)
	if !strings.Contains(wb.stderr.String(), "no word from the sidecar") {
		t.Errorf("B's wrapper's stderr does not say its sidecar went quiet:\n%s", wb.stderr)
	}
	runs := checkTurns(t, ledger, "lock", "nightly", -1, 2)
	if runs[0].By != "node-b" || runs[1].By != "node-a" {
		t.Errorf("turns by %s then %s, want node-b then node-a", runs[0].By, runs[1].By)
	}
	b.waitConnected(t)
}

// checkTurns reads the ledger and checks it holds two turns, one run of
// the job after the other, never interleaved: entries grouped by fence
// form exactly two runs, with fences increasing; each run has one writer,
// the hold kind/name, and entries 1..n of the run's count (firstLen for the
// first run, any length when -1; secondLen for the second).
func checkTurns(t *testing.T, l Ledger, kind, name string, firstLen, secondLen int) []Entry {
	t.Helper()
	entries, err := l.Entries()
	if err != nil {
		t.Fatal(err)
	}
	var runs [][]Entry
	for i, e := range entries {
		if i == 0 || e.Fence != entries[i-1].Fence {
			runs = append(runs, nil)
		}
		runs[len(runs)-1] = append(runs[len(runs)-1], e)
	}
	data, _ := os.ReadFile(l.Path)
	if len(runs) != 2 || runs[1][0].Fence <= runs[0][0].Fence {
		t.Fatalf("want two runs of entries, fences increasing; ledger:\n%s", data)
	}
	for r, run := range runs {
		n := []int{firstLen, secondLen}[r]
		if n == -1 {
			n = len(run)
		}
		for i, e := range run {
			if len(run) != n || e.Seq != i+1 || e.By != run[0].By || e.Kind != kind || e.Name != name {
				t.Fatalf("run %d: want %s %q entries 1..%d by one writer; ledger:\n%s", r+1, kind, name, n, data)
			}
		}
	}
	return []Entry{runs[0][0], runs[1][0]}
}

// waitEntries polls the ledger until it holds at least n entries.
func waitEntries(t *testing.T, l Ledger, n int) {
	t.Helper()
	etcdtest.Eventually(t, 15*time.Second, fmt.Sprintf("%d entries in the ledger", n), func() error {
		entries, err := l.Entries()
		if err == nil && len(entries) < n {
			err = fmt.Errorf("%d entries", len(entries))
		}
		return err
	})
}

// waitLeader polls `sidecar leader nightly` through n until value leads,
// checks the text form too, and returns the leader.
func waitLeader(t *testing.T, bins binaries, n *node, value string) api.Leader {
	t.Helper()
	var l api.Leader
	etcdtest.Eventually(t, 15*time.Second, "leader "+value, func() error {
		out, err := exec.Command(bins.sidecar, "leader", "--socket", n.socket, "--json", "nightly").Output()
		if err != nil {
			return err
		}
		l = api.Leader{}
		if err := json.Unmarshal(out, &l); err != nil {
			return err
		}
		if l.Leader == nil || *l.Leader != value || l.Fence <= 0 {
			return fmt.Errorf("leader %s", out)
		}
		return nil
	})
	out, err := exec.Command(bins.sidecar, "leader", "--socket", n.socket, "nightly").Output()
	if want := fmt.Sprintf("nightly: %s (fence %d)\n", value, l.Fence); err != nil || string(out) != want {
		t.Errorf("sidecar leader nightly: %q, %v; want %q", out, err, want)
	}
	return l
}
