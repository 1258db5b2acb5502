package api

import (
	"os"
	"path/filepath"
	"strconv"
)

// DefaultSocketPath is the unix socket of the local API when none is
// configured: the daemon listens there when api.socket is empty, and the
// CLI and the Go client dial it when neither --socket nor SIDECAR_SOCKET is
// set. For root it is /run/sidecar/sidecar.sock; for other users
// $XDG_RUNTIME_DIR/sidecar/sidecar.sock when XDG_RUNTIME_DIR is an absolute
// path, else /tmp/sidecar-<uid>/sidecar.sock (under os.TempDir).
//
// It is the one definition of the default; it lives in this dependency-free
// package so that clients find the daemon without importing it.
func DefaultSocketPath() string {
	if os.Geteuid() == 0 {
		return "/run/sidecar/sidecar.sock"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "sidecar", "sidecar.sock")
	}
	return filepath.Join(os.TempDir(), "sidecar-"+strconv.Itoa(os.Geteuid()), "sidecar.sock")
}
