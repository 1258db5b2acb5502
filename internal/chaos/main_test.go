package chaos

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain makes the directory of the built sidecar binary, removes it after
// the tests, and fails the package when goroutines outlive its tests (the
// etcd members are processes of their own, not goroutines of this one).
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sidecar-chaos-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		os.RemoveAll(dir)
		os.Exit(code)
	}))
}
