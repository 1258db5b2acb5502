package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"

	"github.com/sidecar-dev/sidecar/internal/liveness"
)

// DefaultIdleTimeout is Config.IdleTimeout's default.
const DefaultIdleTimeout = 10 * time.Minute

var (
	// ErrNoInstance: the service has no instance with a weight above 0.
	ErrNoInstance = errors.New("discovery: no instance")
	// ErrUnavailable: the service was never listed, because etcd could not
	// be reached before the caller's context ended.
	ErrUnavailable = errors.New("discovery: etcd unavailable")
	// ErrBadName: a service name does not match [A-Za-z0-9][A-Za-z0-9._-]{0,127}.
	ErrBadName = errors.New("discovery: bad name")
	// ErrStopped: Run has returned (or is returning).
	ErrStopped = errors.New("discovery: cache stopped")
)

// Config configures a Cache.
type Config struct {
	// Prefix is the key prefix of the services, without a trailing slash
	// (for example "/sidecar/services"); instances live at
	// <Prefix>/<service>/<id>. Required.
	Prefix string
	// Logger gets the cache's logs, with component=discovery. Default:
	// discard.
	Logger *slog.Logger
	// Liveness tells whether etcd answers: while it does not, every answer
	// is marked stale. Default: a liveness.Monitor of the cache's own on
	// the key Prefix, run by Run. The daemon passes its one monitor.
	Liveness Liveness
	// IdleTimeout: a service that nobody asked about (Get, Subscribe, Pick)
	// for this long, and that has no subscriber, stops being watched and
	// its instances are dropped; checked every IdleTimeout/4. Default
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
}

// Liveness is the one signal of whether etcd answers (internal/liveness's
// Monitor implements it).
type Liveness interface {
	Up() bool
	// Answered records that etcd answered just now (a list or a watch
	// response): evidence that counts like the monitor's own.
	Answered()
	// WaitForChange blocks until Up differs from up (true) or ctx ends
	// (false).
	WaitForChange(ctx context.Context, up bool) bool
}

// Cache answers questions about services from etcd watches. Its methods
// are safe for concurrent use. Get, Subscribe and Pick may be called
// before Run, but their services are watched only once Run runs.
type Cache struct {
	cli     *clientv3.Client
	live    Liveness
	own     *liveness.Monitor // run by Run when Config.Liveness is nil
	root    string            // Prefix + "/"
	idle    time.Duration
	log     *slog.Logger
	skipped atomic.Int64

	mu       sync.Mutex
	services map[string]*service
	group    *errgroup.Group // of Run; nil before
	gctx     context.Context // the group's context
	stopping bool            // Run's context ended: start no goroutine
	stopped  chan struct{}   // closed when Run has stopped everything
}

