package embedded

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the package when goroutines outlive its tests. It waits up
// to 10s rather than goleak.VerifyTestMain's ~2s: when a member joins, etcd
// fetches the cluster over HTTP keep-alive connections it never closes; they
// end when the peer listener's 5s read timeout closes them.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(10 * time.Second)
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
