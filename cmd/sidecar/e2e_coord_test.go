package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// End-to-end tests of `sidecar lock`, `sidecar elect` and `sidecar
// leader`: the built binary, daemons in join mode on the real etcd
// program, faults by a blackholing proxy and SIGKILL.

// joinedDaemon runs `sidecar run` in join mode through url with the
// coordination TTL given.
func joinedDaemon(t *testing.T, name, url string, ttl time.Duration) *daemonProc {
	t.Helper()
	p := startProc(t, fmt.Sprintf("name: %s\ndata_dir: %s\netcd: {endpoints: [%s]}\ncoordination: {ttl: %s}\n", name, t.TempDir(), url, ttl))
	p.waitHealthy(t)
	return p
}

// wrapped is a client command of the daemon run in the background.
type wrapped struct {
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{}
	code   int
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs `sidecar --socket S args...` in the background: the socket
// flag comes first, so that it never lands in a wrapped command's argv.
func (p *daemonProc) start(t *testing.T, args ...string) *wrapped {
	t.Helper()
	w := &wrapped{stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	w.cmd = exec.Command(sidecarBinary(t), append([]string{"--socket", p.socket}, args...)...)
	w.cmd.Stdout, w.cmd.Stderr = w.stdout, w.stderr
	w.cmd.WaitDelay = time.Second // a wrapped command left running keeps the pipes open
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		w.cmd.Wait()
		w.code = w.cmd.ProcessState.ExitCode()
		close(w.done)
	}()
	t.Cleanup(func() {
		// SIGTERM first: the wrapper passes it to its command's group;
		// SIGKILL of the wrapper alone would leave the command running.
		w.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-w.done:
		case <-time.After(3 * time.Second):
			w.cmd.Process.Kill()
			<-w.done
		}
	})
	return w
}

// wait waits for the command to exit and returns its exit code.
func (w *wrapped) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-w.done:
		return w.code
	case <-time.After(within):
		t.Fatalf("%v still runs after %s; stderr: %s", w.cmd.Args, within, w.stderr)
		return 0
	}
}

// TestE2ELockWrappersExclude: wrappers on two daemons of one etcd, all
// started at once, run their commands one at a time, each with a fence
// above the one before.
func TestE2ELockWrappersExclude(t *testing.T) {
	srv := etcdtest.StartServer(t, etcdtest.ServerOptions{})
	a := joinedDaemon(t, "a", srv.ClientURL, 5*time.Second)
	b := joinedDaemon(t, "b", srv.ClientURL, 5*time.Second)
	ledger := filepath.Join(t.TempDir(), "ledger")
	script := `echo "start $SIDECAR_LOCK_FENCE" >> "$1"; sleep 0.1; echo "end $SIDECAR_LOCK_FENCE" >> "$1"`
	var ws []*wrapped
	for i := range 6 {
		p := []*daemonProc{a, b}[i%2]
		ws = append(ws, p.start(t, "lock", "excl", "--", "sh", "-c", script, "sh", ledger))
	}
	for _, w := range ws {
		if code := w.wait(t, 60*time.Second); code != 0 {
			t.Fatalf("wrapper exit %d: %s", code, w.stderr)
		}
	}
	b2, _ := os.ReadFile(ledger)
	lines := strings.Split(strings.TrimSpace(string(b2)), "\n")
	if len(lines) != 12 {
		t.Fatalf("ledger has %d lines, want 12:\n%s", len(lines), b2)
	}
	last := int64(0)
	for i := 0; i < len(lines); i += 2 {
		var f1, f2 int64
		if _, err := fmt.Sscanf(lines[i]+" "+lines[i+1], "start %d end %d", &f1, &f2); err != nil || f1 != f2 || f1 <= last {
			t.Fatalf("holders overlapped or fences did not grow at line %d:\n%s", i+1, b2)
		}
		last = f1
	}
}

// TestE2ELockLossStopsChildFirst: the holder's sidecar is cut off from
// etcd by a proxy that stops forwarding; its wrapper's command gets
// SIGTERM before another sidecar's wrapper gets the lock, in every trial.
func TestE2ELockLossStopsChildFirst(t *testing.T) {
	const trials, ttl = 10, 2 * time.Second
	srv := etcdtest.StartServer(t, etcdtest.ServerOptions{})
	proxy := etcdtest.StartProxy(t, srv.ClientURL)
	a := joinedDaemon(t, "a", proxy.URL(), ttl)
	b := joinedDaemon(t, "b", srv.ClientURL, ttl)
	var margins []time.Duration
	for trial := range trials {
		margins = append(margins, lossTrial(t, a, b, proxy, fmt.Sprintf("cut%d", trial)))
		proxy.Heal()
		a.waitHealthy(t)
	}
	t.Logf("SIGTERM to the holder's command came before the other sidecar's command started by %v", margins)
}

