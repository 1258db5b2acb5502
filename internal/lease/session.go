package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Bounds and defaults of Config.
const (
	DefaultTTL = 5 * time.Second // a zero Config.TTL
	MinTTL     = 2 * time.Second
	// MinMargin is the least default margin; the default is TTL/10.
	MinMargin = 300 * time.Millisecond
)

// revokeTimeout bounds the revoke of a lease granted by a New that fails.
const revokeTimeout = 2 * time.Second

// revokeAttempt bounds one attempt of a revoke. A member without a leader
// answers a require-leader request at once, but one whose proposal is
// dropped while a new leader is elected answers only at etcd's own request
// timeout (seconds); revoke tries again instead, so that the lease goes as
// soon as the cluster has a leader, not when it expires.
const revokeAttempt = 500 * time.Millisecond

// revokePause is the pause between attempts of a revoke.
const revokePause = 50 * time.Millisecond

// Why a session is lost, for errors.Is on Err.
var (
	// ErrUnacknowledged: the deadline passed with no newer keep-alive
	// acknowledged (etcd unreachable, slow, or without a leader).
	ErrUnacknowledged = errors.New("lease: no keep-alive acknowledged in time")
	// ErrExpired: etcd answered a keep-alive saying it no longer has the
	// lease (it expired, or someone revoked it).
	ErrExpired = errors.New("lease: lease expired (etcd no longer has it)")
	// ErrClosed: Close was called.
	ErrClosed = errors.New("lease: closed")
	// ErrKeyDeleted: a Claim's key was deleted, or replaced, by someone else.
	ErrKeyDeleted = errors.New("lease: the key was deleted by someone else")
)

// Config configures a Session.
type Config struct {
	// TTL of the lease: 0 means DefaultTTL; at least MinTTL. etcd grants
	// whole seconds, so it is rounded up to one.
	TTL time.Duration
	// Margin is taken off the TTL in the Deadline: 0 means TTL/10, at least
	// MinMargin; it must be less than half the TTL.
	Margin time.Duration
	Logger *slog.Logger // nil discards; records get component=lease
}

// withDefaults validates c and fills in its defaults.
func (c Config) withDefaults() (Config, error) {
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.TTL < MinTTL {
		return c, fmt.Errorf("lease: ttl %s: want at least %s", c.TTL, MinTTL)
	}
	c.TTL = (c.TTL + time.Second - 1).Truncate(time.Second)
	switch {
	case c.Margin < 0:
		return c, fmt.Errorf("lease: margin %s: want 0 (the default) or more", c.Margin)
	case c.Margin == 0:
		c.Margin = max(c.TTL/10, MinMargin)
	case c.Margin >= c.TTL/2:
		return c, fmt.Errorf("lease: margin %s: want less than half the ttl %s", c.Margin, c.TTL)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Session is a lease kept alive by this process, valid until its Deadline.
// Build it with New; end it with Close. Its methods are safe for concurrent
// use.
type Session struct {
	cli      *clientv3.Client
	id       clientv3.LeaseID
	ttl      time.Duration // as granted
	margin   time.Duration
	interval time.Duration // between keep-alive requests
	log      *slog.Logger
	conc     *concurrency.Session
	stop     context.CancelFunc // ends both keep-alives
	wg       sync.WaitGroup     // the keep-alive goroutines
	lost     chan struct{}

	mu       sync.Mutex
	deadline time.Time           // monotonic
	acked    time.Time           // send time of the newest acknowledged request, or of the grant
	timer    *time.Timer         // fires at deadline
	err      error               // why lost; nil while not
	claims   map[*Claim]struct{} // told of the loss; nil once lost

	closeMu sync.Mutex // serializes revokes
	revoked bool
}

// New grants a lease of cfg.TTL and starts keeping it alive; ctx bounds the
// grant only. The grant's own send time starts the Deadline. The session
// lives until it is lost or closed, whatever happens to ctx.
func New(ctx context.Context, cli *clientv3.Client, cfg Config) (*Session, error) {
	if cli == nil {
		return nil, errors.New("lease: nil etcd client")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	sent := time.Now()
	resp, err := cli.Grant(ctx, int64(cfg.TTL/time.Second))
	if err != nil {
		return nil, fmt.Errorf("lease: grant: %w", err)
	}
	ttl := time.Duration(resp.TTL) * time.Second
	life, stop := context.WithCancel(context.WithoutCancel(ctx))
	// The concurrency.Session is only a carrier of the lease for Mutex and
	// Election (they never look at its context). Given an ended context it
	// stops the keep-alive it would start, so ours is the only one: two
	// would double the traffic, and a crashed holder's lease would outlive
	// its last renewal by more (a slower failover).
	ended, endNow := context.WithCancel(context.Background())
	endNow()
	s := &Session{
		cli: cli, id: resp.ID, ttl: ttl, margin: cfg.Margin, interval: ttl / 3,
		log:  cfg.Logger.With("component", "lease", "lease_id", fmt.Sprintf("%x", int64(resp.ID))),
		stop: stop, lost: make(chan struct{}), claims: map[*Claim]struct{}{},
		deadline: sent.Add(ttl - cfg.Margin), acked: sent,
	}
	if !time.Now().Before(s.deadline) {
		err = fmt.Errorf("lease: grant answered %s after it was sent, past the ttl %s less the margin %s",
			time.Since(sent).Round(time.Millisecond), ttl, cfg.Margin)
		return nil, s.abandon(ctx, err)
	}
	s.conc, err = concurrency.NewSession(cli, concurrency.WithLease(resp.ID),
		concurrency.WithTTL(int(resp.TTL)), concurrency.WithContext(ended))
	if err != nil {
		return nil, s.abandon(ctx, fmt.Errorf("lease: session: %w", err))
	}
	s.mu.Lock()
	s.timer = time.AfterFunc(time.Until(s.deadline), s.expire)
	s.mu.Unlock()
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.keepAlive(life) }()
	s.log.Debug("lease granted", "ttl_s", resp.TTL, "margin_s", cfg.Margin.Seconds())
	return s, nil
}

// abandon revokes the lease of a session that New does not return, and
// returns err with the revoke's failure, if any.
func (s *Session) abandon(ctx context.Context, err error) error {
	s.stop()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), revokeTimeout)
	defer cancel()
	if rerr := s.revoke(rctx); rerr != nil {
		err = errors.Join(err, rerr)
	}
	return err
}

