package etcdtest

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// RunWithLeakCheck runs a package's tests and fails it when goroutines
// outlive them. It waits up to wait rather than goleak.VerifyTestMain's
// ~2s: when a member joins, etcd fetches the cluster over HTTP keep-alive
// connections it never closes; they end when the peer listener's 5s read
// timeout closes them. Use it as the body of TestMain.
func RunWithLeakCheck(m *testing.M, wait time.Duration) {
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(wait)
		for {
			err := goleak.Find()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
				code = 1
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	os.Exit(code)
}

// SocketDir returns a new directory, removed at cleanup, whose paths are
// short enough for unix socket addresses (sun_path is 108 bytes; t.TempDir
// paths carry the test name and can be longer).
func SocketDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "sc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
