// Package lock is the sidecar's distributed lock: a concurrency.Mutex at a
// key prefix, such as <namespace>/locks/<name>, so that a holder through
// the sidecar and one through `etcdctl lock <prefix>` exclude each other.
//
// Each Hold has a session of its own (internal/lease): a lease whose
// validity is known from the send time of acknowledged keep-alives, so
// that the hold counts as lost before etcd could expire the lease and grant
// the lock to someone else, not after. A Hold is lost (Lost closes, Err
// says why) when its session is, or when someone deletes its key, which a
// watch on the key reports. Fence is the key's creation revision, which only grows from one
// holder to the next: hand it to the resource the lock protects, so that a
// holder that was paused or cut off past its loss is refused there.
//
// A waiter whose own session is lost stops waiting (concurrency.Mutex alone
// waits on until the holder goes, etcd-io/etcd#19597), and a failed
// Acquire closes its session, which removes its key from the queue.
//
// The package is not a lock manager: it keeps no table of holds, retries
// nothing, and never renews a lost hold. One Acquire is one hold, given
// back with Release.
package lock