// lossTrial holds lock name through a, queues b for it, cuts a off, and
// returns how long before b's command started a's command was stopped.
func lossTrial(t *testing.T, a, b *daemonProc, proxy *etcdtest.Proxy, name string) time.Duration {
	t.Helper()
	marks := filepath.Join(t.TempDir(), "marks")
	holder := a.start(t, "lock", "--kill-timeout", "1s", name, "--", "sh", "-c",
		`trap 'echo stopped $(date +%s%N) >> "$1"; exit 0' TERM; echo held >> "$1"; while :; do sleep 0.02; done`, "sh", marks)
	waitFileHas(t, marks, "held", 30*time.Second)
	next := b.start(t, "lock", name, "--", "sh", "-c", `echo started $(date +%s%N) >> "$1"`, "sh", marks)
	time.Sleep(200 * time.Millisecond) // b's wrapper waits in line
	proxy.Blackhole()
	if code := holder.wait(t, 15*time.Second); code != exitLost {
		t.Fatalf("holder's wrapper exit %d, want %d; stderr: %s", code, exitLost, holder.stderr)
	}
	if code := next.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("waiting wrapper exit %d; stderr: %s", code, next.stderr)
	}
	b2, at := markTimes(marks)
	if at["stopped"] == 0 || at["started"] == 0 || at["stopped"] >= at["started"] {
		t.Fatalf("trial %s: the other sidecar's command started before the holder's was stopped:\n%s", name, b2)
	}
	return time.Duration(at["started"] - at["stopped"])
}

func waitFileHas(t *testing.T, path, want string, within time.Duration) {
	t.Helper()
	etcdtest.Eventually(t, within, path+" has "+want, func() error {
		if b, _ := os.ReadFile(path); !strings.Contains(string(b), want) {
			return fmt.Errorf("%q", b)
		}
		return nil
	})
}

// TestE2ELeaderSidecarKilled: SIGKILL of the leader's sidecar makes the
// waiting candidate leader within TTL + 1 s; the leader's wrapper stops
// its command and exits non-zero; `sidecar leader --watch` shows the
// hand-over.
func TestE2ELeaderSidecarKilled(t *testing.T) {
	const ttl = 2 * time.Second
	srv := etcdtest.StartServer(t, etcdtest.ServerOptions{})
	a := joinedDaemon(t, "a", srv.ClientURL, ttl)
	b := joinedDaemon(t, "b", srv.ClientURL, ttl)
	watch := b.start(t, "leader", "nightly", "--watch", "--json")
	etcdtest.Eventually(t, 30*time.Second, "the watch shows no leader first", func() error {
		if !strings.Contains(watch.stdout.String(), `"leader":null`) {
			return fmt.Errorf("watch: %s", watch.stdout)
		}
		return nil
	})
	leaderA := a.start(t, "elect", "--value", "A", "nightly", "--", "sh", "-c", "while :; do sleep 0.05; done")
	etcdtest.Eventually(t, 30*time.Second, "A leads", func() error {
		if !strings.Contains(watch.stdout.String(), `"leader":"A"`) {
			return fmt.Errorf("watch: %s", watch.stdout)
		}
		return nil
	})
	started := filepath.Join(t.TempDir(), "started")
	b.start(t, "elect", "--value", "B", "nightly", "--", "sh", "-c", `date +%s%N > "$1"; while :; do sleep 0.05; done`, "sh", started)
	time.Sleep(300 * time.Millisecond)
	killed := time.Now()
	a.cmd.Process.Kill()
	waitFileHas(t, started, "\n", 2*ttl+5*time.Second)
	b2, _ := os.ReadFile(started)
	ns, _ := strconv.ParseInt(strings.TrimSpace(string(b2)), 10, 64)
	if took := time.Unix(0, ns).Sub(killed); took > ttl+time.Second {
		t.Errorf("new leader's command started %s after the SIGKILL, want within TTL + 1 s (%s)", took, ttl+time.Second)
	} else {
		t.Logf("new leader's command started %s after the leader's sidecar was killed (TTL %s)", took, ttl)
	}
	if code := leaderA.wait(t, 10*time.Second); code != exitLost {
		t.Errorf("old leader's wrapper exit %d, want %d; stderr: %s", code, exitLost, leaderA.stderr)
	}
	etcdtest.Eventually(t, 5*time.Second, "the watch shows B", func() error {
		if !strings.Contains(watch.stdout.String(), `"leader":"B"`) {
			return fmt.Errorf("watch: %s", watch.stdout)
		}
		return nil
	})
	t.Logf("leader changes seen: %s", etcdtest.CheckLeaderSequence(t, watch.stdout.String(), "none → A → none → B"))
}

