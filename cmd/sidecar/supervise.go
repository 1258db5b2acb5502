package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/sidecar-dev/sidecar/api"
)

// exitLost is the exit code of a wrapper whose hold was lost: api.ExitHoldLost.
const exitLost = api.ExitHoldLost

// defaultKillTimeout is how long a child stopped on loss has between
// SIGTERM and SIGKILL, unless --kill-timeout says otherwise (SPEC §2).
const defaultKillTimeout = 5 * time.Second

// child is a command run in a process group of its own, so that every
// process it starts is signalled with it.
type child struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the command has exited
	err  error         // of Wait, once done is closed
}

// startChild starts argv with env added to the sidecar's environment, in
// its own process group, sharing the sidecar's stdin, stdout and stderr.
func startChild(argv, env []string) (*child, error) {
	if len(argv) == 0 {
		return nil, errors.New("no command given after --")
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	// Its own group; and SIGKILL to it when the wrapper dies, even by
	// SIGKILL, so that it never runs on unheld. The kernel sends that
	// signal when the thread that started the child ends: the thread is
	// locked to this goroutine for good, and the wrapper's main goroutine
	// starts the child, so the thread lasts as long as the wrapper.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	runtime.LockOSThread()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// signal sends sig to every process of the child's group.
func (c *child) signal(sig syscall.Signal) {
	syscall.Kill(-c.cmd.Process.Pid, sig) // ESRCH: the group is empty already
}

// stop sends SIGTERM to the group and, if the child has not exited after
// grace, SIGKILL; it returns once the child has exited.
func (c *child) stop(grace time.Duration) {
	c.signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		c.signal(syscall.SIGKILL)
		<-c.done
	}
}

// code is the child's exit code: its own, or 128 + the signal that ended it.
func (c *child) code() int {
	var ee *exec.ExitError
	if !errors.As(c.err, &ee) {
		if c.err != nil {
			return 1
		}
		return 0
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ee.ExitCode()
}

// superviseConfig is what supervise needs besides the child.
type superviseConfig struct {
	what        string          // "lock \"nightly\"", for messages
	lost        <-chan struct{} // closed when the hold is lost
	why         func() string   // why it was lost, once lost is closed
	killTimeout time.Duration
	stderr      io.Writer
}

// supervise waits for the child to exit, for the hold to be lost, or for
// SIGINT/SIGTERM, and returns the wrapper's exit code. Signals are passed
// to the child's whole group, and the child's exit code is the wrapper's.
// On loss the group gets SIGTERM, then SIGKILL after killTimeout, and the
// wrapper says why and exits with exitLost. When the child exits on its
// own, what is left of its group gets SIGTERM, so that nothing it started
// runs on unheld.
func supervise(c *child, cfg superviseConfig) int {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	for {
		select {
		case <-c.done:
			c.signal(syscall.SIGTERM)
			return c.code()
		case s := <-sigs:
			c.signal(s.(syscall.Signal))
		case <-cfg.lost:
			fmt.Fprintf(cfg.stderr, "sidecar: lost %s: %s; stopping the command (SIGTERM, SIGKILL after %s)\n", cfg.what, cfg.why(), cfg.killTimeout)
			c.stop(cfg.killTimeout)
			return exitLost
		}
	}
}
