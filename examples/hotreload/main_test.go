package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// TestMain fails the package when goroutines outlive its tests: run must
// stop everything it started.
func TestMain(m *testing.M) { etcdtest.RunWithLeakCheck(m, 10*time.Second) }

// reloadWithin bounds every wait for a change to reach the HTTP answer:
// far above the 50ms quiet spell, far below the test's budget.
const reloadWithin = 5 * time.Second

// httpc asks without keep-alive, so no connection outlives a request.
var httpc = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// startExample runs the example in-process on a free loopback port,
// serving the settings of dir, and returns its base URL and log. At cleanup
// it cancels run and fails the test unless run returns nil within 10s.
func startExample(t *testing.T, dir string) (string, *etcdtest.LogBuffer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &etcdtest.LogBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, ln, dir, logs.Logger()) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("run did not return within 10s of cancellation")
		}
		if t.Failed() {
			t.Logf("example log:\n%s", logs)
		}
	})
	return "http://" + ln.Addr().String(), logs
}

// waitAnswer polls GET base/ until its body is want.
func waitAnswer(t *testing.T, base, want string) {
	t.Helper()
	etcdtest.Eventually(t, reloadWithin, fmt.Sprintf("GET / answering %q", want), func() error {
		resp, err := httpc.Get(base + "/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK || string(b) != want {
			return fmt.Errorf("got %d %q", resp.StatusCode, b)
		}
		return nil
	})
}

