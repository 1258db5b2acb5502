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

	"github.com/sidecar-dev/sidecar/discovery"
	"github.com/sidecar-dev/sidecar/embedded"
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
	metricsHandler http.Handler

	reg  atomic.Pointer[registry.Registrar] // set once etcd is up, if a service is configured
	disc atomic.Pointer[discovery.Cache]    // set once etcd is up
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
	d := &Daemon{cfg: cfg, log: log, ready: make(chan struct{})}
	d.metrics = newMetrics(d.probe)
	if cfg.Service.Name != "" {
		d.metrics.reg.MustRegister(newRegistrationCollector(d))
	}
	d.metricsHandler = d.promHandler()
	return d, nil
}

// Ready is closed once etcd has answered a real request.
func (d *Daemon) Ready() <-chan struct{} { return d.ready }

func (d *Daemon) probe(ctx context.Context) error {
	return d.etcd.probe(ctx, d.cfg.Etcd.Namespace+"/health")
}

// Run serves the local API, brings up etcd (embedded member or client) and
// blocks until ctx ends, then shuts down in order: components, API, etcd
// client, embedded member. It returns nil after a clean shutdown.
func (d *Daemon) Run(ctx context.Context) error {
	d.started = time.Now()
	sock, err := listenSocket(d.cfg.SocketPath(), d.socketMode())
	if err != nil {
		return err
	}
	var tcp net.Listener
	if d.cfg.API.HTTP != "" {
		if tcp, err = net.Listen("tcp", d.cfg.API.HTTP); err != nil {
			sock.Close()
			return fmt.Errorf("sidecar: api.http: %w", err)
		}
	}
	unixSrv := d.httpServer(d.socketHandler())
	tcpSrv := d.httpServer(d.tcpHandler())
	d.log.Info("local api listening", "socket", d.cfg.SocketPath(), "http", d.cfg.API.HTTP)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serve(unixSrv, newCredListener(sock, maxConns)) })
	if tcp != nil {
		g.Go(func() error { return serve(tcpSrv, tcp) })
	}
	g.Go(func() error {
		err := d.runEtcd(gctx)
		sdnotify.SdNotify(false, sdnotify.SdNotifyStopping)
		d.stopAPI(ctx, unixSrv, tcpSrv)
		return err
	})
	return g.Wait()
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

// stopAPI lets requests in flight finish for a few seconds, then closes
// what is left.
func (d *Daemon) stopAPI(ctx context.Context, srvs ...*http.Server) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	for _, s := range srvs {
		if err := s.Shutdown(sctx); err != nil {
			s.Close()
		}
	}
}

// runEtcd brings etcd up, runs what needs it until ctx ends, then closes the
// client and stops the member.
func (d *Daemon) runEtcd(ctx context.Context) error {
	var member *embedded.Member
	cc, _ := d.cfg.ClientConfig() // validated in New (join mode)
	if d.cfg.EmbeddedMode() {
		mc := d.cfg.EmbeddedMember()
		mc.Logger = d.log
		d.log.Info("starting embedded etcd member", "name", mc.Name, "data_dir", mc.DataDir)
		m, err := embedded.Start(ctx, mc)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		member = m
		defer member.Close()
		cc = clientConfigFor(member.ClientURLs(), d.cfg.Etcd.DialTimeout)
		d.etcd.mu.Lock()
		d.etcd.member = member
		d.etcd.mu.Unlock()
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
	defer cli.Close()
	d.etcd.mu.Lock()
	d.etcd.cli, d.etcd.lastErr = cli, nil
	d.etcd.endpoints = cli.Endpoints() // DNS SRV resolved
	d.etcd.mu.Unlock()
	close(d.ready)
	d.log.Info("etcd ready", "endpoints", cli.Endpoints())
	sdnotify.SdNotify(false, sdnotify.SdNotifyReady)
	return d.serveComponents(ctx, cli, member)
}

// serveComponents runs the parts built on etcd until ctx ends or the
// embedded member fails; each cleans up (deregisters) before returning.
func (d *Daemon) serveComponents(ctx context.Context, cli *clientv3.Client, member *embedded.Member) error {
	disc, err := discovery.New(cli, discovery.Config{Prefix: d.cfg.Etcd.Namespace + "/services", Logger: d.log})
	if err != nil {
		return fmt.Errorf("sidecar: discovery: %w", err)
	}
	var reg *registry.Registrar
	if d.cfg.Service.Name != "" {
		rc := d.cfg.RegistryConfig()
		rc.Logger = d.log
		if reg, err = registry.New(cli, rc); err != nil {
			return fmt.Errorf("sidecar: registry: %w", err)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { d.watchConnState(gctx, cli); return nil })
	g.Go(func() error { return disc.Run(gctx) })
	d.disc.Store(disc)
	if reg != nil {
		g.Go(func() error {
			err := reg.Run(gctx)
			if err != nil && gctx.Err() != nil {
				// Shutting down and the revoke failed (etcd unreachable):
				// the lease expires within its TTL; the exit stays clean.
				d.log.Error("deregister at shutdown failed; the key goes when its lease expires", "err", err, "ttl_s", d.cfg.Service.TTL.Seconds())
				return nil
			}
			return err
		})
		d.reg.Store(reg)
	}
	if member != nil {
		g.Go(func() error {
			select {
			case err := <-member.Err():
				return fmt.Errorf("sidecar: embedded etcd failed: %w", err)
			case <-gctx.Done():
				return nil
			}
		})
	}
	return g.Wait()
}

func dnsEndpoint(domain string) []string {
	if domain == "" {
		return nil
	}
	return []string{"dns-srv:" + domain}
}
