package embedded

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// serverBinary returns the etcd server of the module's Go tools.
func serverBinary(t *testing.T) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "go", "tool", "-n", "server").Output()
	if err != nil {
		t.Fatalf("go tool -n server: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func TestDataDirInUseByEtcdProcess(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etcd")
	curl, purl := freeURL(t), freeURL(t)
	var logs bytes.Buffer
	cmd := exec.CommandContext(t.Context(), serverBinary(t),
		"--name", "plain", "--data-dir", dir,
		"--listen-client-urls", curl, "--advertise-client-urls", curl,
		"--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
		"--initial-cluster", "plain="+purl, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("etcd output:\n%s", logs.String())
		}
	})
	cli := newClient(t, curl)
	etcdtest.Eventually(t, 30*time.Second, "etcd answers", func() error {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		_, err := cli.Status(ctx, curl)
		return err
	})

	cfg := testConfig(t, "embedded")
	cfg.DataDir = dir
	begin := time.Now()
	err := runFails(t, cfg)
	if took := time.Since(begin); took > 5*time.Second {
		t.Errorf("Run took %s, want it to fail fast", took)
	}
	if !errors.Is(err, ErrDataDirInUse) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "another etcd process") {
		t.Fatalf("Run: %v; want ErrDataDirInUse naming %s and another etcd process", err, dir)
	}
}

func TestHasMember(t *testing.T) {
	cfg := testConfig(t, "m")
	if hasMember(cfg.DataDir) {
		t.Fatalf("hasMember(%s) before the first start = true", cfg.DataDir)
	}
	if err := mustRun(t, cfg).stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !hasMember(cfg.DataDir) {
		t.Fatalf("hasMember(%s) after a start = false", cfg.DataDir)
	}
}
