// Package embedded runs an etcd member inside the sidecar process, on top of
// etcd's own go.etcd.io/etcd/server/v3/embed package.
//
// The member is one of: a single-node cluster (the zero-config default), a
// member of a static cluster (InitialCluster), a member of a cluster
// bootstrapped from DNS SRV records (DiscoverySRV), or a new member added to a
// running cluster (Join). New checks the configuration; Run starts the member,
// fails fast when its data dir or ports are taken, closes Ready once the
// member serves clients, and stops it when its context ends.
//
// Joining adds the node as a learner and promotes it to a voting member once it
// has caught up with the leader, so that a join that never completes does not
// change the quorum of the running cluster. A restart on an existing data dir
// never adds a member again.
//
// Client and peer URLs serve TLS when ClientTLS or PeerTLS names a
// certificate and key (etcd's --cert-file, --peer-cert-file, ...); the
// clients the package builds to join and promote use the client side's files,
// and a start-up that fails names the last TLS failure etcd logged.
//
// The package is not an etcd client library and not a cluster manager: it does
// not remove members, take snapshots, defragment or disarm alarms, and it
// builds an etcd client only to add or promote its own member. It does not read
// flags, environment or files other than its data dir; the caller maps its
// configuration (and etcd's ETCD_* variables) onto Config.
package embedded
