package chaos

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// coordTTL is the coordination TTL of the lock and election scenarios: the
// smallest the configuration allows, so that losses show quickly.
const coordTTL = 2 * time.Second

// exitLost is the exit code of a wrapper whose hold was lost.
const exitLost = api.ExitHoldLost

// links is one sidecar's own set of client links: a proxy in front of each
// member, so that one sidecar can be cut off while the others are not.
type links []*etcdtest.Proxy

// newLinks starts a proxy in front of each member of w's cluster.
func (w *world) newLinks(t *testing.T) links {
	t.Helper()
	var ls links
	for _, u := range w.cluster.ClientURLs() {
		ls = append(ls, etcdtest.StartProxy(t, u))
	}
	return ls
}

// endpoints returns the YAML list of the links' URLs.
func (ls links) endpoints() string {
	var urls []string
	for _, p := range ls {
		urls = append(urls, p.URL())
	}
	return "[" + strings.Join(urls, ", ") + "]"
}

func (ls links) blackhole() {
	for _, p := range ls {
		p.Blackhole()
	}
}

func (ls links) heal() {
	for _, p := range ls {
		p.Heal()
	}
}

// coordYAML is a sidecar configuration named name, in join mode through
// endpoints (a YAML list), with the coordination TTL coordTTL.
func coordYAML(t *testing.T, name, endpoints string) string {
	return fmt.Sprintf("name: %s\ndata_dir: %s\netcd: {endpoints: %s}\ncoordination: {ttl: %s}\n",
		name, t.TempDir(), endpoints, coordTTL)
}

// waitConnected waits until the sidecar's status says it is connected to
// etcd.
func (p *sidecarProc) waitConnected(t *testing.T, within time.Duration) {
	t.Helper()
	p.waitStatus(t, "connected to etcd", within, func(st api.Status) error {
		if !st.Etcd.Connected {
			return fmt.Errorf("not connected: %s", st.Etcd.LastError)
		}
		return nil
	})
}

// waitStatus waits until the sidecar's GET /v1/status passes check.
func (p *sidecarProc) waitStatus(t *testing.T, what string, within time.Duration, check func(api.Status) error) {
	t.Helper()
	etcdtest.Eventually(t, within, "sidecar status: "+what, func() error {
		if p.exited() {
			t.Fatalf("sidecar exited early: %v\n%s", p.err, p.log)
		}
		var st api.Status
		if _, err := p.get("/v1/status", &st); err != nil {
			return err
		}
		return check(st)
	})
}

// waiting checks that holds has a hold that waits in line.
func waiting(holds []api.Hold) error {
	for _, h := range holds {
		if h.Waiting {
			return nil
		}
	}
	return fmt.Errorf("no waiting hold in %+v", holds)
}

// wrapper is a client command of the built binary (lock, elect, leader)
// run in the background against one sidecar.
type wrapper struct {
	cmd    *exec.Cmd
	stdout *etcdtest.LogBuffer
	stderr *etcdtest.LogBuffer
	done   chan struct{}
	code   int // exit code, set before done is closed
}

// run starts `sidecar --socket S args...` against p. At cleanup it gets
// SIGTERM (the wrapper passes it to its command's group), then SIGKILL
// after 3 s.
func (p *sidecarProc) run(t *testing.T, args ...string) *wrapper {
	t.Helper()
	w := &wrapper{stdout: &etcdtest.LogBuffer{}, stderr: &etcdtest.LogBuffer{}, done: make(chan struct{})}
	w.cmd = exec.Command(sidecarBinary(t), append([]string{"--socket", p.socket}, args...)...)
	w.cmd.Stdout, w.cmd.Stderr = w.stdout, w.stderr
	w.cmd.WaitDelay = time.Second // a command left running keeps the pipes open
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = w.cmd.Wait()
		w.code = w.cmd.ProcessState.ExitCode()
		close(w.done)
	}()
	t.Cleanup(func() { w.stop() })
	return w
}

// stop sends SIGTERM, waits up to 3 s, then kills; it returns the exit
// code.
func (w *wrapper) stop() int {
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(3 * time.Second):
		_ = w.cmd.Process.Kill()
		<-w.done
	}
	return w.code
}

// wait waits up to within for the wrapper to exit and returns its code.
func (w *wrapper) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-w.done:
		return w.code
	case <-time.After(within):
		t.Fatalf("%v still runs after %s; stderr: %s", w.cmd.Args[3:], within, w.stderr)
		return 0
	}
}

// waitOutput waits until the wrapper's stdout contains want.
func (w *wrapper) waitOutput(t *testing.T, want string, within time.Duration) {
	t.Helper()
	etcdtest.Eventually(t, within, "output "+want, func() error {
		if !strings.Contains(w.stdout.String(), want) {
			return fmt.Errorf("stdout %q, stderr %q", w.stdout, w.stderr)
		}
		return nil
	})
}

// waitMark waits until the marks file has a line starting with word.
func waitMark(t *testing.T, marks, word string, within time.Duration) {
	t.Helper()
	etcdtest.Eventually(t, within, marks+" has "+word, func() error {
		if _, at := markTimes(marks); at[word].IsZero() {
			b, _ := os.ReadFile(marks)
			return fmt.Errorf("%q", b)
		}
		return nil
	})
}

// markTimes reads the "word unix-nanoseconds" lines commands appended to
// marks: the file and the time of each word (its first line).
func markTimes(marks string) ([]byte, map[string]time.Time) {
	b, _ := os.ReadFile(marks)
	at := map[string]time.Time{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		if _, seen := at[f[0]]; seen {
			continue
		}
		if ns, err := strconv.ParseInt(f[1], 10, 64); err == nil {
			at[f[0]] = time.Unix(0, ns)
		}
	}
	return b, at
}
