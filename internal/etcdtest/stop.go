package etcdtest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// StopProcess sends SIGSTOP to pid and returns once every thread of the
// process is stopped. kill(2) returns before the signal takes effect: a
// thread already running may still answer a request, which makes a test
// that pauses and then expects silence flaky on a busy machine.
func StopProcess(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return fmt.Errorf("SIGSTOP %d: %w", pid, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		stopped, err := allThreadsStopped(pid)
		if err != nil || stopped {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d not stopped 5s after SIGSTOP", pid)
		}
		time.Sleep(time.Millisecond)
	}
}

// allThreadsStopped reports whether each thread's state in
// /proc/PID/task/TID/stat is T (stopped) or t (traced).
func allThreadsStopped(pid int) (bool, error) {
	stats, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(stats) == 0 {
		return false, fmt.Errorf("process %d: no threads in /proc", pid)
	}
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			return false, nil // a thread that just exited; look again
		}
		// The state follows the command name, which ends with the last ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) {
			return false, fmt.Errorf("process %d: unreadable %s", pid, path)
		}
		if s := b[i+2]; s != 'T' && s != 't' {
			return false, nil
		}
	}
	return true, nil
}
