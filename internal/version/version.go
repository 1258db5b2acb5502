// Package version reports the versions built into the sidecar binary.
package version

import (
	"runtime"
	"runtime/debug"

	etcdversion "go.etcd.io/etcd/api/v3/version"
)

// Version is the sidecar's version; release builds set it with
// -ldflags "-X github.com/sidecar-dev/sidecar/internal/version.Version=v1.2.3".
var Version = ""

// Sidecar returns the sidecar version: the -X value, else the module
// version or VCS revision recorded by the Go toolchain, else "dev".
func Sidecar() string {
	if Version != "" {
		return Version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "dev-" + s.Value[:12]
		}
	}
	return "dev"
}

// Etcd returns the version of the etcd libraries compiled in.
func Etcd() string { return etcdversion.Version }

// Go returns the Go toolchain version.
func Go() string { return runtime.Version() }
