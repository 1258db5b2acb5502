package etcdtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// goTool resolves the path of a Go tool of the module once per test binary.
type goTool struct {
	name string
	once sync.Once
	path string
	err  error
}

var (
	serverTool  = &goTool{name: "server"}
	etcdctlTool = &goTool{name: "etcdctl"}
)

// binary returns the tool's binary, building it on first use (go tool -n
// builds without running). A build can take a minute or two the first time.
func (g *goTool) binary(t testing.TB) string {
	t.Helper()
	g.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "tool", "-n", g.name)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			g.err = fmt.Errorf("go tool -n %s: %w: %s", g.name, err, strings.TrimSpace(stderr.String()))
			return
		}
		g.path = strings.TrimSpace(string(out))
		if _, err := os.Stat(g.path); err != nil {
			g.err = fmt.Errorf("go tool -n %s: %w", g.name, err)
		}
	})
	if g.err != nil {
		t.Fatalf("etcdtest: %v", g.err)
	}
	return g.path
}

// ServerBinary returns the path of the etcd server binary (go tool server).
func ServerBinary(t testing.TB) string {
	t.Helper()
	return serverTool.binary(t)
}

// EtcdctlBinary returns the path of the etcdctl binary (go tool etcdctl).
func EtcdctlBinary(t testing.TB) string {
	t.Helper()
	return etcdctlTool.binary(t)
}

// Etcdctl runs etcdctl against endpoint with args (for example
// "user", "add", "root:pw") and returns its combined output. Flags in args
// come after the defaults it sets (--endpoints, --dial-timeout=3s,
// --command-timeout=10s), so they can override them. TLS flags (--cacert,
// --cert, --key) and credentials (--user) are up to the caller. The command
// runs without proxy, ETCD_* and ETCDCTL_* variables in its environment and
// is killed after 30s.
func Etcdctl(t testing.TB, endpoint string, args ...string) (string, error) {
	t.Helper()
	bin := EtcdctlBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := append([]string{"--endpoints=" + endpoint, "--dial-timeout=3s", "--command-timeout=10s"}, args...)
	cmd := exec.CommandContext(ctx, bin, full...)
	cmd.Env = cleanEnv()
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("etcdtest: etcdctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// cleanEnv is the environment without variables that would change what etcd
// or etcdctl do behind a test's back: proxies, ETCD_* (read as flags by the
// server) and ETCDCTL_*.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		upper := strings.ToUpper(name)
		switch {
		case strings.HasPrefix(upper, "ETCD_"), strings.HasPrefix(upper, "ETCDCTL_"):
			continue
		case upper == "HTTP_PROXY", upper == "HTTPS_PROXY", upper == "ALL_PROXY", upper == "NO_PROXY":
			continue
		}
		env = append(env, kv)
	}
	return env
}
