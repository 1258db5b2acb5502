package sidecar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sync/atomic"
	"time"

	sdnotify "github.com/coreos/go-systemd/v22/daemon"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"

	"github.com/sidecar-dev/sidecar/configsync"
	"github.com/sidecar-dev/sidecar/discovery"
	"github.com/sidecar-dev/sidecar/embedded"
	"github.com/sidecar-dev/sidecar/internal/liveness"
	"github.com/sidecar-dev/sidecar/internal/record"
	"github.com/sidecar-dev/sidecar/registry"
)

// Daemon is the sidecar process: local API, etcd member or client, and the
// components built on them. Create it with New and run it once with Run; its
// methods are safe for concurrent use.
type Daemon struct {
	cfg            Config
	log            *slog.Logger
	metrics        *metrics
	started        time.Time
	etcd           etcdConn
	ready          chan struct{} // closed once etcd answered
	streams        chan struct{} // one element per open API stream, at most maxStreams
	metricsHandler http.Handler

	reg           atomic.Pointer[registry.Registrar]     // set once etcd is up, if a service is configured
	disc          atomic.Pointer[discovery.Cache]        // set once etcd is up
	mirrors       atomic.Pointer[[]*configsync.Mapping]  // one per config entry, set once etcd is up
	reloaders     atomic.Pointer[[]*configsync.Reloader] // aligned with mirrors; nil entries without on_change
	batches       batchHub                               // the mappings' batches, to /v1/config streams
	configMetrics *configCollector                       // nil without config mappings
	coord         *coordinator                           // locks and elections (coord.go)
}

// NewLogger builds the daemon's logger from the log section.
func NewLogger(lc LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(lc.Level)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if lc.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// New completes and validates cfg and prepares a daemon; it starts nothing.
// A nil logger is built from cfg.Log, writing to stderr.
func New(cfg Config, log *slog.Logger) (*Daemon, error) {
	if err := cfg.Complete(); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = NewLogger(cfg.Log, os.Stderr)
	}
	d := &Daemon{cfg: cfg, log: log, ready: make(chan struct{}), streams: make(chan struct{}, maxStreams)}
	d.metrics = newMetrics(d.etcd.up)
	if cfg.Service.Name != "" {
		d.metrics.reg.MustRegister(newRegistrationCollector(d))
	}
	if len(cfg.Config) > 0 {
		d.configMetrics = newConfigCollector(d)
		d.metrics.reg.MustRegister(d.configMetrics)
	}
	d.coord = newCoordinator(cfg, log)
	d.metrics.reg.MustRegister(d.coord.metrics.collectors()...)
	d.metricsHandler = d.promHandler()
	return d, nil
}

// Ready is closed once etcd has answered a real request.
func (d *Daemon) Ready() <-chan struct{} { return d.ready }

// Run serves the local API, brings up etcd (embedded member or client) and
// the parts built on it, and blocks until ctx ends or a part fails; then it
// stops everything in the order of (*parts).shutdown. It returns nil after
// a clean shutdown, or what failed.
func (d *Daemon) Run(ctx context.Context) error {
	d.started = time.Now()
	ctx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	p := &parts{log: d.log}
	defer p.shutdown()
	api, err := d.startAPI(fail)
	if err != nil {
		return err
	}
	p.api = api
	if err := d.startEtcd(ctx, fail, p); err != nil {
		return err
	}
	if p.cli == nil { // ctx ended, or a part failed, during start-up
		return runResult(ctx)
	}
	close(d.ready)
	d.log.Info("etcd ready", "endpoints", p.cli.Endpoints())
	sdnotify.SdNotify(false, sdnotify.SdNotifyReady)
	<-ctx.Done()
	sdnotify.SdNotify(false, sdnotify.SdNotifyStopping)
	return runResult(ctx)
}

