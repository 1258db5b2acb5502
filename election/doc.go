// Package election is the sidecar's leader election: a
// concurrency.Election at a key prefix, such as
// <namespace>/elections/<name>, so that candidates through the sidecar and
// through `etcdctl elect <prefix> <value>` compete in one election.
//
// The candidates' keys are <prefix>/<lease ID in hex>, holding their
// values; the leader is the candidate whose key is the oldest. Each
// Leadership has a session of its own (internal/lease), so that it counts
// as lost before etcd could expire its lease and elect another, not after;
// it is lost, too, when someone deletes its key. Fence is the leader
// key's creation revision, which only grows from one leader to the next.
// A candidate whose own session is lost while it waits stops waiting, and
// a failed Campaign closes its session, which withdraws its key.
//
// Current reads the leader once. Observe follows it: unlike
// Election.Observe, which waits on the leader's key alone and never says
// that it went, it watches the whole prefix (requiring a leader), so it
// reports "no leader" (nil) when the last candidate's key vanishes, and it
// lists the prefix again after a compaction or a failed watch.
package election
