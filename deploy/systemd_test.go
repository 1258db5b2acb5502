package deploy_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// unit is a parsed systemd unit: section → key → values in file order.
type unit map[string]map[string][]string

// parseUnit reads a unit file the way systemd does for the subset used
// here: [Section] headers, Key=Value lines, # and ; comments.
func parseUnit(t *testing.T, text string) unit {
	t.Helper()
	u, section := unit{}, ""
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("unit line %d: %q is not Key=Value in a section", i+1, line)
			}
			k = strings.TrimSpace(k)
			u[section][k] = append(u[section][k], strings.TrimSpace(v))
		}
	}
	return u
}

// one returns the single value of key in [Service].
func (u unit) one(t *testing.T, key string) string {
	t.Helper()
	vs := u["Service"][key]
	if len(vs) != 1 {
		t.Fatalf("[Service] %s: %d values %q, want one", key, len(vs), vs)
	}
	return vs[0]
}

// parseEnvFile reads an EnvironmentFile= the way systemd does for the
// subset used here: KEY=VALUE lines, # and ; comments, one pair of quotes
// around a value removed.
func parseEnvFile(t *testing.T, text string) map[string]string {
	t.Helper()
	env := map[string]string{}
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("env line %d: %q is not KEY=VALUE", i+1, line)
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		env[strings.TrimSpace(k)] = v
	}
	return env
}

// installed maps the paths the unit names to the files of this directory
// that the README installs there.
var installed = map[string]string{
	"/usr/local/bin/sidecar":    "", // the binary under test
	"/etc/etcd/etcd.conf":       "systemd/etcd.conf",
	"/etc/sidecar/sidecar.env":  "systemd/sidecar.env",
	"/var/lib/sidecar":          "StateDirectory",
	"/run/sidecar/sidecar.sock": "RuntimeDirectory",
}

func TestSystemdUnitSettings(t *testing.T) {
	u := parseUnit(t, repoFile(t, "systemd/sidecar.service"))
	env := parseEnvFile(t, repoFile(t, "systemd/sidecar.env"))
	for key, want := range map[string]string{
		"Type": "notify", "NotifyAccess": "main", "Restart": "on-failure", "KillMode": "mixed", "KillSignal": "SIGTERM",
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"StateDirectory": "sidecar", "RuntimeDirectory": "sidecar", "User": "sidecar",
	} {
		if got := u.one(t, key); got != want {
			t.Errorf("[Service] %s=%s, want %s", key, got, want)
		}
	}
	if got, want := u["Service"]["EnvironmentFile"], []string{"-/etc/etcd/etcd.conf", "-/etc/sidecar/sidecar.env"}; !slices.Equal(got, want) {
		t.Errorf("EnvironmentFile= lines %q, want %q (etcd.conf first, so that sidecar.env wins)", got, want)
	}
	// The env file's directories are the ones systemd creates and leaves
	// writable under ProtectSystem=strict.
	if got := env["SIDECAR_DATA_DIR"]; got != "/var/lib/"+u.one(t, "StateDirectory") {
		t.Errorf("sidecar.env SIDECAR_DATA_DIR=%s, want /var/lib/%s (StateDirectory=)", got, u.one(t, "StateDirectory"))
	}
	if got := path.Dir(env["SIDECAR_API_SOCKET"]); got != "/run/"+u.one(t, "RuntimeDirectory") {
		t.Errorf("sidecar.env SIDECAR_API_SOCKET in %s, want /run/%s (RuntimeDirectory=)", got, u.one(t, "RuntimeDirectory"))
	}
	stop, err := time.ParseDuration(u.one(t, "TimeoutStopSec"))
	if err != nil || stop < 20*time.Second {
		t.Errorf("TimeoutStopSec=%s: want a duration of at least 20s (the API's 5s grace, etcd's shutdown, a drain)", u.one(t, "TimeoutStopSec"))
	}
}

// systemd-analyze checks the unit offline: every directive known and
// valid, the binary executable, and an exposure score of at most 2.0
// ("OK") for the hardening options.
func TestSystemdAnalyze(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze is not installed here")
	}
	text := repoFile(t, "systemd/sidecar.service")
	unitPath := filepath.Join(t.TempDir(), "sidecar.service")
	text = strings.ReplaceAll(text, "ExecStart=/usr/local/bin/sidecar", "ExecStart="+sidecarBinary(t))
	if err := os.WriteFile(unitPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", unitPath).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command("systemd-analyze", "security", "--offline=yes", "--threshold=20", unitPath).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security: exposure above 2.0 (%v):\n%s", err, out)
	}
}

