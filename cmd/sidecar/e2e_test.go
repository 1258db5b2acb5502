package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// sidecarBinary builds cmd/sidecar once per test process.
func sidecarBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sidecar-e2e-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath, buildErr = etcdtest.BuildSidecarOnce(dir)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func socketDir(t *testing.T) string { return etcdtest.SocketDir(t) }

type daemonProc struct {
	cmd    *exec.Cmd
	socket string
	stderr *bytes.Buffer
	done   chan error
}

// startProc runs `sidecar run` with the given config body.
func startProc(t *testing.T, yaml string, env ...string) *daemonProc {
	t.Helper()
	bin := sidecarBinary(t)
	socket := filepath.Join(socketDir(t), "s.sock")
	cfg := filepath.Join(t.TempDir(), "sidecar.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &daemonProc{socket: socket, stderr: &bytes.Buffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(bin, "run", "--config", cfg, "--socket", socket)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("daemon stderr:\n%s", p.stderr)
		}
	})
	return p
}

// cli runs a client command against the daemon's socket.
func (p *daemonProc) cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(sidecarBinary(t), append(args, "--socket", p.socket)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%v: %s", err, errb.String())
	}
	return out.String(), nil
}

// waitStatus polls `sidecar status --json` until cond holds.
func (p *daemonProc) waitStatus(t *testing.T, what string, within time.Duration, cond func(api.Status) bool) api.Status {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		out, err := p.cli(t, "status", "--json")
		var st api.Status
		if err == nil && json.Unmarshal([]byte(out), &st) == nil && cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("status: no %s after %s: %v %s", what, within, err, out)
		}
		select {
		case err := <-p.done:
			t.Fatalf("daemon exited early: %v\n%s", err, p.stderr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitHealthy waits until the daemon is connected to etcd.
func (p *daemonProc) waitHealthy(t *testing.T) api.Status {
	t.Helper()
	return p.waitStatus(t, "etcd connection", 60*time.Second, func(st api.Status) bool { return st.Etcd.Connected })
}

// terminate sends SIGTERM and returns the exit code.
func (p *daemonProc) terminate(t *testing.T) int {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	return waitExit(t, p.done, "daemon did not exit within 30s of SIGTERM")
}

// waitExit waits up to 30s for a process's Wait result on done (put back
// for the cleanup) and returns its exit code; after 30s it fails the test
// with what.
func waitExit(t *testing.T, done chan error, what string) int {
	t.Helper()
	select {
	case err := <-done:
		done <- err
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(30 * time.Second):
		t.Fatal(what)
		return -1
	}
}

func freeURL(t *testing.T) string {
	return fmt.Sprintf("http://127.0.0.1:%d", etcdtest.FreePort(t))
}

func TestE2EEmbedded(t *testing.T) {
	clientURL, peerURL := freeURL(t), freeURL(t)
	dataDir := t.TempDir()
	p := startProc(t, fmt.Sprintf(`
name: e2e-1
data_dir: %s
embedded:
  listen_client_urls: [%s]
  listen_peer_urls: [%s]
log: {level: info, format: json}
`, dataDir, clientURL, peerURL))
	st := p.waitHealthy(t)
	if st.Node != "e2e-1" || st.Etcd.Mode != "embedded" || st.Etcd.Member == nil || st.Etcd.Member.DataDir != filepath.Join(dataDir, "etcd") {
		t.Fatalf("status = %+v", st)
	}
	out, err := p.cli(t, "cluster")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"e2e-1", clientURL, "true", "cluster id", "1 member, leader e2e-1, alarms: none\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("cluster output lacks %q:\n%s", want, out)
		}
	}
	// etcdctl sees the same member through the embedded member's client URL.
	ectl, err := etcdtest.Etcdctl(t, clientURL, "endpoint", "status", "-w", "json")
	if err != nil || !strings.Contains(ectl, st.Etcd.Member.ID) && !strings.Contains(out, st.Etcd.Member.ID) {
		t.Fatalf("etcdctl endpoint status: %v %s", err, ectl)
	}
	out, err = p.cli(t, "status")
	if err != nil || !strings.Contains(out, "embedded mode, connected") {
		t.Fatalf("status: %v\n%s", err, out)
	}
	if code := p.terminate(t); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0\n%s", code, p.stderr)
	}
	if _, err := os.Stat(p.socket); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left after exit: %v", err)
	}
}

