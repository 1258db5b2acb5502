package sidecar

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

func shortDir(t *testing.T) string { return etcdtest.SocketDir(t) }

func TestSocketBornWithFinalMode(t *testing.T) {
	for _, mode := range []os.FileMode{0o600, 0o660, 0o666} {
		t.Run(mode.String(), func(t *testing.T) {
			path := filepath.Join(shortDir(t), "sub", "s.sock")
			ln, err := listenSocket(path, mode)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != mode {
				t.Fatalf("socket mode = %v, want socket %v", fi.Mode(), mode)
			}
			di, _ := os.Stat(filepath.Dir(path))
			wantDir := os.FileMode(0o700)
			if mode&0o077 != 0 {
				wantDir = 0o711
			}
			if di.Mode().Perm() != wantDir {
				t.Fatalf("created parent dir mode = %v, want %v", di.Mode().Perm(), wantDir)
			}
		})
	}
}

func TestStaleSocketRemoved(t *testing.T) {
	path := filepath.Join(shortDir(t), "s.sock")
	// A socket file nobody listens on, as a killed daemon leaves behind.
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}
	ln, err := listenSocket(path, 0o600)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	defer ln.Close()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("new socket does not answer: %v", err)
	}
	c.Close()
}

func TestSecondListenerRefused(t *testing.T) {
	path := filepath.Join(shortDir(t), "s.sock")
	ln, err := listenSocket(path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = listenSocket(path, 0o600)
	if !errors.Is(err, ErrDaemonRunning) || !strings.Contains(err.Error(), path) {
		t.Fatalf("second listener: err = %v, want ErrDaemonRunning naming %s", err, path)
	}
	// The first is untouched.
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("first socket lost: %v", err)
	}
	c.Close()
}

func TestNonSocketNeverRemoved(t *testing.T) {
	path := filepath.Join(shortDir(t), "s.sock")
	if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := listenSocket(path, 0o600)
	if err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("err = %v, want refusal", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Fatal("regular file was replaced")
	}
}

// A foreign process answering on the path (not holding our lock) is not
// displaced either.
func TestLiveForeignSocketRefused(t *testing.T) {
	path := filepath.Join(shortDir(t), "s.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if _, err := listenSocket(path, 0o600); !errors.Is(err, ErrDaemonRunning) {
		t.Fatalf("err = %v, want ErrDaemonRunning", err)
	}
}

func TestPeerCredentials(t *testing.T) {
	path := filepath.Join(shortDir(t), "s.sock")
	ln, err := listenSocket(path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cl := newCredListener(ln, 2)
	done := make(chan peerCred, 1)
	go func() {
		c, err := cl.Accept()
		if err != nil {
			return
		}
		done <- c.(*credConn).cred
		c.Close()
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := <-done
	if got.PID != os.Getpid() || got.UID != os.Getuid() {
		t.Fatalf("peer cred = %+v, want pid %d uid %d", got, os.Getpid(), os.Getuid())
	}
}
