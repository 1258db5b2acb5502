// Package registry registers the host service in etcd and keeps it
// registered through every outage.
//
// A Registrar writes one record, at Prefix/<Service>/<ID>, in the format of
// etcd's client/v3/naming/endpoints (so gRPC clients using etcd's naming
// resolver find it):
//
//	{"Op":0,"Addr":"10.0.0.5:8080","Metadata":{"id":"orders-web-1-8080","weight":100,"node":"web-1","metadata":{"zone":"a"}}}
//
// The internal/record package owns that format.
//
// The record is attached to a lease of the configured TTL that the
// registrar keeps alive with one clientv3 KeepAlive stream, whose responses
// it always drains. Every write is one transaction that puts the record
// only if the key is absent or already on the registrar's lease, and every
// delete one that deletes it only if it is on that lease: a registrar never
// overwrites or removes another holder's record. One that finds such a
// record (another registrar configured with the same instance id, or a
// record written by another tool) reports StateConflict, naming the
// holder's node and lease in Status.LastError, keeps its own lease alive,
// and takes the key as soon as its watch on the key sees it go (deleted,
// or its lease revoked or expired), with a retry every few seconds as a
// safety net. Refused writes create no revisions. A registrar restarted
// right after its previous process was killed (SIGKILL) meets that
// process's record, and reports a conflict, until the old lease expires
// within the TTL.
//
// Whatever happens to the lease or its own record, the registrar puts it
// back, retrying for ever with capped, jittered backoff:
//
//   - the record deleted by someone else while the lease lives: seen
//     through a watch on the key, put again with the same lease;
//   - the lease revoked, expired (etcd unreachable longer than the TTL) or
//     its keep-alive stream ended: a new lease is granted and the key put
//     again; the old lease is revoked first if etcd still knows it, so a
//     registrar never holds two leases;
//   - a health check (HTTP, TCP or a command) that turns critical: the
//     record is deleted (if it is on the registrar's lease) but the lease
//     kept alive; the next passing check puts it back.
//
// Status reports the registration lost from the send time of the last
// acknowledged keep-alive plus the TTL, on the monotonic clock, even before
// the keep-alive stream notices; the lease is given up (and a new one
// granted) when the stream ends or etcd no longer knows the lease, so a
// lease that answers again after a slow spell is kept. When Run's context
// ends, the registrar drains (weight 0 for DrainTimeout, if set, and only
// if the record is its own) and revokes its lease, so its record is gone
// at once; it never touches another holder's record.
//
// Config.Validate reports the rules that New enforces, one *FieldError
// per problem, so that a program can check its configuration before it
// contacts etcd.
//
// While nothing changes and it holds its record, the registrar's only
// requests to etcd are the keep-alives on their stream, and its watch
// stream stays idle: it never polls.
//
// The package does not build etcd clients, read configuration files or
// discover other services; see the discovery package for the reading side.
package registry
