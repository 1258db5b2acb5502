package cluster

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// within bounds each wait: a cluster start, a join, a clean stop.
const within = 30 * time.Second

// buildSidecar builds cmd/sidecar into a temporary directory.
func buildSidecar(t *testing.T) string {
	t.Helper()
	return etcdtest.BuildSidecar(t, t.TempDir())
}

// node is a running `sidecar run` of the example.
type node struct {
	bin, socket string
	cmd         *exec.Cmd
	log         *etcdtest.LogBuffer
	done        chan error
	stopOnce    sync.Once
}

// start runs `sidecar run args...` in work (where the example's relative
// directories land) with a short socket path of its own, the test's
// environment minus SIDECAR_* and ETCD_* plus env. At cleanup it sends
// SIGTERM and fails the test unless the sidecar exits 0.
func start(t *testing.T, bin, work string, env []string, args ...string) *node {
	t.Helper()
	n := &node{bin: bin, socket: filepath.Join(etcdtest.SocketDir(t), "s.sock"), log: &etcdtest.LogBuffer{}, done: make(chan error, 1)}
	n.cmd = exec.Command(bin, append(append([]string{"run"}, args...), "--socket", n.socket)...)
	n.cmd.Dir = work
	n.cmd.Env = append(envWithout("SIDECAR_", "ETCD_"), env...)
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { n.done <- n.cmd.Wait() }()
	t.Cleanup(func() { n.stop(t) })
	return n
}

// stop sends SIGTERM and waits for a clean exit, once.
func (n *node) stop(t *testing.T) {
	n.stopOnce.Do(func() { n.wait(t) })
}

func (n *node) wait(t *testing.T) {
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-n.done:
		if err != nil {
			t.Errorf("%s: exit after SIGTERM: %v", n.cmd.Args, err)
		}
	case <-time.After(within):
		n.cmd.Process.Kill()
		<-n.done
		t.Errorf("%s: no exit within %s of SIGTERM", n.cmd.Args, within)
	}
	if t.Failed() {
		t.Logf("%s log:\n%s", n.cmd.Args, n.log)
	}
}

// cluster runs `sidecar cluster --json` on n's socket.
func (n *node) cluster() (api.Cluster, error) {
	var cl api.Cluster
	out, err := exec.Command(n.bin, "cluster", "--json", "--socket", n.socket).Output()
	if err != nil {
		return cl, fmt.Errorf("sidecar cluster: %v", err)
	}
	return cl, json.Unmarshal(out, &cl)
}

// waitMembers polls `sidecar cluster --json` on n until it lists exactly
// names as voting members, each endpoint answering without errors.
func (n *node) waitMembers(t *testing.T, names ...string) {
	t.Helper()
	took := etcdtest.Eventually(t, within, fmt.Sprintf("members %v", names), func() error {
		cl, err := n.cluster()
		if err != nil {
			return err
		}
		var got []string
		for _, m := range cl.Members {
			if m.IsLearner {
				return fmt.Errorf("%s is still a learner", m.Name)
			}
			for _, e := range m.Endpoints {
				if len(e.Errors) > 0 {
					return fmt.Errorf("%s: %s: %v", m.Name, e.Endpoint, e.Errors)
				}
			}
			got = append(got, m.Name)
		}
		slices.Sort(got)
		if !slices.Equal(got, names) {
			return fmt.Errorf("members %v", got)
		}
		return nil
	})
	t.Logf("members %v after %s", names, took.Round(time.Millisecond))
}

// The three YAML files form a cluster; etcd04.yaml joins it as a fourth
// voting member.
func TestClusterFromYAML(t *testing.T) {
	bin, work := buildSidecar(t), t.TempDir()
	var nodes []*node
	for _, f := range []string{"etcd01.yaml", "etcd02.yaml", "etcd03.yaml"} {
		nodes = append(nodes, start(t, bin, work, nil, "--config", abs(t, f)))
	}
	nodes[0].waitMembers(t, "etcd01", "etcd02", "etcd03")

	fourth := start(t, bin, work, nil, "--config", abs(t, "etcd04.yaml"))
	fourth.waitMembers(t, "etcd01", "etcd02", "etcd03", "etcd04")
	nodes[2].waitMembers(t, "etcd01", "etcd02", "etcd03", "etcd04")
	stopAll(t, append(nodes, fourth)...)
}

// stopAll sends SIGTERM to every node at once, then waits for each: one
// by one, the last members would wait for a quorum that is gone.
func stopAll(t *testing.T, nodes ...*node) {
	for _, n := range nodes {
		n.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, n := range nodes {
		n.stop(t)
	}
}

// The same three nodes from etcd.conf environment files form a cluster.
func TestClusterFromEnvFiles(t *testing.T) {
	bin, work := buildSidecar(t), t.TempDir()
	var nodes []*node
	for _, name := range []string{"etcd01", "etcd02", "etcd03"} {
		nodes = append(nodes, start(t, bin, work, envFile(t, name+".env"), "--data-dir", "./cluster-data/env/"+name))
	}
	nodes[1].waitMembers(t, "etcd01", "etcd02", "etcd03")
	stopAll(t, nodes...)
}

func abs(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// envFile reads the NAME=value lines of an environment file, as systemd's
// EnvironmentFile= does (comments and blank lines skipped).
func envFile(t *testing.T, name string) []string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
			env = append(env, line)
		}
	}
	return env
}

// envWithout is the test's environment minus variables with these prefixes.
func envWithout(prefixes ...string) []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(kv, p) })
	})
}
