package etcdclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// Connection tuning. gRPC's default reconnect backoff grows to 120s; etcd
// members come back in seconds, and the registry must re-register within
// 1s of etcd being reachable, so reconnect attempts stay under a second
// apart (with jitter) however long the outage.
const (
	keepAliveTime    = 10 * time.Second // ping an idle-looking connection after this
	keepAliveTimeout = 3 * time.Second  // and drop it when the ping is not answered
	reconnectBase    = 250 * time.Millisecond
	reconnectMax     = 800 * time.Millisecond
)

// healthKey is read by Check, as by etcdctl endpoint health. A user without
// read permission on it gets "permission denied" only after the read went
// through the leader, which proves what Check wants to know.
const healthKey = "health"

// New builds the client. Without Username it contacts nobody: a nil error
// does not mean etcd is reachable (use Check). With Username, clientv3.New
// authenticates at once, bounded by DialTimeout; New then fails like Check
// would, with classified *ConnErrors (see Permanent), and the caller retries
// transient failures. The returned client refreshes its token by itself,
// also for watches (see tokenWatcher).
// ctx bounds only the construction, not the client's life.
func New(ctx context.Context, cfg Config) (*clientv3.Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	eps, err := resolveEndpoints(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("etcdclient: %w", err)
	}
	tlsCfg, err := cfg.tlsConfig(eps)
	if err != nil {
		return nil, fmt.Errorf("etcdclient: tls: %w", err)
	}
	ccfg := clientConfig(cfg, eps, tlsCfg, cfg.DialTimeout)
	ccfg.DialOptions = append(ccfg.DialOptions, cfg.DialOptions...)
	if cfg.Username == "" {
		cli, err := clientv3.New(ccfg)
		if err != nil {
			return nil, fmt.Errorf("etcdclient: new client: %w", err)
		}
		return cli, nil
	}
	var cli *clientv3.Client
	err = supervise(ctx, cfg, eps, tlsCfg, func(octx context.Context) error {
		var err error
		cli, err = newCancelable(octx, ccfg)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("etcdclient: authenticate: %w", err)
	}
	watchTokens(cli)
	return cli, nil
}

// newCancelable runs clientv3.New, whose token request ignores any context
// but the client's own, so that ctx can still cut it short.
func newCancelable(ctx context.Context, ccfg clientv3.Config) (*clientv3.Client, error) {
	life, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, cancel)
	ccfg.Context = life
	cli, err := clientv3.New(ccfg)
	if !stop() { // ctx ended during New: the client's context is gone
		if err == nil {
			cli.Close()
			err = ctx.Err()
		}
		return nil, err
	}
	return cli, err
}

// Check proves that the cluster serves cli: a linearizable read that needs
// a leader, bounded by cfg.DialTimeout (and ctx). On failure it returns
// *ConnErrors for the endpoints at fault, joined, found by probing each
// endpoint (DNS, TCP, TLS and HTTP/2, then etcd itself); never a bare
// "context deadline exceeded". When ctx is cancelled it returns ctx's error.
// cfg must be the Config cli was built from (its endpoints come from cli).
func Check(ctx context.Context, cli *clientv3.Client, cfg Config) error {
	cfg = cfg.withDefaults()
	var eps []endpoint
	for _, raw := range cli.Endpoints() {
		e, _ := parseEndpoint(raw)
		e.raw = raw
		eps = append(eps, e)
	}
	tlsCfg, err := cfg.tlsConfig(eps)
	if err != nil {
		return fmt.Errorf("etcdclient: tls: %w", err)
	}
	err = supervise(ctx, cfg, eps, tlsCfg, func(octx context.Context) error {
		_, err := cli.Get(clientv3.WithRequireLeader(octx), healthKey, clientv3.WithCountOnly())
		if errors.Is(err, rpctypes.ErrPermissionDenied) {
			return nil // denied after the linearizable read: etcd works
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("etcdclient: check: %w", err)
	}
	return nil
}

// clientConfig is the clientv3 configuration for endpoints eps, without
// the caller's extra dial options.
func clientConfig(cfg Config, eps []endpoint, tlsCfg *tls.Config, timeout time.Duration) clientv3.Config {
	raw := make([]string, len(eps))
	for i, e := range eps {
		raw[i] = e.raw
	}
	dialOpts := []grpc.DialOption{
		grpc.WithNoProxy(), // etcd endpoints never go through HTTP(S)_PROXY
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  reconnectBase,
				Multiplier: backoff.DefaultConfig.Multiplier,
				Jitter:     backoff.DefaultConfig.Jitter,
				MaxDelay:   reconnectMax,
			},
			MinConnectTimeout: timeout,
		}),
	}
	if tlsCfg != nil && tlsCfg.ServerName != "" {
		// clientv3's resolver names each address's host as its TLS server
		// name, which beats tls.Config.ServerName; only the channel's
		// authority beats that.
		dialOpts = append(dialOpts, grpc.WithAuthority(tlsCfg.ServerName))
	}
	return clientv3.Config{
		Endpoints:            raw,
		Username:             cfg.Username,
		Password:             cfg.Password,
		TLS:                  tlsCfg,
		DialTimeout:          timeout,
		DialKeepAliveTime:    keepAliveTime,
		DialKeepAliveTimeout: keepAliveTimeout,
		Logger:               zap.NewNop(),
		DialOptions:          dialOpts,
	}
}

