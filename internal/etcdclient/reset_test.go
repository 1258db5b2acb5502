package etcdclient_test

import (
	"errors"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/internal/etcdclient"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// connectLoop retries New and Check as the daemon does at start-up: again
// after a transient error, never after a permanent one. before runs ahead
// of each attempt (numbered from 1). It returns the client, closed at
// cleanup, or the first permanent error, and fails the test after 10
// transient ones.
func connectLoop(t *testing.T, cfg etcdclient.Config, before func(attempt int)) (*clientv3.Client, error) {
	t.Helper()
	var err error
	for attempt := 1; attempt <= 10; attempt++ {
		before(attempt)
		var cli *clientv3.Client
		if cli, err = etcdclient.New(t.Context(), cfg); err == nil {
			if err = etcdclient.Check(t.Context(), cli, cfg); err == nil {
				t.Cleanup(func() { cli.Close() })
				return cli, nil
			}
			cli.Close()
		}
		if etcdclient.Permanent(err) {
			return nil, err
		}
		t.Logf("attempt %d, transient: %v", attempt, err)
	}
	t.Fatalf("no connection after 10 attempts: %v", err)
	return nil, err
}

// TestResetDuringTLSHandshake puts a proxy that resets connections in the
// middle of the TLS handshake (as a load balancer does whose etcd is not up
// yet) in front of a TLS etcd: the reset is transient, the daemon's retry
// gets through once the proxy forwards, and a wrong CA behind the same
// address stays a configuration error.
func TestResetDuringTLSHandshake(t *testing.T) {
	s, c := startSecure(t)
	p := etcdtest.StartProxy(t, s.ClientURL)
	ep := p.URL()
	base := etcdclient.Config{
		Endpoints:   []string{ep},
		TLS:         etcdclient.TLSConfig{CAFile: c.CAFile, CertFile: c.ClientCertFile, KeyFile: c.ClientKeyFile},
		DialTimeout: 2 * time.Second,
	}
	withUser := base
	withUser.Username, withUser.Password = etcdtest.ClientUser, etcdtest.SecurePassword

	p.Reset()
	for _, tc := range []struct {
		name string
		cfg  etcdclient.Config
	}{{"check", base}, {"authenticate in New", withUser}} {
		t.Run("reset is transient, "+tc.name, func(t *testing.T) {
			err, took := checkErr(t, tc.cfg)
			ce := wantConnError(t, err, ep, etcdclient.KindUnavailable, "unavailable: the connection was closed during the TLS handshake")
			if !errors.Is(ce, syscall.ECONNRESET) {
				t.Errorf("ConnError %v does not wrap ECONNRESET; the proxy did not reset during the handshake", ce)
			}
			if took > tc.cfg.DialTimeout+slack {
				t.Errorf("took %s, want at most %s", took, tc.cfg.DialTimeout+slack)
			}
		})
	}

	t.Run("retried until etcd answers", func(t *testing.T) {
		p.Reset()
		attempts := 0
		cli, err := connectLoop(t, withUser, func(attempt int) {
			attempts = attempt
			if attempt == 3 {
				p.Heal() // the proxy's backend is up: it forwards from now on
			}
		})
		if err != nil {
			t.Fatalf("permanent error: %v", err)
		}
		if attempts != 3 {
			t.Errorf("connected at attempt %d, want 3 (the first after the proxy healed)", attempts)
		}
		putGet(t, cli)
	})

	t.Run("wrong CA stays permanent", func(t *testing.T) {
		p.Heal()
		cfg := withUser
		cfg.TLS.CAFile = c.OtherCAFile
		_, err := connectLoop(t, cfg, func(int) {})
		wantConnError(t, err, ep, etcdclient.KindTLS, "TLS handshake failed: x509: certificate signed by unknown authority")
	})
}

// TestResetOnPlainEndpoint: a reset on an http:// endpoint is transient
// too, since the server does not answer TLS either.
func TestResetOnPlainEndpoint(t *testing.T) {
	s := etcdtest.StartServer(t, etcdtest.ServerOptions{})
	p := etcdtest.StartProxy(t, s.ClientURL)
	cfg := etcdclient.Config{Endpoints: []string{p.URL()}, DialTimeout: 2 * time.Second}
	p.Reset()
	err, _ := checkErr(t, cfg)
	ce := wantConnError(t, err, p.URL(), etcdclient.KindUnavailable, "unavailable: the connection was closed on an HTTP/2 preface")
	if !errors.Is(ce, syscall.ECONNRESET) {
		t.Errorf("ConnError %v does not wrap ECONNRESET", ce)
	}
	p.Heal()
	putGet(t, newChecked(t, cfg))
}