// The daemon runs as the unit runs it: ExecStart's command line, the
// variables of the EnvironmentFile= lines in their order (the files this
// directory ships), and NOTIFY_SOCKET. Only what is specific to a machine
// is moved to this one: the etcd.conf's addresses to loopback ports (one
// member), and the directories systemd would create to temporary ones.
func TestSystemdUnitRuns(t *testing.T) {
	u := parseUnit(t, repoFile(t, "systemd/sidecar.service"))
	argv := strings.Fields(u.one(t, "ExecStart"))
	if _, ok := installed[argv[0]]; !ok {
		t.Fatalf("ExecStart runs %s, which the README does not install", argv[0])
	}
	argv[0] = sidecarBinary(t)
	env := unitEnv(t, u)
	notify := listenNotify(t, filepath.Join(etcdtest.SocketDir(t), "notify"))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "NOTIFY_SOCKET=" + notify.LocalAddr().String()}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	log := &etcdtest.LogBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	defer func() { cmd.Process.Kill(); <-exited }()

	if got := readNotify(t, notify, 90*time.Second); !strings.Contains(got, "READY=1") { // TimeoutStartSec
		t.Fatalf("first notification %q, want READY=1; log:\n%s", got, log)
	}
	if code, err := healthStatus(env["SIDECAR_API_HTTP"]); code != 200 {
		t.Fatalf("GET /v1/health on %s after READY=1: %d %v", env["SIDECAR_API_HTTP"], code, err)
	}
	checkStatus(t, env)
	checkJSONLog(t, log.String())

	cmd.Process.Signal(syscall.SIGTERM) // KillSignal=
	if got := readNotify(t, notify, 10*time.Second); !strings.Contains(got, "STOPPING=1") {
		t.Errorf("notification after SIGTERM %q, want STOPPING=1", got)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("exit after SIGTERM: %v (systemd counts it as a failure); log:\n%s", waitErr, log)
		}
	case <-time.After(30 * time.Second): // TimeoutStopSec
		t.Errorf("no exit within TimeoutStopSec of SIGTERM; log:\n%s", log)
	}
}

// unitEnv is the environment of the unit's EnvironmentFile= lines, read in
// their order from the files of this directory installed there, with what
// is specific to a machine moved to this one: etcd.conf's addresses to
// loopback ports (one member), the directories systemd creates to
// temporary ones. Each moved variable must be set by the files.
func unitEnv(t *testing.T, u unit) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, f := range u["Service"]["EnvironmentFile"] {
		src, ok := installed[strings.TrimPrefix(f, "-")]
		if !ok || src == "" {
			t.Fatalf("EnvironmentFile=%s: no file of deploy/ is installed there", f)
		}
		for k, v := range parseEnvFile(t, repoFile(t, src)) {
			env[k] = v
		}
	}
	dir, sockDir := t.TempDir(), etcdtest.SocketDir(t)
	client, peer := freeURL(t), freeURL(t)
	moved := map[string]string{
		"ETCD_DATA_DIR":                    filepath.Join(dir, "etcd"),
		"ETCD_LISTEN_CLIENT_URLS":          client,
		"ETCD_ADVERTISE_CLIENT_URLS":       client,
		"ETCD_LISTEN_PEER_URLS":            peer,
		"ETCD_INITIAL_ADVERTISE_PEER_URLS": peer,
		"ETCD_INITIAL_CLUSTER":             env["ETCD_NAME"] + "=" + peer,
		"SIDECAR_DATA_DIR":                 dir,
		"SIDECAR_API_SOCKET":               filepath.Join(sockDir, "sidecar.sock"),
		"SIDECAR_API_HTTP":                 fmt.Sprintf("127.0.0.1:%d", etcdtest.FreePort(t)),
	}
	for k, v := range moved {
		if _, ok := env[k]; !ok {
			t.Fatalf("the environment files do not set %s", k)
		}
		env[k] = v
	}
	return env
}

func freeURL(t *testing.T) string {
	return fmt.Sprintf("http://127.0.0.1:%d", etcdtest.FreePort(t))
}

// listenNotify is systemd's end of NOTIFY_SOCKET: a unixgram socket.
func listenNotify(t *testing.T, path string) *net.UnixConn {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func readNotify(t *testing.T, conn *net.UnixConn, within time.Duration) string {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(within))
	buf := make([]byte, 512)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("no notification on NOTIFY_SOCKET within %s: %v", within, err)
	}
	return string(buf[:n])
}

// checkStatus asks the daemon, over the socket of SIDECAR_API_SOCKET, for
// its status: the node is named by etcd.conf's ETCD_NAME, in embedded mode.
func checkStatus(t *testing.T, env map[string]string) {
	t.Helper()
	out, err := exec.Command(sidecarBinary(t), "status", "--json", "--socket", env["SIDECAR_API_SOCKET"]).Output()
	if err != nil {
		t.Fatalf("sidecar status: %v", err)
	}
	var st struct {
		Node string `json:"node"`
		Etcd struct {
			Mode string `json:"mode"`
		} `json:"etcd"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("sidecar status --json: %v\n%s", err, out)
	}
	if st.Node != env["ETCD_NAME"] || st.Etcd.Mode != "embedded" {
		t.Errorf("status: node %q in %q mode, want %q (ETCD_NAME) in embedded mode", st.Node, st.Etcd.Mode, env["ETCD_NAME"])
	}
}

// checkJSONLog: sidecar.env's SIDECAR_LOG_FORMAT=json took effect.
func checkJSONLog(t *testing.T, log string) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Errorf("log line %q is not JSON (SIDECAR_LOG_FORMAT=json)", sc.Text())
			return
		}
	}
}
