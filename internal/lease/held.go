package lease

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// abandonTimeout bounds the revoke of the session of a failed acquire or
// campaign, whose own context may have ended.
const abandonTimeout = time.Second

// Held is a key held on a session of its own: what a lock's hold and a
// leadership have in common. Build it with Session.Hold.
type Held struct {
	sess  *Session
	claim *Claim
	key   string
	fence int64
}

// Hold records that key, created at revision fence, is held on s as of
// revision rev, and follows it (see Claim).
func (s *Session) Hold(key string, fence, rev int64) *Held {
	return &Held{sess: s, claim: s.Claim(key, fence, rev), key: key, fence: fence}
}

// Key is the held key: the prefix, "/", and the lease ID in hex.
func (h *Held) Key() string { return h.key }

// Fence is the key's creation revision, strictly greater than that of
// every earlier holder under the same prefix.
func (h *Held) Fence() int64 { return h.fence }

// Lease is the ID of the session's lease.
func (h *Held) Lease() clientv3.LeaseID { return h.sess.ID() }

// Deadline is when the session counts as lost unless a newer keep-alive
// is acknowledged (see Session.Deadline).
func (h *Held) Deadline() time.Time { return h.sess.Deadline() }

// Lost is closed when the hold is lost: its session is lost (see
// Session.Lost), or its key was deleted by someone; and once ended. It
// checks the session's deadline before it returns.
func (h *Held) Lost() <-chan struct{} { return h.claim.Lost() }

// Err says why the hold was lost (ErrUnacknowledged, ErrExpired,
// ErrKeyDeleted, ErrClosed once ended); nil while it is held.
func (h *Held) Err() error { return h.claim.Err() }

// End gives the hold up: it revokes the session's lease, which deletes the
// key in the same revision, and ends the session. The key is gone when it
// returns nil. It can be called again, also after it failed.
func (h *Held) End(ctx context.Context) error {
	h.claim.Stop()
	return h.sess.Close(ctx)
}

// Abandon closes the session of a failed acquire or campaign (what), on a
// context of its own: ctx may have ended. If the revoke fails, the key
// goes when the lease expires, and log says so.
func Abandon(ctx context.Context, s *Session, log *slog.Logger, what string) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abandonTimeout)
	defer cancel()
	if err := s.Close(cctx); err != nil {
		log.Warn("cannot revoke the session of a failed "+what+"; its key goes when the lease expires",
			"lease_id", fmt.Sprintf("%x", int64(s.ID())), "ttl_s", s.TTL().Seconds(), "err", err)
	}
}
