package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// exitWithin bounds every wait for a wrapper or job to exit: far above a
// run of the job plus a 2s session TTL, far below the test's budget.
const exitWithin = 20 * time.Second

// binaries are the built sidecar and job.
type binaries struct{ sidecar, batchjob string }

// buildBinaries builds cmd/sidecar and this example into a temporary
// directory.
func buildBinaries(t *testing.T) binaries {
	t.Helper()
	dir := t.TempDir()
	sidecar := etcdtest.BuildSidecar(t, dir, "github.com/sidecar-dev/sidecar/examples/batchjob")
	return binaries{sidecar: sidecar, batchjob: filepath.Join(dir, "batchjob")}
}

// job is the argv of the job appending n entries, pause apart, to l.
func (b binaries) job(l Ledger, by string, n int, pause time.Duration) []string {
	return []string{b.batchjob, "-ledger", l.Path, "-by", by, "-entries", strconv.Itoa(n), "-pause", pause.String()}
}

// wrapper is the argv of `sidecar VERB --socket <n's> ARGS... -- CMD...`:
// args are the wrapper's flags and NAME.
func (b binaries) wrapper(n *node, verb string, args ...any) []string {
	argv := []string{b.sidecar, verb, "--socket", n.socket}
	for _, a := range args {
		switch a := a.(type) {
		case string:
			argv = append(argv, a)
		case []string:
			argv = append(append(argv, "--"), a...)
		}
	}
	return argv
}

// proc is a process a test runs: a wrapper or the job.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *etcdtest.LogBuffer
	done           chan struct{} // closed once it has exited
	err            error         // of Wait, once done is closed
}

// startProc starts argv with the test's environment minus SIDECAR_* and
// ETCD_* variables. At cleanup a process still running gets SIGTERM (a
// wrapper passes it to its command), then SIGKILL after exitWithin.
func startProc(t *testing.T, argv ...string) *proc {
	t.Helper()
	p := newProc(argv...)
	p.start(t)
	return p
}

// newProc prepares argv like startProc; start starts it, after the caller
// has changed p.cmd.
func newProc(argv ...string) *proc {
	p := &proc{cmd: exec.Command(argv[0], argv[1:]...), stdout: &etcdtest.LogBuffer{}, stderr: &etcdtest.LogBuffer{}, done: make(chan struct{})}
	p.cmd.Env = envWithout("SIDECAR_", "ETCD_")
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	return p
}

// start launches the process and registers the cleanup startProc
// describes.
func (p *proc) start(t *testing.T) {
	t.Helper()
	p.launch(t)
	t.Cleanup(func() {
		select {
		case <-p.done:
			return
		default:
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(exitWithin):
			p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// launch starts the process and a goroutine that waits for its exit.
func (p *proc) launch(t *testing.T) {
	t.Helper()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
}

// wantExit waits up to exitWithin for the process to exit and fails the
// test unless its exit code is code.
func (p *proc) wantExit(t *testing.T, code int) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(exitWithin):
		t.Fatalf("%s did not exit within %s\nstdout:\n%s\nstderr:\n%s", p.cmd.Args, exitWithin, p.stdout, p.stderr)
	}
	got := 0
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		got = ee.ExitCode()
	} else if p.err != nil {
		t.Fatalf("%s: %v", p.cmd.Args, p.err)
	}
	if got != code {
		t.Fatalf("%s exited %d, want %d\nstdout:\n%s\nstderr:\n%s", p.cmd.Args, got, code, p.stdout, p.stderr)
	}
}

// node is a running `sidecar run`.
type node struct {
	bin, socket string
	*proc
}

// startNode runs the sidecar with the shipped config file in work (its
// relative directories land there), on a short socket path, with env
// added. At cleanup it sends SIGTERM and fails the test unless the
// sidecar exits 0 within exitWithin.
func startNode(t *testing.T, bins binaries, work, config string, env ...string) *node {
	t.Helper()
	cfg, err := filepath.Abs(config)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{bin: bins.sidecar, socket: filepath.Join(etcdtest.SocketDir(t), "s.sock")}
	n.proc = newProc(bins.sidecar, "run", "--config", cfg, "--socket", n.socket)
	n.cmd.Dir = work
	n.cmd.Env = append(n.cmd.Env, env...)
	n.launch(t)
	t.Cleanup(func() { n.stop(t) })
	return n
}

// stop sends SIGCONT (in case a test left it stopped) and SIGTERM, and
// waits for a clean exit.
func (n *node) stop(t *testing.T) {
	n.cmd.Process.Signal(syscall.SIGCONT)
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
		if n.err != nil {
			t.Errorf("sidecar exit after SIGTERM: %v", n.err)
		}
	case <-time.After(exitWithin):
		n.cmd.Process.Kill()
		<-n.done
		t.Errorf("sidecar did not exit within %s of SIGTERM", exitWithin)
	}
	if t.Failed() {
		t.Logf("sidecar %s log:\n%s%s", filepath.Base(n.cmd.Args[3]), n.stdout, n.stderr)
	}
}

// pause stops the sidecar with SIGSTOP; resume continues it.
func (n *node) pause(t *testing.T) {
	t.Helper()
	if err := etcdtest.StopProcess(n.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
}
func (n *node) resume(t *testing.T) { n.signal(t, syscall.SIGCONT) }

func (n *node) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := n.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%s: %v", sig, err)
	}
}

// waitConnected polls `sidecar status --json` until the sidecar reports
// its etcd connected; the bound covers etcd's start.
func (n *node) waitConnected(t *testing.T) {
	t.Helper()
	etcdtest.Eventually(t, 30*time.Second, "sidecar connected to etcd", func() error {
		select {
		case <-n.done:
			t.Fatalf("sidecar exited: %v\n%s%s", n.err, n.stdout, n.stderr)
		default:
		}
		out, err := exec.Command(n.bin, "status", "--json", "--socket", n.socket).Output()
		if err != nil {
			return err
		}
		var s api.Status
		if err := json.Unmarshal(out, &s); err != nil {
			return err
		}
		if !s.Etcd.Connected {
			return fmt.Errorf("etcd %s not connected: %s", s.Etcd.Mode, s.Etcd.LastError)
		}
		return nil
	})
}

// envWithout is the test's environment without variables whose names start
// with one of prefixes.
func envWithout(prefixes ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		keep := true
		for _, p := range prefixes {
			keep = keep && !strings.HasPrefix(kv, p)
		}
		if keep {
			env = append(env, kv)
		}
	}
	return env
}
