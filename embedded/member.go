package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// ErrRemoved is wrapped by Run's error when etcd reports that this member
// was removed from its cluster. A removed member never comes back: its data
// dir must be deleted before the node can join again.
var ErrRemoved = errors.New("embedded: member removed from the cluster")

// errStartTimeout is the cause of the start-up context when StartTimeout
// expires.
var errStartTimeout = errors.New("embedded: start timeout")

// Member is one etcd member run by this process: New configures it, Run
// runs it, Ready says when it serves. Its methods are safe for concurrent
// use. Run may be called once; to start the member again, make a new
// Member on the same Config.
type Member struct {
	cfg     Config // defaults applied
	log     *slog.Logger
	zl      *zap.Logger
	life    *lifeState             // removed, closing, starting: shared with etcd's logger
	ready   chan struct{}          // closed once the member serves
	id      atomic.Uint64          // the member's ID, set before ready is closed
	ran     atomic.Bool            // Run was called
	waiting atomic.Pointer[string] // what start-up waits for, if anything (see Waiting)

	// Used by Run's goroutine only.
	lock *fileutil.LockedFile
	etcd *embed.Etcd
}

// New validates cfg and applies its defaults. It starts nothing and touches
// no disk: Run does.
func New(cfg Config) (*Member, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("embedded: invalid configuration: %w", err)
	}
	c := cfg.withDefaults()
	m := &Member{
		cfg:   c,
		log:   c.Logger.With("component", "embedded"),
		life:  new(lifeState),
		ready: make(chan struct{}),
	}
	m.zl = newZapLogger(c.Logger, m.life)
	return m, nil
}

// Run locks the data dir (failing at once with ErrDataDirInUse when another
// process uses it), adds the member to the cluster at Join if the data dir
// holds no member yet, starts etcd and waits until the member serves
// clients as a voting member, for at most StartTimeout. It then closes
// Ready and serves until ctx ends, when it stops the member, releases the
// data dir and returns nil.
//
// Run returns an error when start-up fails or when the member fails later
// (wrapping ErrRemoved when etcd reports that this member was removed),
// after stopping the member and releasing the data dir. A ctx that ends
// during start-up is not an error: Run stops what it started and returns
// nil, and Ready stays open. One exception to "stopped when Run returns":
// if ctx ends while etcd's own start-up call is blocked (resolving DNS,
// asking peers), Run returns at once and a goroutine stops etcd and
// releases the data dir when that call returns.
func (m *Member) Run(ctx context.Context) error {
	if !m.ran.CompareAndSwap(false, true) {
		return fmt.Errorf("embedded: member %q: Run called twice; make a new Member to start it again", m.cfg.Name)
	}
	m.life.starting.Store(true)
	err := m.start(ctx)
	m.life.starting.Store(false)
	m.setWaiting("")
	if err != nil {
		if ctx.Err() != nil {
			return nil // cancelled during start-up
		}
		return err
	}
	c := m.cfg
	m.id.Store(uint64(m.etcd.Server.MemberID()))
	close(m.ready)
	m.log.Info("etcd member started", "name", c.Name, "member_id", fmt.Sprintf("%x", m.ID()),
		"client_urls", c.AdvertiseClientURLs, "peer_urls", c.InitialAdvertisePeerURLs, "path", c.DataDir)
	err = m.serve(ctx)
	m.stop()
	return err
}

// Ready returns a channel that is closed once the member serves clients as
// a voting member; ID is valid from then on. It is never closed if Run
// fails or is cancelled during start-up.
func (m *Member) Ready() <-chan struct{} { return m.ready }

// start does Run's start-up, bounded by StartTimeout. On failure it stops
// what it started and releases the data dir (see startEtcd).
func (m *Member) start(ctx context.Context) error {
	ctx, cancel := context.WithTimeoutCause(ctx, m.cfg.StartTimeout, errStartTimeout)
	defer cancel()
	created := !dirExists(m.cfg.DataDir)
	lock, err := lockDataDir(m.cfg.DataDir)
	if err != nil {
		return err
	}
	m.lock = lock
	ec, err := m.bootstrapConfig(ctx)
	if err != nil {
		m.removeUnused(created)
		lock.Close()
		return err
	}
	if m.etcd, err = m.startEtcd(ctx, ec, created); err != nil {
		return err // startEtcd released the lock, or will once etcd returns
	}
	if err := m.waitServing(ctx); err != nil {
		m.life.closing.Store(true)
		closeUnready(m.etcd)
		m.removeUnused(created)
		lock.Close()
		return err
	}
	return nil
}

