package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// TestE2EPauseIsNotEtcdSilence: a daemon stopped (SIGSTOP) for longer than
// the liveness monitor's 2 s of silence, while etcd is well, does not
// count etcd as down when it resumes: /v1/health stays 200 and the log
// has no "etcd does not answer".
func TestE2EPauseIsNotEtcdSilence(t *testing.T) {
	srv := etcdtest.StartServer(t, etcdtest.ServerOptions{})
	p := startProc(t, fmt.Sprintf("name: paused\ndata_dir: %s\netcd: {endpoints: [%s]}\n", t.TempDir(), srv.ClientURL))
	p.waitHealthy(t)
	proc := p.cmd.Process
	if err := etcdtest.StopProcess(proc.Pid); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proc.Signal(syscall.SIGCONT) })
	time.Sleep(3 * time.Second)
	if err := proc.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		out, err := p.cli(t, "status", "--json")
		var st api.Status
		if err != nil || json.Unmarshal([]byte(out), &st) != nil || !st.Etcd.Connected {
			t.Fatalf("status after SIGCONT: %v\n%s", err, out)
		}
	}
	if code := p.terminate(t); code != 0 {
		t.Errorf("exit code %d", code)
	}
	if log := p.stderr.String(); strings.Contains(log, "etcd does not answer") {
		t.Errorf("the daemon's own pause counted as etcd's silence:\n%s", log)
	}
}
