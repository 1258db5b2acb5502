package sidecar

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// tlsEmbeddedConfig is embeddedConfig with client and peer TLS on https
// URLs, client certificates required on both sides.
func tlsEmbeddedConfig(t *testing.T, pki *etcdtest.Certs) Config {
	t.Helper()
	cfg := embeddedConfig(t)
	e := &cfg.Embedded
	e.ListenClientURLs = []string{fmt.Sprintf("https://127.0.0.1:%d", etcdtest.FreePort(t))}
	e.ListenPeerURLs = []string{fmt.Sprintf("https://127.0.0.1:%d", etcdtest.FreePort(t))}
	e.CertFile, e.KeyFile, e.TrustedCAFile, e.ClientCertAuth = pki.ServerCertFile, pki.ServerKeyFile, pki.CAFile, true
	e.PeerCertFile, e.PeerKeyFile, e.PeerTrustedCAFile, e.PeerClientCertAuth = pki.ServerCertFile, pki.ServerKeyFile, pki.CAFile, true
	return cfg
}

// The TLS fields are checked with the embedded package's rules, each
// mistake once: an advertise URL derived from a listen URL is not blamed
// again.
func TestValidateEmbeddedTLS(t *testing.T) {
	pki := etcdtest.GenCerts(t, t.TempDir())
	tests := []struct {
		name string
		mod  func(*EmbeddedConfig)
		want []string // the problems, each its start; none: valid
	}{
		{"client and peer TLS", func(*EmbeddedConfig) {}, nil},
		{"http peer url with peer TLS", func(e *EmbeddedConfig) { e.ListenPeerURLs = []string{"http://127.0.0.1:2380"} },
			[]string{`embedded.listen_peer_urls[0]: "http://127.0.0.1:2380" must use https, since embedded.peer_cert_file is set: etcd would serve it without TLS`}},
		{"key of another certificate", func(e *EmbeddedConfig) { e.KeyFile = pki.OtherServerKeyFile },
			[]string{`embedded.cert_file: "` + pki.ServerCertFile + `" cannot be used with embedded.key_file "` + pki.OtherServerKeyFile + `"`}},
		{"certificate of another CA", func(e *EmbeddedConfig) {
			e.PeerCertFile, e.PeerKeyFile = pki.OtherServerCertFile, pki.OtherServerKeyFile
		},
			[]string{`embedded.peer_cert_file: "` + pki.OtherServerCertFile + `" is not accepted by embedded.peer_trusted_ca_file`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tlsEmbeddedConfig(t, pki)
			tc.mod(&c.Embedded)
			if err := c.Complete(); err != nil {
				t.Fatal(err)
			}
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want %q", tc.want)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("problems:\n%v\nwant %d", err, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(lines[i], w) {
					t.Errorf("problem %d = %s\nwant it to start with %s", i, lines[i], w)
				}
			}
		})
	}
}

// A daemon whose embedded member serves client and peer TLS, with client
// certificates required, connects to it over TLS (its client presents the
// member's certificate) and serves the API; the status shows the https
// endpoint.
func TestDaemonEmbeddedTLS(t *testing.T) {
	pki := etcdtest.GenCerts(t, t.TempDir())
	cfg := tlsEmbeddedConfig(t, pki)
	r := startDaemon(t, cfg)
	st, err := r.cli.Status(t.Context())
	if err != nil || !st.Etcd.Connected || st.Etcd.Endpoints[0] != cfg.Embedded.ListenClientURLs[0] {
		t.Fatalf("status = %+v, %v; want connected to %s", st.Etcd, err, cfg.Embedded.ListenClientURLs[0])
	}
	cl, err := r.cli.Cluster(t.Context())
	if err != nil || len(cl.Members) != 1 || cl.Members[0].Endpoints[0].Error != "" {
		t.Fatalf("cluster over TLS = %+v, %v", cl, err)
	}
	if err := r.stop(); err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
}
