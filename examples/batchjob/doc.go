// Batchjob is an example job that must run on one node at a time: run it
// under `sidecar lock NAME -- …` or `sidecar elect NAME -- …`, on every
// node, and the sidecars make the nodes take turns.
//
// Mutual exclusion alone is not enough: a holder can lose its lock and not
// know it yet (its sidecar was paused, its node cut off from etcd) while
// another node already holds the lock. So the job passes its fence, the
// token the wrapper puts in its environment (SIDECAR_LOCK_FENCE, or
// SIDECAR_ELECTION_FENCE under `sidecar elect`), to the resource it writes,
// and the resource refuses a write whose fence is lower than one it has
// accepted. Fences are etcd creation revisions: a later holder always has a
// higher one.
//
// The resource here is a ledger: an append-only text file (-ledger), one
// line per entry, each carrying the fence of its writer. Appends on one
// machine are serialized with flock(2) on the file; each append reads the
// highest fence in the ledger and refuses a lower one. The job appends
// -entries entries, -pause apart, so that a stale holder's late write is
// refused for all to see. It exits 0 when every entry was accepted, 3 when
// the ledger refused one (a newer holder has written), 2 when it was not
// run under a wrapper, 1 otherwise (including when it was stopped by
// SIGTERM or SIGINT between entries).
//
// Every writer of one ledger must hold the same lock or election. It is an
// example, not a library: the ledger lives on one machine's file system.
package main
