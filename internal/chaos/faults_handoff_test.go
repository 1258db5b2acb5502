package chaos

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/api"
)

// handoffElection is the default election timeout of the etcd members
// (etcdtest starts them without --election-timeout).
const handoffElection = time.Second

// handoffFirst is the command of the first holder: it appends "held T" to
// the marks file ($1) and its fence to the fences file ($2), waits until
// the file $3 exists, appends "done T" and exits 0.
const handoffFirst = `echo held $(date +%s%N) >> "$1"; echo $SIDECAR_LOCK_FENCE >> "$2"
while [ ! -e "$3" ]; do sleep 0.02; done; echo done $(date +%s%N) >> "$1"`

// handoffNext is the command of the waiting holder: "started T", its
// fence, a short piece of work, "ended T".
const handoffNext = `echo started $(date +%s%N) >> "$1"; echo $SIDECAR_LOCK_FENCE >> "$2"
sleep 0.2; echo ended $(date +%s%N) >> "$1"`

// TestLeaderKilledDuringHandOff: sidecar A's wrapper holds lock "job",
// sidecar B's wrapper waits for it; A's command is told to finish, which
// starts the hand-off, and in every other trial the etcd leader is
// SIGKILLed at that moment (and restarted once B holds the lock). Pass,
// every trial: B's command starts only after A's command ended (never two
// at once); B's command starts within TTL + 3 election timeouts of A's
// end; both wrappers exit 0, except that B's may exit 75 (hold lost, its
// command stopped) in a trial where the election outlasted TTL − margin
// after B acquired, which is counted; the fences of all holders, in order,
// only grow. At the end etcd holds no key of the namespace and no lease.
// Figures: the hand-off time (B's start − A's end) with and without the
// leader kill, measured in the same run.
func TestLeaderKilledDuringHandOff(t *testing.T) {
	const bound = coordTTL + 3*handoffElection
	w := newWorld(t)
	a := startSidecar(t, coordYAML(t, "a", w.endpoints(true)))
	b := startSidecar(t, coordYAML(t, "b", w.endpoints(true)))
	a.waitConnected(t, 30*time.Second)
	b.waitConnected(t, 30*time.Second)
	plain := sample{name: "handoff_plain"}
	killed := sample{name: "handoff_leader_killed"}
	var fences []int64
	lost := 0
	for i := range 2 * trials(1, 10) {
		kill := i%2 == 1
		r := handoffTrial(t, w, a, b, kill)
		took := r.took
		fences = append(fences, r.fences...)
		if r.lost {
			lost++
		}
		s := &plain
		if kill {
			s = &killed
		}
		s.add(took)
		if took <= 0 {
			t.Errorf("trial %d (leader killed: %v): B's command started %s before A's command ended", i, kill, -took)
		}
		if took > bound {
			t.Errorf("trial %d (leader killed: %v): hand-off took %s, want <= TTL + 3 election timeouts (%s)", i, kill, took, bound)
		}
	}
	for i := 1; i < len(fences); i++ {
		if fences[i] <= fences[i-1] {
			t.Errorf("fences do not grow: %v", fences)
			break
		}
	}
	extra := []string{fmt.Sprintf("bound_ms=%d", bound.Milliseconds()), fmt.Sprintf("ttl_ms=%d", coordTTL.Milliseconds())}
	plain.figure(t, extra...)
	killed.figure(t, append(extra, fmt.Sprintf("next_lost_after_acquire=%d", lost))...)
	_, n := w.settle(t, coordTTL+3*time.Second, 0)
	t.Logf("FIGURE scenario=handoff_leases form=%s holders=%d leases_live=%d leases_leaked=%d", form(), len(fences), len(n.live), len(n.leaked))
}

// handoffTrial runs one hand-off from A to B, killing the etcd leader as
// A's command is told to finish when kill is set, and restarting it once
// B's command started.
func handoffTrial(t *testing.T, w *world, a, b *sidecarProc, kill bool) handoffResult {
	t.Helper()
	dir := t.TempDir()
	marks, fences, finish := filepath.Join(dir, "marks"), filepath.Join(dir, "fences"), filepath.Join(dir, "finish")
	first := a.run(t, "lock", "job", "--", "sh", "-c", handoffFirst, "sh", marks, fences, finish)
	waitMark(t, marks, "held", 30*time.Second)
	next := b.run(t, "lock", "job", "--", "sh", "-c", handoffNext, "sh", marks, fences)
	b.waitStatus(t, "B waits for the lock", 10*time.Second, func(st api.Status) error { return waiting(st.Locks) })
	time.Sleep(200 * time.Millisecond) // B's watch of the line is live
	leader := -1
	if kill {
		if leader = w.cluster.Leader(t); leader < 0 {
			t.Fatal("no etcd leader before the hand-off")
		}
	}
	if err := os.WriteFile(finish, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if kill {
		w.cluster.Members[leader].Kill()
	}
	waitMark(t, marks, "started", 2*(coordTTL+3*handoffElection)+5*time.Second)
	if kill {
		w.cluster.Members[leader].Restart()
	}
	if code := first.wait(t, 15*time.Second); code != 0 {
		t.Errorf("A's wrapper exit %d, want 0; stderr: %s", code, first.stderr)
	}
	lost := false
	switch code := next.wait(t, 15*time.Second); {
	case code == exitLost && kill:
		lost = true // acquired, then the election outlasted TTL − margin: stopped, as it must be
		t.Logf("B lost its hold after acquiring it: %s", next.stderr)
	case code != 0:
		t.Errorf("B's wrapper exit %d, want 0; stderr: %s", code, next.stderr)
	}
	b2, at := markTimes(marks)
	if at["done"].IsZero() || at["started"].IsZero() {
		t.Fatalf("marks lack A's end or B's start:\n%s", b2)
	}
	return handoffResult{took: at["started"].Sub(at["done"]), fences: handoffFences(t, fences), lost: lost}
}

// handoffResult is what one hand-off trial measured.
type handoffResult struct {
	took   time.Duration // B's start − A's end
	fences []int64       // A's and B's
	lost   bool          // B lost its hold after acquiring it (leader kill only)
}

// handoffFences reads the fences the commands appended, in order.
func handoffFences(t *testing.T, file string) []int64 {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var fs []int64
	for _, f := range strings.Fields(string(b)) {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			t.Fatalf("fences file %q: %v", b, err)
		}
		fs = append(fs, n)
	}
	if len(fs) != 2 {
		t.Fatalf("fences file %q: want A's and B's", b)
	}
	return fs
}
