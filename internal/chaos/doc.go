// Package chaos is sidecar's end-to-end fault suite. Its tests drive the
// built sidecar binary against a three-member etcd cluster of real
// `go tool server` processes on loopback, with a TCP proxy on each client
// link (delay, drop, blackhole) and SIGKILL / SIGSTOP of real processes.
// Each scenario states its pass criteria and logs its figures as lines
//
//	FIGURE scenario=NAME key=value ...
//
// that docs/reliability.md quotes. CI runs the short form (a few trials
// per scenario); SIDECAR_CHAOS=full runs the full form:
//
//	SIDECAR_CHAOS=full go test -race -count=1 -timeout 60m -v ./internal/chaos
//
// The package has no code outside its tests.
package chaos
