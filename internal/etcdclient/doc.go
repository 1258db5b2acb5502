// Package etcdclient builds the sidecar's etcd client and proves it works.
//
// New turns the etcd section of the configuration (endpoints or a DNS SRV
// domain, TLS files, user and password) into a *clientv3.Client tuned for a
// long-lived daemon: it never goes through HTTP(S)_PROXY, pings idle
// connections so dead ones are noticed, and reconnects within seconds
// rather than gRPC's default of up to two minutes. The same client serves
// embedded mode, where the endpoints are the local member's client URLs.
//
// Check makes a real, linearizable request. When it fails, each endpoint is
// probed layer by layer (DNS, TCP, TLS, HTTP/2, etcd) and the failure is
// reported as what it is, naming the endpoint: a *ConnError of kind
// refused, TLS, auth, timeout, DNS or unavailable. Permanent tells
// configuration errors, which the daemon should stop on, from transient
// ones, which it should retry.
//
// The package does not retry, cache or watch anything, and does not read
// files other than the TLS files named in the Config.
package etcdclient
