package sidecar

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

func joinConfig(t *testing.T, srv *etcdtest.Server) Config {
	t.Helper()
	cfg := Defaults()
	cfg.Name = "j1"
	cfg.DataDir = t.TempDir()
	cfg.Etcd.Endpoints = []string{srv.ClientURL}
	cfg.Etcd.DialTimeout = 2 * time.Second
	cfg.API.Socket = filepath.Join(shortDir(t), "s.sock")
	cfg.Log.Level = "error"
	return cfg
}

// Join mode with client TLS and auth, the password read from password_file.
func TestDaemonJoinTLSAuth(t *testing.T) {
	srv, certs := etcdtest.StartSecure(t)
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte(etcdtest.SecurePassword+"\n"), 0o600)
	cfg := joinConfig(t, srv)
	cfg.Etcd.Username, cfg.Etcd.PasswordFile = etcdtest.ClientUser, pwFile
	cfg.Etcd.TLS = TLSConfig{CAFile: certs.CAFile, CertFile: certs.ClientCertFile, KeyFile: certs.ClientKeyFile}
	r := startDaemon(t, cfg)
	st, err := r.cli.Status(t.Context())
	if err != nil || st.Etcd.Mode != "join" || !st.Etcd.Connected {
		t.Fatalf("status = %+v, %v", st.Etcd, err)
	}
	cl, err := r.cli.Cluster(t.Context())
	if err != nil || len(cl.Members) != 1 || cl.Members[0].Endpoints[0].Error != "" {
		t.Fatalf("cluster over TLS = %+v, %v", cl, err)
	}
}

// A user without rights on the namespace is still connected: etcd answers
// "permission denied" only after the read reached its quorum.
func TestDaemonJoinLimitedUser(t *testing.T) {
	srv, certs := etcdtest.StartSecure(t)
	tlsArgs := []string{"--cacert=" + certs.CAFile, "--cert=" + certs.ClientCertFile, "--key=" + certs.ClientKeyFile}
	for _, args := range [][]string{
		{"role", "add", "app"},
		{"role", "grant-permission", "app", "readwrite", "/app/", "--prefix"},
		{"user", "add", "app:apppw", "--interactive=false"},
		{"user", "grant-role", "app", "app"},
	} {
		if out, err := etcdtest.Etcdctl(t, srv.ClientURL, append(tlsArgs, args...)...); err != nil {
			t.Fatalf("etcdctl %v: %v %s", args, err, out)
		}
	}
	cfg := joinConfig(t, srv)
	cfg.Etcd.Username, cfg.Etcd.Password = "app", "apppw"
	// The server wants a client certificate; the password token decides the user.
	cfg.Etcd.TLS = TLSConfig{CAFile: certs.CAFile, CertFile: certs.ClientCertFile, KeyFile: certs.ClientKeyFile}
	r := startDaemon(t, cfg)
	h, err := r.cli.Health(t.Context())
	if err != nil || !h.Healthy {
		t.Fatalf("health with a limited user = %+v, %v", h, err)
	}
}

// A wrong password or CA is a configuration error: Run ends at once with a
// message naming the endpoint and the cause, instead of retrying for ever.
func TestDaemonJoinPermanentErrors(t *testing.T) {
	srv, certs := etcdtest.StartSecure(t)
	host := strings.TrimPrefix(srv.ClientURL, "https://")
	good := TLSConfig{CAFile: certs.CAFile, CertFile: certs.ClientCertFile, KeyFile: certs.ClientKeyFile}
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"bad password", func(c *Config) { c.Etcd.TLS = good; c.Etcd.Username, c.Etcd.Password = "root", "nope" }, `authentication failed for user "root"`},
		{"bad CA", func(c *Config) {
			c.Etcd.TLS = good
			c.Etcd.TLS.CAFile = certs.OtherCAFile
		}, "x509: certificate signed by unknown authority"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := joinConfig(t, srv)
			tc.mod(&cfg)
			d, err := New(cfg, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err = d.Run(ctx)
			if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), host) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run = %v, want an error naming %s and %q", err, host, tc.want)
			}
			if _, serr := os.Stat(cfg.API.Socket); !os.IsNotExist(serr) {
				t.Fatalf("socket left after failed start: %v", serr)
			}
		})
	}
}
