// Package registry registers the host service in etcd and keeps it
// registered through every outage.
//
// A Registrar writes one record, at Prefix/<Service>/<ID>, in the format of
// etcd's client/v3/naming/endpoints (so gRPC clients using etcd's naming
// resolver find it):
//
//	{"Op":0,"Addr":"10.0.0.5:8080","Metadata":{"id":"orders-web-1-8080","weight":100,"node":"web-1","metadata":{"zone":"a"}}}
//
// The record is attached to a lease of the configured TTL that the
// registrar keeps alive with one clientv3 KeepAlive stream, whose responses
// it always drains. Whatever happens to the lease or the key, the registrar
// puts it back, retrying for ever with capped, jittered backoff:
//
//   - the key deleted by someone else while the lease lives: seen through a
//     watch on the key, put again with the same lease;
//   - the lease revoked, expired (etcd unreachable longer than the TTL) or
//     its keep-alive stream ended: a new lease is granted and the key put
//     again; the old lease is revoked first if etcd still knows it, so a
//     registrar never holds two leases;
//   - a health check (HTTP, TCP or a command) that turns critical: the key is
//     deleted but the lease kept alive; the next passing check puts it back.
//
// Status reports the registration lost from the send time of the last
// acknowledged keep-alive plus the TTL, on the monotonic clock, even before
// the keep-alive stream notices; the lease is given up (and a new one
// granted) when the stream ends or etcd no longer knows the lease, so a
// lease that answers again after a slow spell is kept. When Run's context
// ends, the registrar drains
// (weight 0 for DrainTimeout, if set) and revokes the lease, so the key is
// gone at once.
//
// While nothing changes, the registrar's only requests to etcd are the
// keep-alives on their stream, and its watch stream stays idle: it never
// polls.
//
// The package does not build etcd clients, read configuration files or
// discover other services; see the discovery package for the reading side.
package registry
