package discovery

import (
	"context"
	"sync"
	"time"
)

// Snapshot is a service's instances as of an etcd revision. Instances is
// shared with the cache and other callers: treat it as read-only.
type Snapshot struct {
	Service   string     `json:"service"`
	Revision  int64      `json:"revision"`  // the etcd revision the cache reflects
	Stale     bool       `json:"stale"`     // etcd unreachable or the watch broken: answered from the cache
	Instances []Instance `json:"instances"` // sorted by ID
}

// service is the cache of one service: its instances, the state of its
// watch, its subscribers and its round-robin state.
type service struct {
	name   string
	prefix string        // <Prefix>/<name>/
	listed chan struct{} // closed by the first successful list

	// Guarded by Cache.mu.
	refs     int // callers inside Get or Pick, plus live subscriptions
	lastUsed time.Time
	cancel   context.CancelFunc // stops the watch; nil until it starts

	mu        sync.Mutex
	insts     []Instance // sorted by ID; replaced on change, never modified
	rev       int64
	gen       uint64 // incremented whenever insts is replaced
	isListed  bool
	watchOK   bool
	lastErr   error // of the last failed list or watch
	sentStale bool  // Stale of the last snapshot sent to subscribers
	subs      map[*subscriber]struct{}
	closed    bool // the cache stopped: no more subscribers
	rr        swrr
}

func newService(root, name string) *service {
	return &service{
		name:     name,
		prefix:   root + name + "/",
		listed:   make(chan struct{}),
		lastUsed: time.Now(),
		subs:     make(map[*subscriber]struct{}),
	}
}

// subscriber is one Subscribe channel, with room for one snapshot.
type subscriber struct {
	ch     chan Snapshot
	closed bool
}

// offer replaces whatever snapshot sub holds with snap. The caller holds
// the service's lock, so it is the only sender and never blocks.
func (sub *subscriber) offer(snap Snapshot) {
	select {
	case sub.ch <- snap:
		return
	default:
	}
	select {
	case <-sub.ch: // the reader is slow: it gets the latest instead
	default:
	}
	select {
	case sub.ch <- snap:
	default: // unreachable: the buffer has room and nobody else sends
	}
}

// snapshotLocked builds the current snapshot; s.mu is held.
func (s *service) snapshotLocked(etcdUp bool) Snapshot {
	return Snapshot{Service: s.name, Revision: s.rev, Stale: !etcdUp || !s.watchOK, Instances: s.insts}
}

// publishLocked sends the current snapshot to every subscriber; s.mu is held.
func (s *service) publishLocked(etcdUp bool) {
	snap := s.snapshotLocked(etcdUp)
	s.sentStale = snap.Stale
	for sub := range s.subs {
		sub.offer(snap)
	}
}

// current returns the current snapshot.
func (s *service) current(etcdUp bool) Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshotLocked(etcdUp)
}

// setList replaces the instances with a full list read at rev and reports
// the difference. Subscribers get a snapshot if anything changed.
func (s *service) setList(insts []Instance, rev int64, etcdUp bool) (added, removed, changed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	added, removed, changed = diff(s.insts, insts)
	first := !s.isListed
	s.insts, s.rev, s.watchOK, s.lastErr = insts, rev, true, nil
	s.gen++
	if first {
		s.isListed = true
		close(s.listed)
	}
	if first || added+removed+changed > 0 || s.sentStale != !etcdUp {
		s.publishLocked(etcdUp)
	}
	return added, removed, changed
}

// applyEvents applies one watch response's changes (nil: delete) as of
// rev and sends one snapshot to subscribers.
func (s *service) applyEvents(upd map[string]*Instance, rev int64, etcdUp bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(upd) > 0 {
		s.insts = applyChanges(s.insts, upd)
		s.gen++
	}
	s.rev = max(s.rev, rev)
	s.watchOK = true
	s.publishLocked(etcdUp)
}

// setWatch records the state of the watch; a failure carries its error.
// It reports whether the watch was fine before.
func (s *service) setWatch(ok bool, err error, etcdUp bool) (wasOK bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	wasOK = s.watchOK
	s.watchOK = ok
	if err != nil {
		s.lastErr = err
	}
	s.refreshLocked(etcdUp)
	return wasOK
}

// refresh sends a snapshot to subscribers if its Stale changed.
func (s *service) refresh(etcdUp bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refreshLocked(etcdUp)
}

func (s *service) refreshLocked(etcdUp bool) {
	if s.isListed && s.sentStale != (!etcdUp || !s.watchOK) {
		s.publishLocked(etcdUp)
	}
}

// lastError returns the error of the last failed list or watch, if any.
func (s *service) lastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// addSub registers sub and, if the service was listed, gives it the current
// snapshot. After the cache stopped, sub is closed at once.
func (s *service) addSub(sub *subscriber, etcdUp bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		sub.closed = true
		close(sub.ch)
		return
	}
	s.subs[sub] = struct{}{}
	if s.isListed {
		sub.offer(s.snapshotLocked(etcdUp))
	}
}

// removeSub unregisters sub and closes its channel, unless already done.
func (s *service) removeSub(sub *subscriber) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !sub.closed {
		sub.closed = true
		delete(s.subs, sub)
		close(sub.ch)
	}
}

// close closes every subscriber's channel and refuses new ones.
func (s *service) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for sub := range s.subs {
		sub.closed = true
		close(sub.ch)
	}
	clear(s.subs)
}
