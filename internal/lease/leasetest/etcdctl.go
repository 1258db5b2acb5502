// Package leasetest runs etcdctl's long-lived commands (lock, elect) in the
// background for the tests of the lock and election packages, so that they
// can check that etcdctl and the sidecar exclude each other both ways. It
// is imported only by tests.
package leasetest

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// Etcdctl is an etcdctl process whose standard output is read line by
// line as it comes. Its methods are not safe for concurrent use.
type Etcdctl struct {
	t     testing.TB
	cmd   *exec.Cmd
	lines chan string
	done  chan struct{} // closed when the process has exited
}

// StartEtcdctl starts etcdctl against endpoint with args (for example
// "lock", "/sidecar/locks/x"), without proxy, ETCD_* or ETCDCTL_* variables
// in its environment. It is killed at test cleanup if it still runs.
func StartEtcdctl(t testing.TB, endpoint string, args ...string) *Etcdctl {
	t.Helper()
	cmd := exec.Command(etcdtest.EtcdctlBinary(t), append([]string{"--endpoints=" + endpoint}, args...)...)
	cmd.Env = cleanEnv()
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("leasetest: etcdctl: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("leasetest: start etcdctl: %v", err)
	}
	p := &Etcdctl{t: t, cmd: cmd, lines: make(chan string, 64), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		for range p.lines { // unread output must not block the reader
		}
		<-p.done
	})
	return p
}

// Line returns the next line of output, or false when none came within
// wait (or the process ended).
func (p *Etcdctl) Line(wait time.Duration) (string, bool) {
	select {
	case l, ok := <-p.lines:
		return l, ok
	case <-time.After(wait):
		return "", false
	}
}

// Stop sends SIGTERM (etcdctl then unlocks or resigns) and waits up to 10s
// for the process to exit.
func (p *Etcdctl) Stop() {
	p.t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.t.Fatalf("leasetest: etcdctl did not exit within 10s of SIGTERM")
	}
}

// cleanEnv is the environment without variables that would change what
// etcdctl does behind a test's back.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch upper := strings.ToUpper(name); {
		case strings.HasPrefix(upper, "ETCD_"), strings.HasPrefix(upper, "ETCDCTL_"),
			strings.HasSuffix(upper, "_PROXY"):
			continue
		}
		env = append(env, kv)
	}
	return env
}
