package deploy_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// local-cluster.sh --short starts three sidecars, waits until each is
// healthy, checks that `sidecar cluster` lists the three members, stops
// them and exits 0 only if each exited 0 after SIGTERM.
func TestLocalClusterScript(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("local-cluster.sh needs curl")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	// Ports 26379.. are below Linux's ephemeral range, so the free ports
	// other tests draw do not collide with them.
	cmd := exec.CommandContext(ctx, "bash", "local-cluster.sh", "--short", "--bin", sidecarBinary(t),
		"--base-port", "26379", "--dir", t.TempDir(), "--timeout", "60")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("local-cluster.sh --short: %v\n%s", err, out)
	}
	for _, want := range []string{"3 members", "cluster up: 3 members, all healthy", "etcd01 stopped (exit 0)", "etcd02 stopped (exit 0)", "etcd03 stopped (exit 0)"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output has no %q:\n%s", want, out)
		}
	}
}
