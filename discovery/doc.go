// Package discovery answers local callers' questions about registered
// services from a cache fed by etcd watches: which services exist, which
// instances a service has (with weights, node and metadata), a stream of
// changes, and a smooth weighted round-robin pick.
//
// Instances live at <Prefix>/<service>/<id>, their values in the format of
// etcd's client/v3/naming/endpoints (the record the registry writes, and
// the one etcd's gRPC naming resolver reads):
//
//	{"Op":0,"Addr":"10.0.0.5:8080","Metadata":{"id":"...","weight":100,"node":"web-1","metadata":{...}}}
//
// The id of an instance is always the last element of its key. An instance
// written by another tool without a weight counts as weight 100; a value
// whose Metadata is not an object has no node and no metadata. Values that
// do not parse, and keys whose id is not a valid name, are skipped (counted
// by Cache.Skipped, logged at debug).
//
// A service is watched from its first Get, Subscribe or Pick until nobody
// has asked about it for Config.IdleTimeout: the cache reads the service's
// prefix at one revision R (paginated, at that fixed revision), then
// watches from R+1 with clientv3.WithRequireLeader. A compacted watch is
// never resumed at the same revision: the service is listed again at a new
// revision and the list replaces (diffs against) the cache, so deletes made
// meanwhile are not missed. Any other watch failure is retried for ever
// with capped, jittered backoff.
//
// While etcd is unreachable the cache keeps answering, with Stale set. A
// snapshot is stale when its service's watch is broken or when the
// client's gRPC connection is not READY; the connection state is followed
// event-driven (a watch on a client that reaches no member at all just
// hangs), and the cache sends nothing to etcd on its own while idle: no
// polling, only the watch streams. How soon a silently dead connection is
// noticed depends on the client's DialKeepAliveTime/DialKeepAliveTimeout.
//
// Snapshots share their Instances slice and Metadata maps with the cache
// and with each other: callers must treat them as read-only.
//
// The package does not write to etcd, register anything or build a
// client; it takes a *clientv3.Client and never closes it.
package discovery
