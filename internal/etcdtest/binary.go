package etcdtest

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
)

// sidecarPkg is the import path of the sidecar command.
const sidecarPkg = "github.com/sidecar-dev/sidecar/cmd/sidecar"

// BuildSidecar builds the sidecar command into dir, with extra packages
// built beside it (their binaries named after their last path element),
// and returns the sidecar binary's path. It fails t when the build fails.
func BuildSidecar(t testing.TB, dir string, extra ...string) string {
	t.Helper()
	if err := buildSidecar(dir, extra...); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "sidecar")
}

// buildSidecar is BuildSidecar returning its error, for callers that build
// once per test process.
func buildSidecar(dir string, extra ...string) error {
	args := append([]string{"build", "-o", dir + string(filepath.Separator), sidecarPkg}, extra...)
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	return nil
}

// BuildSidecarOnce is buildSidecar for callers that cache the result once
// per test process (sync.Once): it returns the binary's path or the
// build's error.
func BuildSidecarOnce(dir string) (string, error) {
	return filepath.Join(dir, "sidecar"), buildSidecar(dir)
}
