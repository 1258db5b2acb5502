package main

import (
	"bytes"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// lineSignal is an io.Writer that keeps what is written and closes first
// once a whole line has arrived.
type lineSignal struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	once  sync.Once
	first chan struct{}
}

func (w *lineSignal) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if bytes.Contains(w.buf.Bytes(), []byte("\n")) {
		w.once.Do(func() { close(w.first) })
	}
	return len(p), nil
}

func (w *lineSignal) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// watcher is a running `sidecar services orders --watch`.
type watcher struct {
	cmd    *exec.Cmd
	stdout *lineSignal
	stderr bytes.Buffer // read only after done
	done   chan error
}

// startWatch runs `sidecar services orders --watch` against the daemon and
// returns once it printed the service's first state.
func startWatch(t *testing.T, p *daemonProc) *watcher {
	t.Helper()
	w := &watcher{stdout: &lineSignal{first: make(chan struct{})}, done: make(chan error, 1)}
	w.cmd = exec.Command(sidecarBinary(t), "services", "orders", "--watch", "--socket", p.socket)
	w.cmd.Stdout, w.cmd.Stderr = w.stdout, &w.stderr
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { w.done <- w.cmd.Wait() }()
	t.Cleanup(func() {
		w.cmd.Process.Kill()
		<-w.done
	})
	select {
	case <-w.stdout.first:
	case err := <-w.done:
		w.done <- err
		t.Fatalf("watch exited before printing: %v\n%s", err, w.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("watch printed nothing within 30s: %q", w.stdout.String())
	}
	if out := w.stdout.String(); !strings.HasPrefix(out, "orders: 1 instance at") {
		t.Fatalf("watch output %q, want the orders instance", out)
	}
	return w
}

// wait returns the watcher's exit code once it has exited.
func (w *watcher) wait(t *testing.T) int {
	t.Helper()
	return waitExit(t, w.done, "watch still running 30s after it should have ended")
}

// The daemon dies under a watch: the watch fails, saying so in one line
// naming the socket.
func TestE2EWatchDaemonKilled(t *testing.T) {
	srv := etcdtest.StartServer(t, etcdtest.ServerOptions{})
	p := startOrders(t, srv.Client(t), srv.ClientURL)
	w := startWatch(t, p)

	p.cmd.Process.Signal(syscall.SIGKILL)
	if code := w.wait(t); code == 0 {
		t.Fatal("watch exited 0 after the daemon was killed")
	}
	msg := w.stderr.String()
	if strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "sidecar: ") || !strings.Contains(msg, "went away") || !strings.Contains(msg, p.socket) {
		t.Fatalf("stderr %q: want one line saying the daemon on %s went away", msg, p.socket)
	}
	t.Logf("stderr: %s", msg)
}

// Ctrl-C or SIGTERM ends a watch: that is how it is meant to end, so exit 0
// and nothing on stderr.
func TestE2EWatchInterrupted(t *testing.T) {
	srv := etcdtest.StartServer(t, etcdtest.ServerOptions{})
	p := startOrders(t, srv.Client(t), srv.ClientURL)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			w := startWatch(t, p)
			w.cmd.Process.Signal(sig)
			if code := w.wait(t); code != 0 {
				t.Fatalf("exit code %d after %v, want 0; stderr %q", code, sig, w.stderr.String())
			}
			if msg := w.stderr.String(); msg != "" {
				t.Fatalf("stderr %q after %v, want nothing", msg, sig)
			}
		})
	}
	if _, err := p.cli(t, "status"); err != nil {
		t.Fatalf("daemon not serving after the watchers ended: %v", err)
	}
}