// removeUnused removes the data dir after a failed start-up when this
// start created it and it holds no member: an empty dir left behind would
// only suggest that the node has data. It runs before the lock is released,
// so that it cannot remove the dir of a start that follows.
func (m *Member) removeUnused(created bool) {
	if !created || hasMember(m.cfg.DataDir) {
		return
	}
	if err := os.RemoveAll(m.cfg.DataDir); err != nil {
		m.log.Warn("cannot remove unused data dir", "path", m.cfg.DataDir, "err", err)
	}
}

// startEtcd runs embed.StartEtcd, which can block (on DNS, on peers, on a
// database another process locks), without outliving ctx. If ctx ends first,
// a goroutine closes etcd and releases the data dir when StartEtcd returns.
func (m *Member) startEtcd(ctx context.Context, ec *embed.Config, created bool) (*embed.Etcd, error) {
	type result struct {
		e   *embed.Etcd
		err error
	}
	ch := make(chan result, 1)
	go func() {
		e, err := embed.StartEtcd(ec)
		ch <- result{e, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			m.removeUnused(created)
			m.lock.Close()
			return nil, m.withTLSFailure(m.cfg.startError(r.err))
		}
		return r.e, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.e != nil {
				m.life.closing.Store(true)
				closeUnready(r.e)
			}
			m.removeUnused(created)
			m.lock.Close()
		}()
		return nil, m.ctxError(ctx, "start etcd", "")
	}
}

// closeUnready stops e, which may never have become ready. e.Close alone
// would wait for the client servers, which start only once etcd is ready and
// otherwise return only when the server stops, so stop the server first.
func closeUnready(e *embed.Etcd) {
	e.Server.Stop()
	e.Close()
}

// waitServing waits until the member serves clients and, when it starts as a
// learner, until it is promoted.
func (m *Member) waitServing(ctx context.Context) error {
	s := m.etcd.Server
	m.setWaiting("waiting for a quorum of the cluster's members to start and reach each other's peer URLs")
	select {
	case <-s.ReadyNotify():
	case err := <-m.etcd.Err():
		return m.serverError(err)
	case <-s.StopNotify():
		return m.stoppedError()
	case <-ctx.Done():
		return m.withTLSFailure(m.ctxError(ctx, "wait until ready",
			"; a new cluster is ready once a quorum of its initial members runs and reaches each other's peer URLs"))
	}
	if s.IsLearner() {
		return m.promote(ctx)
	}
	return nil
}

// serve waits until ctx ends (nil) or etcd fails or stops on its own.
func (m *Member) serve(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case err, ok := <-m.etcd.Err():
		if !ok {
			return m.stoppedError()
		}
		return m.serverError(err)
	case <-m.etcd.Server.StopNotify():
		return m.stoppedError()
	}
}

// stop stops the serving member and releases the data dir.
func (m *Member) stop() {
	m.life.closing.Store(true)
	m.handOver()
	m.etcd.Close()
	m.lock.Close()
	m.log.Info("etcd member stopped", "name", m.cfg.Name)
}

// stoppedError explains why the etcd server stopped on its own.
func (m *Member) stoppedError() error {
	return m.serverError(errors.New("etcd server stopped (see etcd's log)"))
}

// serverError wraps an error of the running server; when etcd said this
// member was removed, that is the error.
func (m *Member) serverError(err error) error {
	s := m.etcd.Server
	if m.life.removed.Load() || s.IsIDRemoved(uint64(s.MemberID())) {
		return m.removedError()
	}
	return fmt.Errorf("embedded: member %q: %w", m.cfg.Name, err)
}

// removedError says that this member was removed and what to do about it.
func (m *Member) removedError() error {
	return fmt.Errorf("%w: member %q (%x) was removed from its cluster; delete its data dir %s before starting it again (with join set, it is then added as a new member)",
		ErrRemoved, m.cfg.Name, uint64(m.etcd.Server.MemberID()), m.cfg.DataDir)
}

