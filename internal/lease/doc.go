// Package lease is the session under every lock and leadership the sidecar
// holds: an etcd lease whose validity is known, on this process's
// monotonic clock, from the send time of acknowledged keep-alives.
//
// clientv3's KeepAlive tells that an answer came, not when the request it
// answers was sent, so a holder cannot know from it how long etcd will keep
// the lease. A Session sends its keep-alive requests itself, every TTL/3 on
// a gRPC stream of its own that requires a leader (a member cut off from
// its cluster answers none), and records the send time of each. etcd
// answers a stream's requests in order, and renews the lease at some moment
// after the request was sent, so when the answer to a request sent at t
// grants TTL seconds, the lease lives at least until t + TTL on etcd's
// side, however late the answer arrives. The session counts it valid until
// t + TTL - Margin (the Deadline), the margin covering the drift between
// clocks and the scheduling of whoever acts on the hold. A timer closes
// Lost at the deadline when no newer answer came; Lost and Err also compare
// the clock with the deadline themselves, so a process that was paused past
// it (SIGSTOP, a long GC pause) sees the loss on its first look after it
// resumes, even before the timer's goroutine has run. Lost also closes when
// etcd answers that it no longer has the lease (revoked, or expired) and on
// Close, which revokes the lease. A lost session sends no more keep-alives:
// the lease ends in etcd within the TTL even if nobody closes it.
//
// Concurrency returns a concurrency.Session on the same lease, for
// concurrency.Mutex and Election. Building it starts clientv3's own
// KeepAlive on the lease; the package accepts that rather than imitate
// concurrency.Session: extra renewals only make the lease live longer in
// etcd than the Deadline says, never shorter, so the Deadline stays a safe
// lower bound. That keep-alive ends when the Session is lost or closed, and
// the concurrency.Session's Done closes then (or earlier, when clientv3
// gives up on its own); Lost is the signal to follow.
//
// A Claim follows a key that a session owns (a lock's or a leader's): it
// is lost when the session is, or when the key is deleted or replaced by
// someone else, which a watch on the key reports. Await runs a wait such
// as concurrency.Mutex.Lock so that it also ends when the session is lost
// (a waiter whose lease expired otherwise waits on, etcd-io/etcd#19597).
//
// Limits: the monotonic clock (CLOCK_MONOTONIC) does not advance while the
// whole machine is suspended, while etcd's clocks do; a suspended host is
// not covered. Whoever acts on a hold should still hand its fence to the
// resource it changes.
package lease
