// Package sidecar wires the daemon together: it validates the configuration,
// starts the embedded etcd member or connects to an existing cluster, and
// serves the local API (HTTP/1.1 + JSON) on a unix socket.
//
// It does not read flags, files or the environment: cmd/sidecar does that
// with viper and hands over a Config. The domain packages (embedded,
// registry, configsync, lock, election) know nothing of this package.
package sidecar