// New validates cfg and returns a cache reading through cli. It starts
// nothing and contacts nobody.
func New(cli *clientv3.Client, cfg Config) (*Cache, error) {
	if cli == nil {
		return nil, errors.New("discovery: nil client")
	}
	prefix := strings.TrimRight(cfg.Prefix, "/")
	if prefix == "" {
		return nil, fmt.Errorf("discovery: prefix %q: want a non-empty key prefix such as /sidecar/services", cfg.Prefix)
	}
	if cfg.IdleTimeout < 0 {
		return nil, fmt.Errorf("discovery: idle timeout %s: want > 0", cfg.IdleTimeout)
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Cache{
		cli:      cli,
		live:     cfg.Liveness,
		root:     prefix + "/",
		idle:     cfg.IdleTimeout,
		log:      log.With("component", "discovery"),
		services: make(map[string]*service),
		stopped:  make(chan struct{}),
	}
	if c.live == nil {
		m, err := liveness.New(cli, liveness.Config{Key: prefix, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("discovery: %w", err)
		}
		c.live, c.own = m, m
	}
	return c, nil
}

// Run watches the services asked about until ctx ends, then closes every
// subscription and returns nil. It owns every goroutine of the cache. It
// may be called once.
func (c *Cache) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.group != nil {
		c.mu.Unlock()
		return errors.New("discovery: Run called twice")
	}
	g, gctx := errgroup.WithContext(ctx)
	c.group, c.gctx = g, gctx
	// Started under c.mu, so that the group never looks finished while
	// acquire may still add to it.
	g.Go(func() error { return c.evictLoop(gctx) })
	g.Go(func() error { return c.followLiveness(gctx) })
	if c.own != nil {
		g.Go(func() error { return c.own.Run(gctx) })
	}
	for _, s := range c.services {
		c.startLocked(s)
	}
	c.mu.Unlock()

	err := g.Wait()
	c.mu.Lock()
	c.stopping = true
	close(c.stopped)
	for _, s := range c.services {
		s.close()
	}
	clear(c.services)
	c.mu.Unlock()
	if err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// startLocked starts the watch of s; c.mu is held and Run runs.
func (c *Cache) startLocked(s *service) {
	wctx, cancel := context.WithCancel(c.gctx)
	s.cancel = cancel
	c.log.Debug("watching service", "service", s.name)
	c.group.Go(func() error { return c.watchService(wctx, s) })
}

// evictLoop stops watching idle services until ctx ends.
func (c *Cache) evictLoop(ctx context.Context) error {
	t := time.NewTicker(max(c.idle/4, 5*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			c.mu.Lock()
			c.stopping = true // while this goroutine keeps the group alive
			c.mu.Unlock()
			return nil
		case now := <-t.C:
			c.evictIdle(now)
		}
	}
}

func (c *Cache) evictIdle(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, s := range c.services {
		if s.refs > 0 || now.Sub(s.lastUsed) < c.idle {
			continue
		}
		if s.cancel != nil {
			s.cancel()
		}
		s.close()
		delete(c.services, name)
		c.log.Debug("stopped watching idle service", "service", name)
	}
}

// followLiveness tells every service when etcd stops or starts answering,
// waiting for changes rather than polling, until ctx ends.
func (c *Cache) followLiveness(ctx context.Context) error {
	for {
		up := c.live.Up()
		c.log.Debug("etcd liveness", "up", up)
		c.mu.Lock()
		svcs := make([]*service, 0, len(c.services))
		for _, s := range c.services {
			svcs = append(svcs, s)
		}
		c.mu.Unlock()
		for _, s := range svcs {
			s.refresh(up)
		}
		if !c.live.WaitForChange(ctx, up) {
			return nil
		}
	}
}

// acquire returns the entry of service name, creating it (and starting its
// watch if Run runs), and holds it until release.
func (c *Cache) acquire(name string) (*service, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopping {
		return nil, ErrStopped
	}
	s := c.services[name]
	if s == nil {
		s = newService(c.root, name)
		c.services[name] = s
		if c.group != nil {
			c.startLocked(s)
		}
	}
	s.refs++
	s.lastUsed = time.Now()
	return s, nil
}

func (c *Cache) release(s *service) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s.refs--
	s.lastUsed = time.Now()
}

// waitListed waits until s has been listed once, ctx ends or the cache
// stops.
func (c *Cache) waitListed(ctx context.Context, s *service) error {
	select {
	case <-s.listed:
		return nil
	default:
	}
	select {
	case <-s.listed:
		return nil
	case <-c.stopped:
		return ErrStopped
	case <-ctx.Done():
		if err := s.lastError(); err != nil {
			return fmt.Errorf("%w: service %q not listed yet: %w (gave up: %w)", ErrUnavailable, s.name, err, ctx.Err())
		}
		return fmt.Errorf("%w: service %q not listed yet: %w", ErrUnavailable, s.name, ctx.Err())
	}
}

// Skipped returns how many values and keys under the prefix were skipped
// because they do not describe an instance, counted each time one is read.
func (c *Cache) Skipped() int64 { return c.skipped.Load() }

// Watched returns the names of the services being watched, sorted.
func (c *Cache) Watched() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, 0, len(c.services))
	for name, s := range c.services {
		if s.cancel != nil {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}