// withTLSFailure adds to a start-up error the last TLS failure etcd
// logged: etcd says why a peer's certificate was refused in its log, not in
// the error it returns.
func (m *Member) withTLSFailure(err error) error {
	if f := m.life.tlsFailure(); f != "" {
		return fmt.Errorf("%w (last TLS failure: %s)", err, f)
	}
	return err
}

// ctxError describes why ctx ended while Run's start-up was doing what.
func (m *Member) ctxError(ctx context.Context, what, hint string) error {
	if errors.Is(context.Cause(ctx), errStartTimeout) {
		return fmt.Errorf("embedded: member %q: %s: not done within start_timeout %s%s",
			m.cfg.Name, what, m.cfg.StartTimeout, hint)
	}
	return fmt.Errorf("embedded: member %q: %s: %w", m.cfg.Name, what, context.Cause(ctx))
}

// startError wraps an error of embed.StartEtcd, naming the URL when a listen
// address is taken.
func (c Config) startError(err error) error {
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "listen" || oe.Addr == nil {
		return fmt.Errorf("embedded: start etcd member %q: %w", c.Name, err)
	}
	fields := []struct {
		name string
		urls []string
	}{{"listen_peer_urls", c.ListenPeerURLs}, {"listen_client_urls", c.ListenClientURLs}}
	for _, f := range fields {
		for _, s := range f.urls {
			if u, perr := url.Parse(s); perr == nil && u.Host == oe.Addr.String() {
				return fmt.Errorf("embedded: cannot listen on %s (embedded.%s): %w", s, f.name, err)
			}
		}
	}
	return fmt.Errorf("embedded: cannot listen on %s: %w", oe.Addr, err)
}

// ID returns the member's ID in its cluster once Ready is closed (and
// after Run returned), 0 before.
func (m *Member) ID() uint64 { return m.id.Load() }

// Name returns the member's name.
func (m *Member) Name() string { return m.cfg.Name }

// ClientURLs returns the URLs a client of this member should dial: the
// advertised client URLs. Like Name and PeerURLs, it is known from New on.
func (m *Member) ClientURLs() []string { return append([]string(nil), m.cfg.AdvertiseClientURLs...) }

// ClientTLS returns the TLS files of the member's client side: a client
// of ClientURLs trusts its TrustedCAFile and presents its CertFile (see TLS).
// It is zero when the member serves plain http.
func (m *Member) ClientTLS() TLS { return m.cfg.ClientTLS }

// PeerURLs returns the member's advertised peer URLs.
func (m *Member) PeerURLs() []string {
	return append([]string(nil), m.cfg.InitialAdvertisePeerURLs...)
}

// embedConfig builds etcd's configuration for this start.
func (c Config) embedConfig(zl *zap.Logger, initialCluster, state string) *embed.Config {
	ec := embed.NewConfig()
	ec.Name = c.Name
	ec.Dir = c.DataDir
	ec.ListenClientUrls = mustURLs(c.ListenClientURLs)
	ec.AdvertiseClientUrls = mustURLs(c.AdvertiseClientURLs)
	ec.ListenPeerUrls = mustURLs(c.ListenPeerURLs)
	ec.AdvertisePeerUrls = mustURLs(c.InitialAdvertisePeerURLs)
	ec.InitialCluster = initialCluster
	ec.InitialClusterToken = c.InitialClusterToken
	ec.ClusterState = state
	ec.DNSCluster = c.DiscoverySRV
	ec.TickMs = uint(c.HeartbeatInterval / time.Millisecond)
	ec.ElectionMs = uint(c.ElectionTimeout / time.Millisecond)
	ec.SnapshotCount = c.SnapshotCount
	ec.AutoCompactionMode = embed.CompactorModePeriodic
	ec.AutoCompactionRetention = c.AutoCompactionRetention.String()
	ec.QuotaBackendBytes = c.QuotaBackendBytes
	ec.Logger = "zap"
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zl)
	c.setTLS(ec)
	return ec
}

// mustURLs parses URLs that Validate accepted.
func mustURLs(ss []string) []url.URL {
	us := make([]url.URL, len(ss))
	for i, s := range ss {
		u, err := url.Parse(s)
		if err != nil {
			panic(fmt.Sprintf("embedded: unvalidated URL %q: %v", s, err))
		}
		us[i] = *u
	}
	return us
}