// revoke revokes the lease in attempts of revokeAttempt until one is
// answered or ctx ends; a lease etcd no longer has counts as revoked.
func (s *Session) revoke(ctx context.Context) error {
	for {
		actx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), revokeAttempt)
		_, err := s.cli.Revoke(actx, s.id)
		cancel()
		if err == nil || errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lease: revoke %x: %w", int64(s.id), err)
		case <-time.After(revokePause):
		}
	}
}

// ID is the lease's ID.
func (s *Session) ID() clientv3.LeaseID { return s.id }

// TTL is the lease's TTL as etcd granted it.
func (s *Session) TTL() time.Duration { return s.ttl }

// Margin is what the Deadline keeps off the TTL.
func (s *Session) Margin() time.Duration { return s.margin }

// Deadline is when the lease is surely still alive in etcd, and no later:
// the send time (monotonic) of the newest acknowledged keep-alive request,
// plus the TTL it was renewed for, less the Margin. It only moves forward.
func (s *Session) Deadline() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deadline
}

// Lost is closed when the session is lost: at the Deadline with no newer
// acknowledgement, when etcd answers that the lease is gone, or on Close.
// It checks the deadline against the clock before it returns, so a caller
// that looks right before it acts is never late, even after a pause.
func (s *Session) Lost() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checkLocked(time.Now())
	return s.lost
}

// Err says why the session was lost (see ErrUnacknowledged, ErrExpired,
// ErrClosed); nil while it is not.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checkLocked(time.Now())
	return s.err
}

// Concurrency is a concurrency.Session on the lease, for concurrency.Mutex
// and Election. Do not Close it: Close the Session.
func (s *Session) Concurrency() *concurrency.Session { return s.conc }

// Close stops the keep-alives, closes Lost (with ErrClosed if it was not
// lost before) and revokes the lease, so the keys on it are gone when it
// returns nil; a lease etcd no longer has counts as revoked. It can be
// called again, also after it failed (it then tries the revoke again).
func (s *Session) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.err == nil {
		s.loseLocked(ErrClosed)
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.conc.Orphan()
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.revoked {
		return nil
	}
	if err := s.revoke(ctx); err != nil {
		return err
	}
	s.revoked = true
	return nil
}

// expire runs at the deadline.
func (s *Session) expire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	s.checkLocked(now)
	if s.err == nil { // an acknowledgement moved the deadline meanwhile
		s.timer.Reset(s.deadline.Sub(now))
	}
}

// checkLocked counts the session as lost when now is at or past the
// deadline.
func (s *Session) checkLocked(now time.Time) {
	if s.err != nil || now.Before(s.deadline) {
		return
	}
	s.loseLocked(&unackedError{since: s.acked, after: now.Sub(s.acked), ttl: s.ttl, margin: s.margin})
}

// ack applies etcd's answer to a keep-alive request sent at sent: etcd
// renewed the lease for ttl seconds at some moment after sent (ttl <= 0:
// it has no such lease). An answer that comes after the deadline does not
// bring the session back. It reports whether the session still lives.
func (s *Session) ack(sent time.Time, ttl int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	s.checkLocked(now)
	if s.err != nil {
		return false
	}
	if ttl <= 0 {
		s.loseLocked(ErrExpired)
		return false
	}
	if d := sent.Add(time.Duration(ttl)*time.Second - s.margin); d.After(s.deadline) {
		s.deadline, s.acked = d, sent
		s.timer.Reset(d.Sub(now))
	}
	return true
}

// loseLocked records why the session is lost, closes Lost, tells the
// claims and stops the keep-alives. The caller checked that it was not
// lost before.
func (s *Session) loseLocked(err error) {
	s.err = err
	close(s.lost)
	for c := range s.claims {
		c.lose(err)
	}
	s.claims = nil
	if s.timer != nil {
		s.timer.Stop()
	}
	s.stop()
	s.log.Debug("lease session ended", "reason", err.Error()) // the holder's layer reports losses
}

// unackedError is ErrUnacknowledged with the times that explain it.
type unackedError struct {
	since       time.Time     // send time of the newest acknowledged request
	after       time.Duration // how long before the loss that was
	ttl, margin time.Duration
}

func (e *unackedError) Error() string {
	return fmt.Sprintf("lease: no keep-alive acknowledged since %s, %s before the loss (ttl %s, margin %s)",
		e.since.Format("15:04:05.000"), e.after.Round(time.Millisecond), e.ttl, e.margin)
}

func (e *unackedError) Is(target error) bool { return target == ErrUnacknowledged }