// TestReloadThroughSidecar runs the README's loop: the built sidecar with
// the shipped sidecar.yaml (ports, socket and the example's port
// overridden; its relative dirs land in a temporary working directory)
// registers the example and mirrors /config/hello/ into the directory the
// example watches; a put changes the example's answer, a delete brings the
// default back.
func TestReloadThroughSidecar(t *testing.T) {
	work := t.TempDir()
	base, logs := startExample(t, filepath.Join(work, "hello-config"))
	waitAnswer(t, base, "hello (color=blue)\n")

	sc := startSidecar(t, work, base)
	waitRegistered(t, sc, strings.TrimPrefix(base, "http://"))

	cli := sc.client(t)
	put := func(key, val string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if _, err := cli.Put(ctx, key, val); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	put("/config/hello/greeting", "hi from etcd")
	waitAnswer(t, base, "hi from etcd (color=blue)\n")
	put("/config/hello/color", "green\n")
	waitAnswer(t, base, "hi from etcd (color=green)\n")

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := cli.Delete(ctx, "/config/hello/greeting"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	waitAnswer(t, base, "hello (color=green)\n")

	for _, want := range []string{`greeting.old=hello greeting.new="hi from etcd"`, `color.old=blue color.new=green`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("example log lacks %s:\n%s", want, logs)
		}
	}
}

// sidecarProc is a running `sidecar run`.
type sidecarProc struct {
	bin, socket, clientURL string
	cmd                    *exec.Cmd
	done                   chan error
	stderr                 *etcdtest.LogBuffer
}

// startSidecar builds cmd/sidecar and runs it in work with the shipped
// sidecar.yaml, on free loopback ports and a short socket path, registering
// the example at base. At cleanup it sends SIGTERM and waits for the exit
// (SIGKILL after 15s).
func startSidecar(t *testing.T, work, base string) *sidecarProc {
	t.Helper()
	bin := etcdtest.BuildSidecar(t, t.TempDir())
	cfg, err := filepath.Abs("sidecar.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(base, "http://"))
	p := &sidecarProc{
		bin:       bin,
		socket:    filepath.Join(etcdtest.SocketDir(t), "s.sock"),
		clientURL: fmt.Sprintf("http://127.0.0.1:%d", etcdtest.FreePort(t)),
		done:      make(chan error, 1),
		stderr:    &etcdtest.LogBuffer{},
	}
	p.cmd = exec.Command(bin, "run", "--config", cfg, "--socket", p.socket)
	p.cmd.Dir = work
	p.cmd.Env = append(envWithout("SIDECAR_", "ETCD_"),
		"SIDECAR_EMBEDDED_LISTEN_CLIENT_URLS="+p.clientURL,
		fmt.Sprintf("SIDECAR_EMBEDDED_LISTEN_PEER_URLS=http://127.0.0.1:%d", etcdtest.FreePort(t)),
		"SIDECAR_SERVICE_PORT="+port,
		"SIDECAR_SERVICE_CHECK_HTTP="+base+"/healthz",
	)
	p.cmd.Stdout, p.cmd.Stderr = p.stderr, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop sends SIGTERM, waits up to 15s for the exit, then kills.
func (p *sidecarProc) stop(t *testing.T) {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("sidecar exit after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		t.Error("sidecar did not exit within 15s of SIGTERM")
	}
	if t.Failed() {
		t.Logf("sidecar log:\n%s", p.stderr)
	}
}

// client returns a client of the sidecar's embedded etcd, closed at
// cleanup (before the sidecar stops, as cleanups run last first).
func (p *sidecarProc) client(t *testing.T) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{p.clientURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// waitRegistered polls `sidecar services hello --json` until it lists the
// example, and only it, at addr under the id the shipped sidecar.yaml gives. The bound covers etcd's start and the 1s check interval.
func waitRegistered(t *testing.T, p *sidecarProc, addr string) {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	id := "hello-hotreload-" + port // <service>-<node name>-<port>
	etcdtest.Eventually(t, 20*time.Second, "hello registered at "+addr, func() error {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("sidecar exited: %v\n%s", err, p.stderr)
		default:
		}
		out, err := exec.Command(p.bin, "services", "hello", "--json", "--socket", p.socket).Output()
		if err != nil {
			return err
		}
		var s api.Service
		if err := json.Unmarshal(out, &s); err != nil {
			return err
		}
		if len(s.Instances) != 1 || s.Instances[0].Addr != addr || s.Instances[0].ID != id {
			return fmt.Errorf("instances %+v", s.Instances)
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

// TestSnapshotLayout swaps payloads as Kubernetes does for ConfigMap
// volumes: visible names are symlinks name -> ..data/name, and ..data is
// replaced by renaming a ..data_tmp symlink over it. The visible names
// never change, so only a watch of the directory sees the swap.
func TestSnapshotLayout(t *testing.T) {
	dir := t.TempDir()
	base, _ := startExample(t, dir)
	waitAnswer(t, base, "hello (color=blue)\n")

	swap(t, dir, map[string]string{"greeting": "one", "color": "red"})
	waitAnswer(t, base, "one (color=red)\n")
	swap(t, dir, map[string]string{"greeting": "two", "color": "red"})
	waitAnswer(t, base, "two (color=red)\n")
	swap(t, dir, map[string]string{"greeting": "three"})
	waitAnswer(t, base, "three (color=blue)\n")
}

// swap publishes files as the new snapshot of dir: a new payload
// directory, a ..data_tmp symlink to it renamed over ..data, visible links
// for new names, visible links of names no longer there removed, and the
// old payload removed.
func swap(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	payload, err := os.MkdirTemp(dir, "..payload_")
	if err != nil {
		t.Fatal(err)
	}
	for name, val := range files {
		if err := os.WriteFile(filepath.Join(payload, name), []byte(val), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "..data")
	old, _ := os.Readlink(data)
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(payload), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, data); err != nil {
		t.Fatal(err)
	}
	for _, s := range known {
		visible := filepath.Join(dir, s.name)
		_, want := files[s.name]
		_, err := os.Lstat(visible)
		switch {
		case want && err != nil:
			err = os.Symlink(filepath.Join("..data", s.name), visible)
		case !want && err == nil:
			err = os.Remove(visible)
		default:
			err = nil
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLoad pins what a file means: trimmed content, the default when the
// file is missing or blank, the previous value when it cannot be read.
func TestLoad(t *testing.T) {
	prev := values{"greeting": "before", "color": "before"}
	tests := []struct {
		name    string
		setup   func(dir string) error // writes dir/greeting
		want    string
		wantErr bool
	}{
		{"missing", func(string) error { return nil }, "hello", false},
		{"blank", func(d string) error { return os.WriteFile(filepath.Join(d, "greeting"), []byte(" \n"), 0o644) }, "hello", false},
		{"trimmed", func(d string) error { return os.WriteFile(filepath.Join(d, "greeting"), []byte(" hi there\n"), 0o644) }, "hi there", false},
		{"unreadable", func(d string) error { return os.Mkdir(filepath.Join(d, "greeting"), 0o755) }, "before", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := tt.setup(dir); err != nil {
				t.Fatal(err)
			}
			v, err := load(dir, prev)
			if v["greeting"] != tt.want || (err != nil) != tt.wantErr || v["color"] != "blue" {
				t.Fatalf("load = %q, %v; want greeting %q, color blue, error %v", v, err, tt.want, tt.wantErr)
			}
		})
	}
}
