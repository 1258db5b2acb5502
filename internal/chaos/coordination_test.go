package chaos

import (
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// holderScript is the command of a holding wrapper: it appends "held T"
// to the marks file ($1) when it starts and "stopped T" when it gets
// SIGTERM, T in Unix nanoseconds, and then exits 0.
const holderScript = `trap 'echo stopped $(date +%s%N) >> "$1"; exit 0' TERM; echo held $(date +%s%N) >> "$1"; while :; do sleep 0.05; done`

// ms formats d as a figure's milliseconds.
func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }

// TestLockHolderBlackholed: sidecar A holds lock "job" for a wrapped
// command, sidecar B's wrapper waits for it, and every etcd link of A (its
// own proxies; B's links stay up) is blackholed. In every trial A's
// wrapper stops its command (SIGTERM) and exits 75, and B's command starts
// only after that SIGTERM: the margin (B's start − A's SIGTERM) is
// positive. A's links are healed between trials.
func TestLockHolderBlackholed(t *testing.T) {
	w := newWorld(t)
	la, lb := w.newLinks(t), w.newLinks(t)
	a := startSidecar(t, coordYAML(t, "a", la.endpoints()))
	b := startSidecar(t, coordYAML(t, "b", lb.endpoints()))
	a.waitConnected(t, 30*time.Second)
	b.waitConnected(t, 30*time.Second)
	margin := sample{name: "lock_holder_blackholed_margin"}
	stopped := sample{name: "lock_holder_blackholed_stopped"}
	granted := sample{name: "lock_holder_blackholed_next_started"}
	n := trials(2, 10)
	for i := range n {
		cut, at := lockCutTrial(t, a, b, la)
		m := at["started"].Sub(at["stopped"])
		margin.add(m)
		stopped.add(at["stopped"].Sub(cut))
		granted.add(at["started"].Sub(cut))
		if m <= 0 {
			t.Errorf("trial %d: B's command started %s before A's command got SIGTERM", i, -m)
		}
		la.heal()
		a.waitConnected(t, 30*time.Second)
	}
	ttlMS := fmt.Sprintf("ttl_ms=%d", coordTTL.Milliseconds())
	margin.figure(t, "min_ms="+ms(margin.quantile(0)), ttlMS)
	stopped.figure(t, ttlMS)
	granted.figure(t, ttlMS)
}

// lockCutTrial holds lock "job" through a, queues b for it, blackholes
// a's links, waits for both wrappers to exit, and returns when the cut
// began and the marks' times ("stopped": A's command got SIGTERM,
// "started": B's command started).
func lockCutTrial(t *testing.T, a, b *sidecarProc, la links) (time.Time, map[string]time.Time) {
	t.Helper()
	marks := filepath.Join(t.TempDir(), "marks")
	holder := a.run(t, "lock", "job", "--", "sh", "-c", holderScript, "sh", marks)
	waitMark(t, marks, "held", 30*time.Second)
	next := b.run(t, "lock", "job", "--", "sh", "-c", `echo started $(date +%s%N) >> "$1"`, "sh", marks)
	b.waitStatus(t, "B waits for the lock", 10*time.Second, func(st api.Status) error { return waiting(st.Locks) })
	time.Sleep(200 * time.Millisecond) // B's watch of the line is live
	cut := time.Now()
	la.blackhole()
	if code := holder.wait(t, 15*time.Second); code != exitLost {
		t.Fatalf("A's wrapper exit %d, want %d; stderr: %s", code, exitLost, holder.stderr)
	}
	if code := next.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("B's wrapper exit %d, want 0; stderr: %s", code, next.stderr)
	}
	b2, at := markTimes(marks)
	if at["stopped"].IsZero() || at["started"].IsZero() {
		t.Fatalf("marks lack A's SIGTERM or B's start:\n%s", b2)
	}
	return cut, at
}

// TestLeaderSidecarKilled: sidecar A's wrapper leads election "nightly",
// sidecar B's wrapper waits as candidate, and an observer `sidecar leader
// nightly --watch --json` runs on B. A's sidecar gets SIGKILL. In every
// trial B's command starts within TTL + 1 s of the kill; A's wrapper,
// which loses its sidecar, stops its command (SIGTERM) before B's command
// starts and exits 75; the observer shows no leader, A, no leader, B.
// Each trial has a new sidecar A; B's candidate resigns after it.
func TestLeaderSidecarKilled(t *testing.T) {
	const bound = coordTTL + time.Second
	w := newWorld(t)
	b := startSidecar(t, coordYAML(t, "b", w.endpoints(true)))
	b.waitConnected(t, 30*time.Second)
	failover := sample{name: "leader_sidecar_killed_failover"}
	margin := sample{name: "leader_sidecar_killed_margin"}
	for i := range trials(2, 10) {
		killed, at := leaderKillTrial(t, w, b, fmt.Sprintf("a%d", i))
		took, m := at["started"].Sub(killed), at["started"].Sub(at["stopped"])
		failover.add(took)
		margin.add(m)
		if took > bound {
			t.Errorf("trial %d: B's command started %s after the kill, want <= TTL + 1 s (%s)", i, took, bound)
		}
		if m <= 0 {
			t.Errorf("trial %d: two leaders: B's command started %s before A's command got SIGTERM", i, -m)
		}
	}
	failover.figure(t, fmt.Sprintf("bound_ms=%d", bound.Milliseconds()), fmt.Sprintf("ttl_ms=%d", coordTTL.Milliseconds()))
	margin.figure(t, "min_ms="+ms(margin.quantile(0)))
}

// leaderKillTrial starts sidecar A named name, makes its wrapper leader,
// queues B's candidate, SIGKILLs A, and returns when, with the marks'
// times ("stopped": A's command got SIGTERM, "started": B's command
// started). It checks the observer's sequence and leaves no leader.
func leaderKillTrial(t *testing.T, w *world, b *sidecarProc, name string) (time.Time, map[string]time.Time) {
	t.Helper()
	a := startSidecar(t, coordYAML(t, name, w.endpoints(true)))
	a.waitConnected(t, 30*time.Second)
	watch := b.run(t, "leader", "nightly", "--watch", "--json")
	watch.waitOutput(t, `"leader":null`, 30*time.Second)
	marks := filepath.Join(t.TempDir(), "marks")
	leaderA := a.run(t, "elect", "--value", "A", "nightly", "--", "sh", "-c", holderScript, "sh", marks)
	watch.waitOutput(t, `"leader":"A"`, 30*time.Second)
	candB := b.run(t, "elect", "--value", "B", "nightly", "--", "sh", "-c",
		`echo started $(date +%s%N) >> "$1"; while :; do sleep 0.05; done`, "sh", marks)
	b.waitStatus(t, "B waits as candidate", 10*time.Second, func(st api.Status) error { return waiting(st.Elections) })
	time.Sleep(200 * time.Millisecond) // B's watch of the line is live
	killed := time.Now()
	a.signal(t, syscall.SIGKILL)
	waitMark(t, marks, "started", 2*coordTTL+5*time.Second)
	if code := leaderA.wait(t, 10*time.Second); code != exitLost {
		t.Errorf("A's wrapper exit %d, want %d; stderr: %s", code, exitLost, leaderA.stderr)
	}
	watch.waitOutput(t, `"leader":"B"`, 5*time.Second)
	watch.stop()
	etcdtest.CheckLeaderSequence(t, watch.stdout.String(), "none → A → none → B")
	candB.stop()
	b2, at := markTimes(marks)
	if at["stopped"].IsZero() {
		t.Fatalf("A's command never got SIGTERM:\n%s", b2)
	}
	return killed, at
}
