package etcdclient_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/internal/etcdclient"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

func startSecure(t *testing.T) (*etcdtest.Server, *etcdtest.Certs) { return etcdtest.StartSecure(t) }

func TestTLSAndAuth(t *testing.T) {
	s, c := startSecure(t)
	ep := s.ClientURL
	hostPort := strings.TrimPrefix(ep, "https://")
	good := etcdclient.TLSConfig{CAFile: c.CAFile, CertFile: c.ClientCertFile, KeyFile: c.ClientKeyFile}
	base := etcdclient.Config{Endpoints: []string{ep}, TLS: good, Username: "root", Password: "pw", DialTimeout: 2 * time.Second}

	t.Run("ok", func(t *testing.T) {
		putGet(t, newChecked(t, base))
	})
	t.Run("host:port uses TLS when configured", func(t *testing.T) {
		cfg := base
		cfg.Endpoints = []string{hostPort}
		putGet(t, newChecked(t, cfg))
	})
	t.Run("server name", func(t *testing.T) {
		cfg := base
		cfg.TLS.ServerName = "etcd.example.test" // in the certificate; the endpoint is an IP
		putGet(t, newChecked(t, cfg))
	})
	t.Run("client certificate alone", func(t *testing.T) {
		cfg := base
		cfg.Username, cfg.Password = "", "" // the certificate's CN is the user
		putGet(t, newChecked(t, cfg))
	})

	cases := []struct {
		name string
		edit func(*etcdclient.Config, *etcdtest.Certs)
		ep   string
		kind etcdclient.Kind
		want []string
	}{
		{"wrong password", func(c *etcdclient.Config, pki *etcdtest.Certs) { c.Password = "wrong" }, ep, etcdclient.KindAuth,
			[]string{`authentication failed for user "root": invalid user ID or password`}},
		{"unknown user", func(c *etcdclient.Config, pki *etcdtest.Certs) { c.Username = "nobody" }, ep, etcdclient.KindAuth,
			[]string{`authentication failed for user "nobody"`}},
		{"wrong CA", func(c *etcdclient.Config, pki *etcdtest.Certs) { c.TLS.CAFile = pki.OtherCAFile }, ep, etcdclient.KindTLS,
			[]string{"TLS handshake failed: x509: certificate signed by unknown authority"}},
		{"no client certificate", func(c *etcdclient.Config, pki *etcdtest.Certs) { c.TLS.CertFile, c.TLS.KeyFile = "", "" }, ep, etcdclient.KindTLS,
			[]string{"TLS handshake failed", "certificate required"}},
		{"client certificate of another CA", func(c *etcdclient.Config, pki *etcdtest.Certs) {
			c.TLS.CertFile, c.TLS.KeyFile = pki.OtherClientCertFile, pki.OtherClientKeyFile
		}, ep, etcdclient.KindTLS, []string{"TLS handshake failed", "unknown certificate authority"}},
		{"wrong server name", func(c *etcdclient.Config, pki *etcdtest.Certs) { c.TLS.ServerName = "etcd.example.com" }, ep, etcdclient.KindTLS,
			[]string{"TLS handshake failed: x509: certificate is valid for", "not etcd.example.com"}},
		{"plain http to a TLS server", func(c *etcdclient.Config, pki *etcdtest.Certs) {
			c.Endpoints, c.TLS = []string{"http://" + hostPort}, etcdclient.TLSConfig{}
		}, "http://" + hostPort, etcdclient.KindTLS, []string{"use an https:// endpoint"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.edit(&cfg, c)
			err, took := checkErr(t, cfg)
			wantConnError(t, err, tc.ep, tc.kind, tc.want...)
			if took > cfg.DialTimeout+slack {
				t.Errorf("took %s, want at most %s", took, cfg.DialTimeout+slack)
			}
		})
	}
}

func TestAuthWithoutTLS(t *testing.T) {
	s := etcdtest.StartServer(t, etcdtest.ServerOptions{})
	for _, args := range [][]string{{"user", "add", "root:pw", "--interactive=false"}, {"auth", "enable"}} {
		if _, err := etcdtest.Etcdctl(t, s.ClientURL, args...); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("ok", func(t *testing.T) {
		cfg := etcdclient.Config{Endpoints: []string{s.ClientURL}, Username: "root", Password: "pw"}
		putGet(t, newChecked(t, cfg))
	})
	t.Run("no user", func(t *testing.T) {
		err, _ := checkErr(t, etcdclient.Config{Endpoints: []string{s.ClientURL}})
		wantConnError(t, err, s.ClientURL, etcdclient.KindAuth, "authentication failed (no user name configured): user name is empty")
	})
}
