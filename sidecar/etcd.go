package sidecar

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/connectivity"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/embedded"
	"github.com/sidecar-dev/sidecar/internal/etcdclient"
	"github.com/sidecar-dev/sidecar/internal/liveness"
	"github.com/sidecar-dev/sidecar/internal/retry"
)

// EmbeddedMember maps the embedded section onto the embedded package's Config.
func (c *Config) EmbeddedMember() embedded.Config {
	e := c.Embedded
	return embedded.Config{
		Name:                     e.Name,
		DataDir:                  e.DataDir,
		ListenClientURLs:         e.ListenClientURLs,
		AdvertiseClientURLs:      e.AdvertiseClientURLs,
		ListenPeerURLs:           e.ListenPeerURLs,
		InitialAdvertisePeerURLs: e.InitialAdvertisePeerURLs,
		InitialCluster:           e.InitialCluster,
		InitialClusterToken:      e.InitialClusterToken,
		InitialClusterState:      e.InitialClusterState,
		Join:                     e.Join,
		DiscoverySRV:             e.DiscoverySRV,
		HeartbeatInterval:        e.HeartbeatInterval,
		ElectionTimeout:          e.ElectionTimeout,
		SnapshotCount:            e.SnapshotCount,
		AutoCompactionRetention:  e.AutoCompactionRetention,
		QuotaBackendBytes:        int64(e.QuotaBackendBytes),
		StartTimeout:             e.StartTimeout,
		ClientTLS: embedded.TLS{
			CertFile: e.CertFile, KeyFile: e.KeyFile, TrustedCAFile: e.TrustedCAFile, ClientCertAuth: e.ClientCertAuth,
		},
		PeerTLS: embedded.TLS{
			CertFile: e.PeerCertFile, KeyFile: e.PeerKeyFile, TrustedCAFile: e.PeerTrustedCAFile, ClientCertAuth: e.PeerClientCertAuth,
		},
	}
}

// ClientConfig maps the etcd section onto the client package's Config (join
// mode), reading password_file, and validates it.
func (c *Config) ClientConfig() (etcdclient.Config, error) {
	e := c.Etcd
	cc := etcdclient.Config{
		Endpoints:   e.Endpoints,
		DNSSRV:      e.DNSSRV,
		Username:    e.Username,
		Password:    e.Password,
		TLS:         etcdclient.TLSConfig(e.TLS),
		DialTimeout: e.DialTimeout,
	}
	var errs []error
	if e.PasswordFile != "" {
		if e.Password != "" {
			errs = append(errs, fmt.Errorf("etcd.password_file: %q: set either etcd.password or etcd.password_file, not both", e.PasswordFile))
		}
		b, err := os.ReadFile(e.PasswordFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("etcd.password_file: %q: %v", e.PasswordFile, err))
		}
		cc.Password = strings.TrimRight(string(b), "\r\n")
	}
	if err := cc.Validate(); err != nil {
		errs = append(errs, err)
	}
	return cc, errors.Join(errs...)
}

// etcdConn is the daemon's view of its etcd connection; safe for concurrent use.
type etcdConn struct {
	live atomic.Pointer[liveness.Monitor] // set once the client is up

	mu        sync.RWMutex
	cli       *clientv3.Client
	member    *embedded.Member
	endpoints []string
	lastErr   error
	connState connectivity.State
	alarms    []api.Alarm // etcd's active alarms, as last asked (watchAlarms)
}

func (e *etcdConn) client() *clientv3.Client {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.cli
}

// setMember records the embedded member as soon as it is made, before it
// serves, so that status and health can say what its start-up waits for.
func (e *etcdConn) setMember(m *embedded.Member) {
	e.mu.Lock()
	e.member = m
	e.mu.Unlock()
}

// waiting returns what the embedded member's start-up waits for, or "".
// It never waits on etcd.
func (e *etcdConn) waiting() string {
	e.mu.RLock()
	m := e.member
	e.mu.RUnlock()
	if m == nil {
		return ""
	}
	return m.Waiting()
}