// runResult is Run's result once ctx has ended: nil when it was cancelled
// (a signal, the caller), else the failure that ended it.
func runResult(ctx context.Context) error {
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// startAPI listens on the socket (and api.http) and serves the local API
// until its part is stopped.
func (d *Daemon) startAPI(fail context.CancelCauseFunc) (*part, error) {
	sock, err := listenSocket(d.cfg.SocketPath(), d.socketMode())
	if err != nil {
		return nil, err
	}
	var tcp net.Listener
	if d.cfg.API.HTTP != "" {
		if tcp, err = net.Listen("tcp", d.cfg.API.HTTP); err != nil {
			sock.Close()
			return nil, fmt.Errorf("sidecar: api.http: %w", err)
		}
	}
	d.log.Info("local api listening", "socket", d.cfg.SocketPath(), "http", d.cfg.API.HTTP)
	return startPart("local api", fail, func(ctx context.Context) error {
		g, gctx := errgroup.WithContext(ctx) // a listener failing stops the API
		// Requests end with the API: one still waiting to be admitted
		// while etcd was never reached does not hold the shutdown up.
		base := func(net.Listener) context.Context { return ctx }
		unixSrv := d.httpServer(d.socketHandler())
		unixSrv.BaseContext = base
		g.Go(func() error { return serve(unixSrv, newCredListener(sock, maxConns)) })
		srvs := []*http.Server{unixSrv}
		if tcp != nil {
			tcpSrv := d.httpServer(d.tcpHandler())
			tcpSrv.BaseContext = base
			g.Go(func() error { return serve(tcpSrv, tcp) })
			srvs = append(srvs, tcpSrv)
		}
		<-gctx.Done()
		stopServers(srvs)
		return g.Wait()
	}), nil
}

func (d *Daemon) socketMode() os.FileMode {
	m, _ := parseMode(d.cfg.API.SocketMode) // validated in New
	return m
}

func (d *Daemon) httpServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    maxHeaderBytes,
		ConnContext:       connContext,
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelDebug),
	}
}

func serve(srv *http.Server, ln net.Listener) error {
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("sidecar: serve api: %w", err)
	}
	return nil
}

// stopServers lets requests in flight finish for a few seconds, then
// closes what is left.
func stopServers(srvs []*http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range srvs {
		if err := s.Shutdown(ctx); err != nil {
			s.Close()
		}
	}
}

// startEtcd brings up the embedded member (in embedded mode) and the
// client, then starts the parts built on etcd, recording each in p as it
// starts so that shutdown stops what did start.
func (d *Daemon) startEtcd(ctx context.Context, fail context.CancelCauseFunc, p *parts) error {
	cc, _ := d.cfg.ClientConfig() // validated in New (join mode)
	if d.cfg.EmbeddedMode() {
		m, err := d.startMember(ctx, fail, p)
		if err != nil || m == nil {
			return err
		}
		cc = memberClientConfig(m, d.cfg.Etcd.DialTimeout)
	}
	d.etcd.mu.Lock()
	d.etcd.endpoints = slices.Concat(cc.Endpoints, dnsEndpoint(cc.DNSSRV))
	d.etcd.mu.Unlock()
	cli, err := d.connect(ctx, cc)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	p.cli = cli
	d.etcd.mu.Lock()
	d.etcd.cli, d.etcd.lastErr = cli, nil
	d.etcd.endpoints = cli.Endpoints() // DNS SRV resolved
	d.etcd.mu.Unlock()
	return d.startComponents(fail, cli, p)
}

// startMember starts the embedded member and waits until it serves. It
// returns a nil member, and no error, when ctx ended first.
func (d *Daemon) startMember(ctx context.Context, fail context.CancelCauseFunc, p *parts) (*embedded.Member, error) {
	mc := d.cfg.EmbeddedMember()
	mc.Logger = d.log
	m, err := embedded.New(mc)
	if err != nil {
		return nil, err
	}
	d.etcd.setMember(m) // status and health say what its start-up waits for
	d.log.Info("starting embedded etcd member", "name", mc.Name, "data_dir", mc.DataDir)
	p.member = startPart("embedded etcd member", fail, m.Run)
	select {
	case <-m.Ready():
	case <-p.member.done:
		return nil, p.member.err // start-up failed (nil: cancelled)
	case <-ctx.Done():
		return nil, nil
	}
	return m, nil
}