// tlsConfig is the client TLS for eps: nil when no TLS is configured and no
// endpoint is https (plain connections), else built as etcdctl does; with
// no files given it verifies servers against the system roots.
func (c Config) tlsConfig(eps []endpoint) (*tls.Config, error) {
	https := false
	for _, e := range eps {
		https = https || e.scheme == "https"
	}
	if c.TLS.isZero() && !https {
		return nil, nil
	}
	info := transport.TLSInfo{
		CertFile:      c.TLS.CertFile,
		KeyFile:       c.TLS.KeyFile,
		TrustedCAFile: c.TLS.CAFile,
		ServerName:    c.TLS.ServerName,
		Logger:        zap.NewNop(),
	}
	return info.ClientConfig()
}

// usesTLS mirrors clientv3: http:// drops TLS, https:// requires it, and
// host:port uses it when the client has a TLS configuration.
func usesTLS(e endpoint, tlsCfg *tls.Config) bool {
	switch e.scheme {
	case "http":
		return false
	case "https":
		return true
	default:
		return tlsCfg != nil
	}
}

// supervise runs op with a deadline of cfg.DialTimeout (or ctx's, if
// sooner). If op has not succeeded after diagnoseAfter, or failed before, it
// probes the endpoints; when every probe fails it stops waiting for op. On
// failure it returns the probes' *ConnErrors, or, if no probe found a
// fault, one *ConnError classifying op's own error. It returns only when op
// and the probes have returned.
func supervise(ctx context.Context, cfg Config, eps []endpoint, tlsCfg *tls.Config, op func(context.Context) error) error {
	start := time.Now()
	budget := cfg.DialTimeout
	if d, ok := ctx.Deadline(); ok && time.Until(d) < budget {
		budget = max(time.Until(d), 0)
	}
	octx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- op(octx) }()

	d := &diagnosis{cfg: cfg, tlsCfg: tlsCfg, budget: shownWait(budget)}
	defer d.stop()
	timer := time.NewTimer(diagnoseAfter(budget))
	defer timer.Stop()
	var probed <-chan struct{} // closed when the probes are done; nil before and after
	for {
		select {
		case err := <-done:
			if err == nil {
				return nil
			}
			if errors.Is(ctx.Err(), context.Canceled) {
				return ctx.Err()
			}
			if !d.started() {
				d.start(ctx, eps, max(time.Until(start.Add(budget)), budget/2))
			}
			return d.explain(eps, err)
		case <-timer.C:
			cfg.Logger.Debug("etcd request slow; probing endpoints", "endpoints", joinEndpoints(eps), "waited_s", time.Since(start).Seconds())
			probed = d.start(ctx, eps, time.Until(start.Add(budget)))
		case <-probed:
			probed = nil
			if !d.allFailed() {
				continue // some endpoint looks fine: let op finish
			}
			cancel()
			if err := <-done; err == nil {
				return nil
			}
			if errors.Is(ctx.Err(), context.Canceled) {
				return ctx.Err()
			}
			return d.explain(eps, nil)
		}
	}
}

// shownWait is how an error shows the wait budget: to 10ms, so that a
// caller's deadline of 300ms, measured a moment after it was set, reads
// 300ms and not 299ms; below 10ms, to the millisecond.
func shownWait(budget time.Duration) time.Duration {
	if budget < 10*time.Millisecond {
		return budget.Round(time.Millisecond)
	}
	return budget.Round(10 * time.Millisecond)
}

// diagnoseAfter is how long a request may take before the endpoints are
// probed: a healthy cluster answers in milliseconds.
func diagnoseAfter(budget time.Duration) time.Duration {
	return min(budget/2, time.Second)
}

// joinEndpoints names all endpoints in one string.
func joinEndpoints(eps []endpoint) string {
	raw := make([]string, len(eps))
	for i, e := range eps {
		raw[i] = e.raw
	}
	return strings.Join(raw, ",")
}