func (e *etcdConn) setErr(err error) {
	e.mu.Lock()
	e.lastErr = err
	e.mu.Unlock()
}

// liveness returns what the monitor knows, and false before the client is
// up. It never waits on etcd.
func (e *etcdConn) liveness() (liveness.State, bool) {
	m := e.live.Load()
	if m == nil {
		return liveness.State{}, false
	}
	return m.State(), true
}

// up reports whether etcd answers now, for the metrics.
func (e *etcdConn) up() bool {
	st, ok := e.liveness()
	return ok && st.Up
}

// connect builds the client and proves etcd answers, retrying transient
// failures (refused, timeout, no leader) for ever with capped, jittered
// backoff; TLS and auth failures are configuration errors and end it.
func (d *Daemon) connect(ctx context.Context, cc etcdclient.Config) (*clientv3.Client, error) {
	cc.DialOptions = append(cc.DialOptions, d.metrics.dialOptions()...)
	cc.Logger = d.log
	bo := retry.Backoff{Base: 200 * time.Millisecond, Max: 5 * time.Second}
	for {
		cli, err := etcdclient.New(ctx, cc)
		if err == nil {
			if err = etcdclient.Check(ctx, cli, cc); err != nil {
				cli.Close()
			} else {
				d.metrics.connAttempts.WithLabelValues("ok").Inc()
				return cli, nil
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		d.metrics.connAttempts.WithLabelValues(errorKind(err)).Inc()
		d.etcd.setErr(err)
		if etcdclient.Permanent(err) {
			return nil, err
		}
		wait := bo.Next()
		d.log.Warn("etcd not reachable, retrying", "reason", describeEtcdErr(err), "wait_s", wait.Seconds())
		if !retry.Sleep(ctx, wait) {
			return nil, ctx.Err()
		}
	}
}

// describeEtcdErr is err in the user's words: what it says of each failing
// endpoint or configuration field (etcdclient.Reasons), else err as is.
func describeEtcdErr(err error) string {
	if r := etcdclient.Reasons(err); len(r) > 0 {
		return strings.Join(r, "; ")
	}
	return err.Error()
}

func errorKind(err error) string {
	var ce *etcdclient.ConnError
	if errors.As(err, &ce) {
		return ce.Kind.String()
	}
	return "error"
}

// connStates are the gRPC connectivity states, each a series of
// sidecar_etcd_connection_state, so that {state="READY"} == 0 can fire.
var connStates = []connectivity.State{connectivity.Idle, connectivity.Connecting, connectivity.Ready,
	connectivity.TransientFailure, connectivity.Shutdown}

// setConnState sets the series of s to 1 and every other state's to 0.
func setConnState(g *prometheus.GaugeVec, s connectivity.State) {
	for _, c := range connStates {
		v := 0.0
		if c == s {
			v = 1
		}
		g.WithLabelValues(c.String()).Set(v)
	}
}

// watchConnState mirrors the gRPC connectivity state into status and
// metrics; it is event driven and sends nothing to etcd.
func (d *Daemon) watchConnState(ctx context.Context, cli *clientv3.Client) {
	conn := cli.ActiveConnection()
	for {
		s := conn.GetState()
		d.etcd.mu.Lock()
		d.etcd.connState = s
		d.etcd.mu.Unlock()
		setConnState(d.metrics.connState, s)
		if !conn.WaitForStateChange(ctx, s) {
			return
		}
	}
}

// memberClientConfig is the daemon's client of its embedded member: the
// member's advertised client URLs and, when it serves TLS, its client-side
// files as the embedded package says a client of it uses them (the trusted
// CA verifies the member, the member's certificate is the client
// certificate, which client_cert_auth requires).
func memberClientConfig(m *embedded.Member, dialTimeout time.Duration) etcdclient.Config {
	t := m.ClientTLS()
	return etcdclient.Config{
		Endpoints:   m.ClientURLs(),
		DialTimeout: dialTimeout,
		TLS:         etcdclient.TLSConfig{CAFile: t.TrustedCAFile, CertFile: t.CertFile, KeyFile: t.KeyFile},
	}
}
