package client_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/client"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// daemon serves h on a unix socket, a stand-in for the daemon's local API,
// and returns a client of it.
func daemon(t *testing.T, h http.HandlerFunc) *client.Client {
	t.Helper()
	dir, err := os.MkdirTemp("", "sc") // short: sun_path is 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ln, err := net.Listen("unix", filepath.Join(dir, "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	c := client.New(ln.Addr().String())
	t.Cleanup(func() { c.Close(); srv.Close() })
	return c
}

// sendOne writes the first line of a service stream and flushes it.
func sendOne(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	io.WriteString(w, `{"service":"orders","revision":7,"instances":[]}`+"\n")
	http.NewResponseController(w).Flush()
}

// cut drops the connection as a killed daemon does: no end of the chunked
// body, just a closed socket.
func cut(t *testing.T, w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.Error(err)
		return
	}
	conn.Close()
}

// A stream that the daemon ends, cleanly or not, ends with ErrDaemonGone
// naming the socket, never with io.EOF.
func TestStreamDaemonGone(t *testing.T) {
	tests := []struct {
		name string
		end  func(*testing.T, http.ResponseWriter)
		how  string
	}{
		{"connection cut", cut, "connection lost"},
		{"stream ended", func(*testing.T, http.ResponseWriter) {}, "ended the stream"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := daemon(t, func(w http.ResponseWriter, r *http.Request) {
				sendOne(w)
				tc.end(t, w)
			})
			st, err := c.WatchService(t.Context(), "orders")
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if s, err := st.Next(); err != nil || s.Revision != 7 {
				t.Fatalf("first value = %+v, %v", s, err)
			}
			_, err = st.Next()
			if !errors.Is(err, client.ErrDaemonGone) || errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want ErrDaemonGone only", err)
			}
			if msg := err.Error(); !strings.Contains(msg, c.Socket()) || !strings.Contains(msg, tc.how) || strings.Contains(msg, "\n") {
				t.Fatalf("message %q: want one line naming %s and %q", msg, c.Socket(), tc.how)
			}
		})
	}
}

// Cancelling the caller's context is not a failure: Next returns the
// context's error, not ErrDaemonGone. Close from another goroutine likewise.
func TestStreamEndedByCaller(t *testing.T) {
	block := func(w http.ResponseWriter, r *http.Request) {
		sendOne(w)
		<-r.Context().Done()
	}
	tests := []struct {
		name string
		stop func(cancel context.CancelFunc, st *client.Stream[api.Service])
		want error
	}{
		{"context cancelled", func(cancel context.CancelFunc, _ *client.Stream[api.Service]) { cancel() }, context.Canceled},
		{"stream closed", func(_ context.CancelFunc, st *client.Stream[api.Service]) { st.Close() }, net.ErrClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := daemon(t, block)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			st, err := c.WatchService(ctx, "orders")
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if _, err := st.Next(); err != nil {
				t.Fatal(err)
			}
			time.AfterFunc(50*time.Millisecond, func() { tc.stop(cancel, st) })
			_, err = st.Next()
			if !errors.Is(err, tc.want) || errors.Is(err, client.ErrDaemonGone) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// A daemon that drops the connection before answering: ErrDaemonGone; a
// caller whose context is already cancelled: context.Canceled; no daemon:
// *NotRunningError.
func TestRequestErrors(t *testing.T) {
	c := daemon(t, func(w http.ResponseWriter, r *http.Request) { cut(t, w) })
	if _, err := c.Status(t.Context()); !errors.Is(err, client.ErrDaemonGone) {
		t.Fatalf("dropped request: err = %v, want ErrDaemonGone", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c.Status(ctx); !errors.Is(err, context.Canceled) || errors.Is(err, client.ErrDaemonGone) {
		t.Fatalf("cancelled request: err = %v, want context.Canceled", err)
	}
	none := client.New(filepath.Join(t.TempDir(), "none.sock"))
	var nr *client.NotRunningError
	if _, err := none.Status(t.Context()); !errors.As(err, &nr) || !strings.Contains(err.Error(), "sidecar run") {
		t.Fatalf("no daemon: err = %v, want *NotRunningError", err)
	}
}

// DefaultSocket: SIDECAR_SOCKET, else the daemon's default, which follows
// XDG_RUNTIME_DIR for users other than root.
func TestDefaultSocket(t *testing.T) {
	t.Setenv(client.SocketEnv, "/x/s.sock")
	if got := client.DefaultSocket(); got != "/x/s.sock" {
		t.Fatalf("with %s set: %q", client.SocketEnv, got)
	}
	if got := client.NewDefault().Socket(); got != "/x/s.sock" {
		t.Fatalf("NewDefault().Socket() = %q", got)
	}
	t.Setenv(client.SocketEnv, "")
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/1000")
	want := "/run/user/1000/sidecar/sidecar.sock"
	if os.Geteuid() == 0 {
		want = "/run/sidecar/sidecar.sock"
	}
	if got := client.DefaultSocket(); got != want || got != api.DefaultSocketPath() {
		t.Fatalf("DefaultSocket() = %q, want %q", got, want)
	}
}

// The client is for applications beside the sidecar: it must not pull in the
// daemon, etcd's server, or anything but the standard library and package api.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		switch p {
		case "github.com/sidecar-dev/sidecar/client", "github.com/sidecar-dev/sidecar/api":
		default:
			t.Errorf("client depends on %s (want only the standard library and package api)", p)
		}
	}
}