func TestE2EJoin(t *testing.T) {
	srv := etcdtest.StartServer(t, etcdtest.ServerOptions{})
	p := startProc(t, fmt.Sprintf(`
name: joiner
data_dir: %s
etcd:
  endpoints: [%s]
`, t.TempDir(), srv.ClientURL), "HTTPS_PROXY=http://127.0.0.1:1", "HTTP_PROXY=http://127.0.0.1:1")
	st := p.waitHealthy(t)
	if st.Etcd.Mode != "join" || st.Etcd.Member != nil || st.Etcd.Endpoints[0] != srv.ClientURL {
		t.Fatalf("status = %+v", st)
	}
	out, err := p.cli(t, "cluster", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var cl api.Cluster
	if err := json.Unmarshal([]byte(out), &cl); err != nil || len(cl.Members) != 1 || cl.Members[0].Endpoints[0].Version == "" {
		t.Fatalf("cluster --json: %v %s", err, out)
	}
	if code := p.terminate(t); code != 0 {
		t.Fatalf("exit code = %d", code)
	}
}

// While etcd is down the daemon keeps serving its API, reports why, and
// connects once etcd comes up.
func TestE2EJoinWaitsForEtcd(t *testing.T) {
	srv := etcdtest.StartServer(t, etcdtest.ServerOptions{})
	srv.Stop()
	p := startProc(t, fmt.Sprintf("data_dir: %s\netcd:\n  endpoints: [%s]\n  dial_timeout: 1s\n", t.TempDir(), srv.ClientURL))
	host := strings.TrimPrefix(srv.ClientURL, "http://")
	p.waitStatus(t, "refused endpoint in last_error", 30*time.Second, func(st api.Status) bool {
		return strings.Contains(st.Etcd.LastError, host) && strings.Contains(st.Etcd.LastError, "refused")
	})
	srv.Restart()
	p.waitHealthy(t)
}

func TestE2EBadConfig(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "never")
	cfg := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
data_dir: %s
servce: {name: x}
service: {name: orders, port: 70000, ttl: 1s}
embedded: {heartbeat_interval: 100ms, election_timeout: 200ms}
`, dataDir)), 0o600)
	cmd := exec.Command(sidecarBinary(t), "run", "--config", cfg, "--socket", filepath.Join(socketDir(t), "s.sock"))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("exit = %v, want status 2\n%s", err, out)
	}
	for _, want := range []string{"servce: unknown field", "service.port: 70000", "service.ttl: 1s: want at least 2s", "embedded.election_timeout"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("bad config touched the data dir: %v", err)
	}
}

func TestE2ENoDaemon(t *testing.T) {
	socket := filepath.Join(socketDir(t), "none.sock")
	cmd := exec.Command(sidecarBinary(t), "status", "--socket", socket)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err == nil {
		t.Fatal("status without a daemon succeeded")
	}
	msg := stderr.String()
	if stdout.Len() != 0 || strings.Count(msg, "\n") != 1 || !strings.Contains(msg, socket) || !strings.Contains(msg, "sidecar run") {
		t.Fatalf("stdout %q stderr %q: want one line naming %s and `sidecar run`", stdout.String(), msg, socket)
	}
}

// With NOTIFY_SOCKET set, systemd hears READY=1 once etcd answers and
// STOPPING=1 on SIGTERM.
func TestE2ESystemdNotify(t *testing.T) {
	notify := filepath.Join(socketDir(t), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	p := startProc(t, fmt.Sprintf("data_dir: %s\nembedded:\n  listen_client_urls: [%s]\n  listen_peer_urls: [%s]\n",
		t.TempDir(), freeURL(t), freeURL(t)), "NOTIFY_SOCKET="+notify)
	read := func() string {
		conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		buf := make([]byte, 256)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return string(buf[:n])
	}
	if got := read(); !strings.Contains(got, "READY=1") {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	if _, err := p.cli(t, "status"); err != nil {
		t.Fatalf("not serving after READY=1: %v", err)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if got := read(); !strings.Contains(got, "STOPPING=1") {
		t.Fatalf("notification %q, want STOPPING=1", got)
	}
}
