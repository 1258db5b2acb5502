// Package deploy holds the deployment kits of the sidecar, which are files,
// not Go code: a systemd unit with its environment files (systemd/), a
// Dockerfile for a static non-root image (docker/), a Kubernetes Pod with
// the app and its sidecar (kubernetes/), a Prometheus scrape config and
// alert rules (prometheus/), and local-cluster.sh, a three-node cluster of
// sidecars on loopback.
//
// Its tests check each kit against the real binary: they parse the unit and
// run the daemon the way its ExecStart and EnvironmentFile lines do, with a
// NOTIFY_SOCKET of their own; parse the Dockerfile and build the binary the
// way it does; decode the manifest and run its sidecar configuration against
// a real etcd; run local-cluster.sh --short; and scrape a daemon's /metrics
// for every metric the alert rules and docs/metrics.md name.
package deploy
