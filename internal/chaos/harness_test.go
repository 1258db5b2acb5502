package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// full reports whether the full form of the suite runs (SIDECAR_CHAOS=full);
// otherwise each scenario runs its short form, the one CI runs.
func full() bool { return os.Getenv("SIDECAR_CHAOS") == "full" }

// trials returns the number of trials or cycles of a scenario: short in CI,
// long with SIDECAR_CHAOS=full.
func trials(short, long int) int {
	if full() {
		return long
	}
	return short
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// sidecarBinary builds cmd/sidecar once per test process into a temporary
// directory that TestMain removes.
func sidecarBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		binPath, buildErr = etcdtest.BuildSidecarOnce(binDir)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// binDir holds the built binary; set by TestMain.
var binDir string

// sidecarProc is one `sidecar run` process of the built binary.
type sidecarProc struct {
	cmd    *exec.Cmd
	socket string
	log    *etcdtest.LogBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // cmd.Wait's result, set before done is closed
	exitAt time.Time     // when Wait returned
	http   *http.Client
}

// startSidecar runs `sidecar run` with the YAML configuration body, without
// the test's SIDECAR_* and ETCD_* variables, on a short socket path. At
// cleanup it is killed if still running, and its log is written to the test
// log if the test failed.
func startSidecar(t *testing.T, yaml string) *sidecarProc {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "sidecar.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &sidecarProc{
		socket: filepath.Join(etcdtest.SocketDir(t), "s.sock"),
		log:    &etcdtest.LogBuffer{},
		done:   make(chan struct{}),
	}
	p.cmd = exec.Command(sidecarBinary(t), "run", "--config", cfg, "--socket", p.socket)
	p.cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "SIDECAR_") || strings.HasPrefix(kv, "ETCD_")
	})
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		p.exitAt = time.Now()
		close(p.done)
	}()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", p.socket)
	}, DisableKeepAlives: true}
	p.http = &http.Client{Transport: tr, Timeout: 2 * time.Second}
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("sidecar log (pid %d):\n%s", p.cmd.Process.Pid, p.log)
		}
	})
	return p
}

// signal sends sig and waits up to 30 s for the process to exit; it
// returns the exit code (-1 for death by a signal).
func (p *sidecarProc) signal(t *testing.T, sig syscall.Signal) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("sidecar: send %v: %v", sig, err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("sidecar: no exit within 30s of %v", sig)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		t.Fatalf("sidecar: wait: %v", p.err)
	}
	return 0
}

// get sends GET path to the local API and decodes a 2xx or 503 body into v
// (if not nil); it returns the status code.
func (p *sidecarProc) get(path string, v any) (int, error) {
	resp, err := p.http.Get("http://sidecar" + path)
	if err != nil {
		return 0, fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, fmt.Errorf("GET %s: read body: %w", path, err)
	}
	if v != nil && (resp.StatusCode/100 == 2 || resp.StatusCode == http.StatusServiceUnavailable) {
		if err := json.Unmarshal(body, v); err != nil {
			return resp.StatusCode, fmt.Errorf("GET %s: decode %q: %w", path, body, err)
		}
	}
	return resp.StatusCode, nil
}

// exited reports whether the process has exited.
func (p *sidecarProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}