// startComponents starts the liveness monitor, discovery, the config
// mappings, locks and elections and, with a service configured, the
// registrar.
func (d *Daemon) startComponents(fail context.CancelCauseFunc, cli *clientv3.Client, p *parts) error {
	live, err := liveness.New(cli, liveness.Config{Key: d.cfg.Etcd.Namespace + "/health", Logger: d.log})
	if err != nil {
		return fmt.Errorf("sidecar: liveness: %w", err)
	}
	disc, err := discovery.New(cli, discovery.Config{Prefix: record.ServicesPrefix(d.cfg.Etcd.Namespace), Logger: d.log, Liveness: live})
	if err != nil {
		return fmt.Errorf("sidecar: discovery: %w", err)
	}
	var reg *registry.Registrar
	mirrors, reloaders, err := d.newMirrors(cli)
	if err != nil {
		return err
	}
	if d.cfg.Service.Name != "" {
		rc := d.cfg.RegistryConfig()
		rc.Logger = d.log
		if reg, err = registry.New(cli, rc); err != nil {
			return fmt.Errorf("sidecar: registry: %w", err)
		}
	}
	live.Answered() // connect has just read from etcd
	d.etcd.live.Store(live)
	p.liveness = startPart("liveness monitor", fail, live.Run)
	p.connState = startPart("connection state", fail, func(ctx context.Context) error { d.watchConnState(ctx, cli); return nil })
	p.alarms = startPart("etcd alarms", fail, func(ctx context.Context) error { d.watchAlarms(ctx, cli); return nil })
	d.disc.Store(disc)
	p.discovery = startPart("discovery", fail, disc.Run)
	d.mirrors.Store(&mirrors)
	p.batches = &d.batches
	for _, m := range mirrors {
		p.mirrors = append(p.mirrors, startPart("config mapping "+m.Status().Prefix, fail, m.Run))
	}
	d.reloaders.Store(&reloaders)
	for _, r := range reloaders {
		if r != nil {
			p.reloaders = append(p.reloaders, startPart("config reload", fail, r.Run))
		}
	}
	p.coord = startPart("locks and elections", fail, func(ctx context.Context) error { return d.coord.Run(ctx, cli) })
	<-d.coord.Admitting() // at once: ready means lock and election requests are admitted
	if reg != nil {
		d.reg.Store(reg)
		p.registry = startPart("registration", fail, func(ctx context.Context) error {
			err := reg.Run(ctx)
			if err != nil && ctx.Err() != nil {
				// The revoke failed (etcd unreachable): the lease expires
				// within its TTL; the exit stays clean.
				d.log.Error("deregister at shutdown failed; the key goes when its lease expires", "err", err, "ttl_s", d.cfg.Service.TTL.Seconds())
				return nil
			}
			return err
		})
	}
	return nil
}

// newMirrors builds a mapping per config entry, and its reloader (nil
// without on_change); every batch goes to the /v1/config streams and the
// mapping's reloader.
func (d *Daemon) newMirrors(cli *clientv3.Client) ([]*configsync.Mapping, []*configsync.Reloader, error) {
	var mirrors []*configsync.Mapping
	var reloaders []*configsync.Reloader
	for i, mc := range d.cfg.MappingConfigs() {
		r, err := d.cfg.reloaderFor(i)
		if err != nil {
			return nil, nil, fmt.Errorf("sidecar: config[%d].on_change: %w", i, err)
		}
		mc.Logger = d.log
		mc.OnBatch = func(b configsync.Batch) {
			d.configMetrics.observe(b)
			d.batches.publish(b)
			if r != nil {
				r.Notify()
			}
		}
		reloaders = append(reloaders, r) // nil without on_change: indexes stay aligned
		m, err := configsync.New(cli, mc)
		if err != nil {
			return nil, nil, fmt.Errorf("sidecar: config mapping: %w", err)
		}
		mirrors = append(mirrors, m)
	}
	return mirrors, reloaders, nil
}

func dnsEndpoint(domain string) []string {
	if domain == "" {
		return nil
	}
	return []string{"dns-srv:" + domain}
}
