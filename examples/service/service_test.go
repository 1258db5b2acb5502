package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// within bounds each wait: etcd's start, a check turning critical, a stop.
const within = 30 * time.Second

// appAddr is the address sidecar.yaml registers and checks.
const appAddr = "127.0.0.1:18080"

// The shipped sidecar.yaml registers the app while its /healthz passes,
// withdraws it when /healthz fails (state critical, no instance listed),
// and registers it again when /healthz passes again.
func TestServiceHealthCheck(t *testing.T) {
	sc := startSidecar(t, buildSidecar(t))
	startApp(t)

	sc.waitState(t, api.RegRegistered)
	if s := sc.service(t); len(s.Instances) != 1 || s.Instances[0].Addr != appAddr || s.Instances[0].Metadata["version"] != "v1" {
		t.Fatalf("sidecar services orders: %+v, want one instance at %s with version=v1", s, appAddr)
	}

	post(t, "/sick")
	sc.waitState(t, api.RegCritical)
	if s := sc.service(t); len(s.Instances) != 0 {
		t.Fatalf("sidecar services orders while critical: %+v, want no instance", s)
	}

	post(t, "/well")
	sc.waitState(t, api.RegRegistered)
}

// buildSidecar builds cmd/sidecar into a temporary directory.
func buildSidecar(t *testing.T) string {
	t.Helper()
	return etcdtest.BuildSidecar(t, t.TempDir())
}

// startApp serves the app in this process until the test ends.
func startApp(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, appAddr) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("app: %v", err)
		}
	})
}

// post sends POST path to the app.
func post(t *testing.T, path string) {
	t.Helper()
	resp, err := http.Post("http://"+appAddr+path, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %s", path, resp.Status)
	}
}

// sidecar is the running `sidecar run --config sidecar.yaml`.
type sidecar struct {
	bin, socket string
	log         *etcdtest.LogBuffer
}

// startSidecar runs the shipped sidecar.yaml in a temporary directory on
// a short socket path, without the test's SIDECAR_* and ETCD_* variables;
// at cleanup it sends SIGTERM and wants exit status 0.
func startSidecar(t *testing.T, bin string) *sidecar {
	t.Helper()
	cfg, err := filepath.Abs("sidecar.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sc := &sidecar{bin: bin, socket: filepath.Join(etcdtest.SocketDir(t), "s.sock"), log: &etcdtest.LogBuffer{}}
	cmd := exec.Command(bin, "run", "--config", cfg, "--socket", sc.socket)
	cmd.Dir = t.TempDir()
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "SIDECAR_") || strings.HasPrefix(kv, "ETCD_")
	})
	cmd.Stdout, cmd.Stderr = sc.log, sc.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("sidecar exit after SIGTERM: %v", err)
			}
		case <-time.After(within):
			cmd.Process.Kill()
			<-done
			t.Errorf("sidecar: no exit within %s of SIGTERM", within)
		}
		if t.Failed() {
			t.Logf("sidecar log:\n%s", sc.log)
		}
	})
	return sc
}

// cli runs a client command on the sidecar's socket and decodes its JSON.
func (sc *sidecar) cli(v any, args ...string) error {
	out, err := exec.Command(sc.bin, append(args, "--json", "--socket", sc.socket)...).Output()
	if err != nil {
		return fmt.Errorf("sidecar %v: %v", args, err)
	}
	return json.Unmarshal(out, v)
}

// waitState polls `sidecar status --json` until the registration is in
// state.
func (sc *sidecar) waitState(t *testing.T, state string) {
	t.Helper()
	took := etcdtest.Eventually(t, within, "registration "+state, func() error {
		var st api.Status
		if err := sc.cli(&st, "status"); err != nil {
			return err
		}
		if st.Registration == nil || st.Registration.State != state {
			return fmt.Errorf("registration %+v", st.Registration)
		}
		return nil
	})
	t.Logf("registration %s after %s", state, took.Round(time.Millisecond))
}

// service returns `sidecar services orders --json`.
func (sc *sidecar) service(t *testing.T) api.Service {
	t.Helper()
	var s api.Service
	if err := sc.cli(&s, "services", "orders"); err != nil {
		t.Fatal(err)
	}
	return s
}