// TestE2ELockSidecarPaused: the holder's sidecar is paused (SIGSTOP): it
// cannot tell its wrapper anything, so the wrapper counts the hold lost at
// the last deadline it was told, and stops its command before another
// sidecar's command starts.
func TestE2ELockSidecarPaused(t *testing.T) {
	const ttl = 2 * time.Second
	srv := etcdtest.StartServer(t, etcdtest.ServerOptions{})
	a := joinedDaemon(t, "a", srv.ClientURL, ttl)
	b := joinedDaemon(t, "b", srv.ClientURL, ttl)
	marks := filepath.Join(t.TempDir(), "marks")
	holder := a.start(t, "lock", "--kill-timeout", "1s", "paused", "--", "sh", "-c",
		`trap 'echo stopped $(date +%s%N) >> "$1"; exit 0' TERM; echo held >> "$1"; while :; do sleep 0.02; done`, "sh", marks)
	waitFileHas(t, marks, "held", 30*time.Second)
	next := b.start(t, "lock", "paused", "--", "sh", "-c", `echo started $(date +%s%N) >> "$1"`, "sh", marks)
	time.Sleep(200 * time.Millisecond)
	proc := a.cmd.Process
	if err := etcdtest.StopProcess(proc.Pid); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proc.Signal(syscall.SIGCONT) })
	if code := holder.wait(t, 15*time.Second); code != exitLost || !strings.Contains(holder.stderr.String(), "no word from the sidecar") {
		t.Fatalf("holder's wrapper exit %d, want %d saying the sidecar went quiet; stderr: %s", code, exitLost, holder.stderr)
	}
	if code := next.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("waiting wrapper exit %d; stderr: %s", code, next.stderr)
	}
	b2, at := markTimes(marks)
	if at["stopped"] == 0 || at["started"] == 0 || at["stopped"] >= at["started"] {
		t.Fatalf("the other sidecar's command started before the paused holder's was stopped:\n%s", b2)
	}
	t.Logf("the paused sidecar's command was stopped %s before the other's started", time.Duration(at["started"]-at["stopped"]))
}

// markTimes reads the "word unix-nanoseconds" lines commands wrote to
// marks, by word, and the file.
func markTimes(marks string) ([]byte, map[string]int64) {
	b, _ := os.ReadFile(marks)
	at := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			at[f[0]], _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	return b, at
}

// TestE2EClientKilledReleases: a client SIGKILLed while it holds a lock
// releases it: its connection closes, and the next waiter holds at once;
// the wrapper's command dies with it.
func TestE2EClientKilledReleases(t *testing.T) {
	srv := etcdtest.StartServer(t, etcdtest.ServerOptions{})
	a := joinedDaemon(t, "a", srv.ClientURL, 5*time.Second)
	pidFile := filepath.Join(t.TempDir(), "pid")
	holder := a.start(t, "lock", "killed", "--", "sh", "-c", `echo $$ > "$1"; exec sleep 60`, "sh", pidFile)
	a.waitStatus(t, "the hold in status", 30*time.Second, func(st api.Status) bool { return len(st.Locks) == 1 })
	orphan := waitPID(t, pidFile)
	t.Cleanup(func() { syscall.Kill(orphan, syscall.SIGKILL) })
	started := filepath.Join(t.TempDir(), "started")
	next := a.start(t, "lock", "killed", "--", "sh", "-c", `date +%s%N > "$1"`, "sh", started)
	a.waitStatus(t, "the waiter in status", 30*time.Second, func(st api.Status) bool {
		return len(st.Locks) == 2 && !st.Locks[0].Waiting && st.Locks[1].Waiting && st.Locks[1].Key == "" && st.Locks[1].PID > 0
	})
	time.Sleep(200 * time.Millisecond) // the waiter's watch is live
	killed := time.Now()
	holder.cmd.Process.Kill() // the wrapper: its command gets SIGKILL from the kernel (Pdeathsig)
	if code := next.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("next wrapper exit %d: %s", code, next.stderr)
	}
	etcdtest.Eventually(t, 5*time.Second, "the killed wrapper's command gone", func() error {
		if syscall.Kill(orphan, 0) == nil && !zombie(orphan) {
			return fmt.Errorf("pid %d still runs", orphan)
		}
		return nil
	})
	b, _ := os.ReadFile(started)
	ns, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if took := time.Unix(0, ns).Sub(killed); took > time.Second {
		t.Errorf("the next holder's command started %s after the holder was killed, want within 1 s", took)
	} else {
		t.Logf("the next holder's command started %s after the holder was SIGKILLed", took)
	}
}
