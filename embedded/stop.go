package embedded

import (
	"time"
)

// handOver gives up leadership before the member stops, for at most two
// election timeouts. etcd's own attempt in Close waits up to its request
// timeout (5s plus two election timeouts) for a transferee that may be
// stopping too, or unreachable, although raft abandons a transfer after one
// election timeout. When the bound passes, the server is stopped without
// coordination, which ends the attempt; a member that is not the leader
// returns at once.
func (m *Member) handOver() {
	s := m.etcd.Server
	if s.Leader() != s.MemberID() {
		return
	}
	done := make(chan error, 1)
	go func() { done <- s.TryTransferLeadershipOnShutdown() }()
	bound := 2 * m.cfg.ElectionTimeout
	select {
	case err := <-done:
		if err != nil {
			m.log.Debug("leadership not handed over before stopping", "name", m.cfg.Name, "err", err)
		}
	case <-time.After(bound):
		m.log.Info("leadership not handed over in time; stopping without it", "name", m.cfg.Name,
			"wait_s", bound.Seconds())
		s.HardStop()
		<-done
	}
}
