package sidecar

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/client"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// embeddedConfig is a daemon config with an embedded member on free ports.
func embeddedConfig(t *testing.T) Config {
	t.Helper()
	cfg := Defaults()
	cfg.Name = "t1"
	cfg.DataDir = t.TempDir()
	cfg.Embedded.ListenClientURLs = []string{fmt.Sprintf("http://127.0.0.1:%d", etcdtest.FreePort(t))}
	cfg.Embedded.ListenPeerURLs = []string{fmt.Sprintf("http://127.0.0.1:%d", etcdtest.FreePort(t))}
	cfg.API.Socket = filepath.Join(shortDir(t), "s.sock")
	cfg.Log.Level = "error"
	return cfg
}

type running struct {
	d    *Daemon
	cli  *client.Client
	stop func() error // cancels Run and returns its error
}

// startDaemon runs a daemon until the test ends and waits until it is ready.
func startDaemon(t *testing.T, cfg Config) *running {
	t.Helper()
	r, err := launch(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// launch is startDaemon returning its error, for use off the test goroutine.
func launch(t *testing.T, cfg Config) (*running, error) {
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("SIDECAR_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", cfg.Name)
	}
	d, err := New(cfg, log)
	if err != nil {
		return nil, fmt.Errorf("New: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var result error
	done := make(chan struct{})
	go func() { result = d.Run(ctx); close(done) }()
	stop := func() error {
		cancel()
		<-done
		return result
	}
	t.Cleanup(func() { stop() })
	select {
	case <-d.Ready():
	case <-done:
		return nil, fmt.Errorf("Run ended before ready: %v", result)
	case <-time.After(60 * time.Second):
		return nil, fmt.Errorf("daemon %s not ready after 60s", cfg.Name)
	}
	return &running{d: d, cli: client.New(cfg.SocketPath()), stop: stop}, nil
}

func TestDaemonEmbeddedDefault(t *testing.T) {
	cfg := embeddedConfig(t)
	r := startDaemon(t, cfg)
	ctx := t.Context()

	h, err := r.cli.Health(ctx)
	if err != nil || !h.Healthy || h.Components["etcd"].State != api.StateOK {
		t.Fatalf("health = %+v, %v", h, err)
	}
	st, err := r.cli.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Node != "t1" || st.Etcd.Mode != "embedded" || !st.Etcd.Connected || st.Etcd.Member == nil ||
		st.Etcd.Member.Name != "t1" || st.Etcd.Endpoints[0] != cfg.Embedded.ListenClientURLs[0] || st.Registration != nil {
		t.Fatalf("status = %+v", st)
	}
	cl, err := r.cli.Cluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(cl.Members) != 1 || len(cl.Members[0].Endpoints) != 1 || !cl.Members[0].Endpoints[0].IsLeader || cl.Members[0].Endpoints[0].RaftTerm == 0 {
		t.Fatalf("cluster = %+v", cl)
	}
	metrics := get(t, r.cli, "/metrics", http.StatusOK)
	for _, want := range []string{"sidecar_build_info{", "go_goroutines", "process_resident_memory_bytes", "grpc_client_handled_total", `sidecar_etcd_connection_state{state="READY"} 1`, `sidecar_etcd_connection_state{state="CONNECTING"} 0`, "sidecar_etcd_up 1"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	if err := r.stop(); err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
	if _, err := os.Stat(cfg.SocketPath()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left behind after shutdown: %v", err)
	}
	var nr *client.NotRunningError
	if _, err := r.cli.Status(context.Background()); !errors.As(err, &nr) || !strings.Contains(err.Error(), cfg.SocketPath()) {
		t.Fatalf("status after stop: %v, want NotRunningError naming the socket", err)
	}
}

func get(t *testing.T, c *client.Client, path string, wantCode int) string {
	t.Helper()
	resp, err := c.Do(t.Context(), http.MethodGet, path, nil, wantCode)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantCode {
		t.Fatalf("GET %s = %d, want %d", path, resp.StatusCode, wantCode)
	}
	return string(b)
}

func TestSecondDaemonRefused(t *testing.T) {
	cfg := embeddedConfig(t)
	r := startDaemon(t, cfg)
	cfg2 := embeddedConfig(t)
	cfg2.API.Socket = cfg.API.Socket
	d2, err := New(cfg2, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	err = d2.Run(t.Context())
	if !errors.Is(err, ErrDaemonRunning) {
		t.Fatalf("second daemon: %v, want ErrDaemonRunning", err)
	}
	if h, err := r.cli.Health(t.Context()); err != nil || !h.Healthy {
		t.Fatalf("first daemon hurt: %+v %v", h, err)
	}
}

// rawRequest writes bytes on the socket and returns the status line.
func rawRequest(t *testing.T, socket string, req []byte) string {
	t.Helper()
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write(req)
	line, _ := io.ReadAll(io.LimitReader(c, 200))
	s, _, _ := strings.Cut(string(line), "\r\n")
	return s
}

func TestMalformedRequests(t *testing.T) {
	cfg := embeddedConfig(t)
	r := startDaemon(t, cfg)
	big := bytes.Repeat([]byte("a"), 100<<10)
	tests := []struct {
		name string
		req  []byte
		want string
	}{
		{"garbage", []byte("\x00\x01\x02 nonsense\r\n\r\n"), "HTTP/1.1 400"},
		{"oversized header", append(append([]byte("GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Big: "), big...), "\r\n\r\n"...), "HTTP/1.1 431"},
		{"unknown path", []byte("GET /v1/nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), "HTTP/1.1 404"},
		{"wrong method", []byte("DELETE /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), "HTTP/1.1 405"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := rawRequest(t, cfg.API.Socket, tc.req); !strings.HasPrefix(got, tc.want) {
				t.Fatalf("status line %q, want %q", got, tc.want)
			}
		})
	}
	// A client that sends half a header, or half a body, is cut off, not
	// served forever; the body's is answered 408.
	c, err := net.Dial("unix", cfg.API.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET /v1/status HTTP/1.1\r\n"))
	b, err := net.Dial("unix", cfg.API.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.Write([]byte("PUT /v1/registration/weight HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"weight\":"))
	c.SetReadDeadline(time.Now().Add(readHeaderTimeout + 5*time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("slow header not cut off by the server: %v", err)
	}
	b.SetReadDeadline(time.Now().Add(bodyReadTimeout + 5*time.Second))
	if got, err := io.ReadAll(b); err != nil || !strings.HasPrefix(string(got), "HTTP/1.1 408") {
		t.Fatalf("slow body: %q, %v; want 408 and the end of the connection", got, err)
	}
	if h, err := r.cli.Health(t.Context()); err != nil || !h.Healthy {
		t.Fatalf("daemon unhealthy after bad requests: %+v %v", h, err)
	}
}

func TestDecodeJSON(t *testing.T) {
	type body struct {
		Weight int `json:"weight"`
	}
	tests := []struct {
		name     string
		body     string
		ctype    string
		wantCode int
	}{
		{"ok", `{"weight":5}`, "application/json", 200},
		{"unknown field", `{"weight":5,"x":1}`, "application/json", 400},
		{"syntax", `{"weight":`, "application/json", 400},
		{"trailing", `{"weight":5} {}`, "application/json", 400},
		{"empty", ``, "application/json", 400},
		{"wrong type", `{"weight":"5"}`, "application/json", 400},
		{"too big", `{"weight":` + strings.Repeat(" ", maxBodyBytes) + `5}`, "application/json", 413},
		{"wrong content type", `{"weight":5}`, "text/plain", 415},
		{"content type with a json prefix", `{"weight":5}`, "application/jsonx", 415},
		{"content type with charset", `{"weight":5}`, "application/json; charset=utf-8", 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code := serveDecode(tc.body, tc.ctype, &body{})
			if code != tc.wantCode {
				t.Fatalf("code = %d, want %d", code, tc.wantCode)
			}
		})
	}
}

// serveDecode runs decodeJSON as the socket handler does, body cap included.
func serveDecode(body, ctype string, v any) int {
	req, _ := http.NewRequest(http.MethodPut, "/", strings.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	w := &codeRecorder{header: http.Header{}}
	req.Body = http.MaxBytesReader(w, req.Body, maxBodyBytes)
	if decodeJSON(w, req, v) {
		w.code = 200
	}
	return w.code
}

type codeRecorder struct {
	header http.Header
	code   int
}

func (c *codeRecorder) Header() http.Header         { return c.header }
func (c *codeRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (c *codeRecorder) WriteHeader(code int)        { c.code = code }

func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{"weight":5}`, `{"weight":-1}`, `{"x":1}`, `[]`, `null`, `{"weight":1e400}`, "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var v struct {
			Weight int               `json:"weight"`
			Value  string            `json:"value"`
			Meta   map[string]string `json:"metadata"`
		}
		code := serveDecode(body, "application/json", &v)
		if code != 200 && (code < 400 || code > 499) {
			t.Fatalf("body %q: code %d, want 200 or 4xx", body, code)
		}
	})
}

// The peer uid check: as root, connect as uid 65534 from a child process.
func TestUIDRefused(t *testing.T) {
	if os.Getenv("SIDECAR_TEST_CLIENT_SOCKET") != "" {
		return // we are the child, see TestHelperUIDClient
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to connect as another uid")
	}
	cfg := embeddedConfig(t)
	cfg.API.SocketMode = "0666"
	cfg.API.AllowedUIDs = []int{4242}
	os.Chmod(filepath.Dir(cfg.API.Socket), 0o755)
	startDaemon(t, cfg)
	// The go test binary lives in a 0700 directory: copy it where uid 65534 can run it.
	bin := filepath.Join(filepath.Dir(cfg.API.Socket), "client.test")
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		uid      uint32
		wantCode string
	}{{65534, "403"}, {4242, "200"}} {
		cmd := exec.Command(bin, "-test.run=^TestHelperUIDClient$")
		cmd.Env = append(os.Environ(), "SIDECAR_TEST_CLIENT_SOCKET="+cfg.API.Socket)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: tc.uid, Gid: tc.uid}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("uid %d client: %v\n%s", tc.uid, err, out)
		}
		if !strings.Contains(string(out), "code="+tc.wantCode) {
			t.Fatalf("uid %d: %s, want code=%s", tc.uid, out, tc.wantCode)
		}
	}
}

func TestHelperUIDClient(t *testing.T) {
	socket := os.Getenv("SIDECAR_TEST_CLIENT_SOCKET")
	if socket == "" {
		t.Skip("helper process for TestUIDRefused")
	}
	c := client.New(socket)
	defer c.Close()
	resp, err := c.Do(context.Background(), http.MethodGet, "/v1/status", nil, 403)
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	defer resp.Body.Close()
	var e api.Error
	json.NewDecoder(resp.Body).Decode(&e)
	fmt.Printf("code=%d %s\n", resp.StatusCode, e.Error)
}
