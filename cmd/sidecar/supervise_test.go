package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// superviseAsync runs supervise on argv, with lost as the hold's loss,
// and returns the exit code on a channel.
func superviseAsync(t *testing.T, argv []string, lost chan struct{}, grace time.Duration, stderr *bytes.Buffer) (*child, chan int) {
	t.Helper()
	c, err := startChild(argv, []string{"SIDECAR_LOCK_NAME=test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.signal(syscall.SIGKILL) })
	code := make(chan int, 1)
	go func() {
		code <- supervise(c, superviseConfig{what: `lock "test"`, lost: lost, why: func() string { return "session expired" }, killTimeout: grace, stderr: stderr})
	}()
	return c, code
}

func waitCode(t *testing.T, code chan int, within time.Duration) int {
	t.Helper()
	select {
	case c := <-code:
		return c
	case <-time.After(within):
		t.Fatalf("supervise did not return within %s", within)
		return 0
	}
}

func TestSuperviseExitCode(t *testing.T) {
	var stderr bytes.Buffer
	_, code := superviseAsync(t, []string{"sh", "-c", `test "$SIDECAR_LOCK_NAME" = test && exit 3`}, make(chan struct{}), time.Second, &stderr)
	if c := waitCode(t, code, 5*time.Second); c != 3 {
		t.Errorf("exit code %d, want the child's 3", c)
	}
}

// TestSuperviseLoss: on loss the whole group — a grandchild too — gets
// SIGTERM, a child that ignores it gets SIGKILL after the grace, and the
// wrapper says why and exits with exitLost.
func TestSuperviseLoss(t *testing.T) {
	for _, tc := range []struct {
		name, script string
		grace        time.Duration
		atLeast      time.Duration
	}{
		{"terminates", `sleep 60 & echo $! > "$1"; wait`, 5 * time.Second, 0},
		{"ignores SIGTERM", `trap '' TERM; sleep 60 & echo $! > "$1"; while :; do sleep 0.05; done`, 500 * time.Millisecond, 500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pidFile := filepath.Join(t.TempDir(), "grandchild")
			lost := make(chan struct{})
			var stderr bytes.Buffer
			_, code := superviseAsync(t, []string{"sh", "-c", tc.script, "sh", pidFile}, lost, tc.grace, &stderr)
			grandchild := waitPID(t, pidFile)
			start := time.Now()
			close(lost)
			if c := waitCode(t, code, 10*time.Second); c != exitLost {
				t.Errorf("exit code %d, want %d", c, exitLost)
			}
			if took := time.Since(start); took < tc.atLeast || took > tc.atLeast+3*time.Second {
				t.Errorf("stopped after %s, want about %s", took, tc.atLeast)
			}
			if !strings.Contains(stderr.String(), `lost lock "test": session expired`) {
				t.Errorf("stderr %q does not say why", stderr.String())
			}
			if err := syscall.Kill(grandchild, 0); err == nil {
				time.Sleep(200 * time.Millisecond) // reaped by init shortly
				if syscall.Kill(grandchild, 0) == nil && !zombie(grandchild) {
					t.Errorf("grandchild %d still runs after the loss", grandchild)
				}
			}
		})
	}
}

// TestSuperviseForwardsSignals: SIGTERM to the wrapper reaches the child,
// and the wrapper exits with the child's code.
func TestSuperviseForwardsSignals(t *testing.T) {
	ready := filepath.Join(t.TempDir(), "ready")
	var stderr bytes.Buffer
	_, code := superviseAsync(t, []string{"sh", "-c", `trap 'exit 7' TERM; touch "$1"; while :; do sleep 0.05; done`, "sh", ready}, make(chan struct{}), time.Second, &stderr)
	for i := 0; ; i++ {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if i > 200 {
			t.Fatal("child not ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	syscall.Kill(os.Getpid(), syscall.SIGTERM) // caught by supervise's signal.Notify
	if c := waitCode(t, code, 5*time.Second); c != 7 {
		t.Errorf("exit code %d, want the child's 7 after a forwarded SIGTERM", c)
	}
}

func waitPID(t *testing.T, file string) int {
	t.Helper()
	for i := 0; i < 250; i++ {
		if b, err := os.ReadFile(file); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				return pid
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no pid in %s", file)
	return 0
}

// zombie reports whether pid has exited but not been reaped yet.
func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	fields := strings.Fields(string(b))
	return len(fields) > 2 && fields[2] == "Z"
}
