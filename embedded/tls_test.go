package embedded

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// tlsConfig is validConfig with client and peer TLS on https loopback URLs.
func tlsConfig(pki *etcdtest.Certs) Config {
	c := validConfig()
	c.ListenClientURLs = []string{"https://127.0.0.1:2379"}
	c.ListenPeerURLs = []string{"https://127.0.0.1:2380"}
	c.ClientTLS = TLS{CertFile: pki.ServerCertFile, KeyFile: pki.ServerKeyFile, TrustedCAFile: pki.CAFile, ClientCertAuth: true}
	c.PeerTLS = TLS{CertFile: pki.ServerCertFile, KeyFile: pki.ServerKeyFile, TrustedCAFile: pki.CAFile, ClientCertAuth: true}
	return c
}

// TestValidateTLS checks the rules of the TLS fields: one message per
// mistake, naming the field, the value and what is allowed.
func TestValidateTLS(t *testing.T) {
	pki := etcdtest.GenCerts(t, t.TempDir())
	notPEM := filepath.Join(t.TempDir(), "ca.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")
	serverOnly, serverOnlyKey := serverOnlyCert(t, pki)
	tests := []struct {
		name   string
		modify func(*Config)
		want   []string // the messages, each in full or its start; none: valid
	}{
		{"client and peer TLS", func(*Config) {}, nil},
		{"without client cert auth", func(c *Config) { c.ClientTLS.ClientCertAuth, c.PeerTLS.ClientCertAuth = false, false }, nil},
		{"without CA", func(c *Config) { c.ClientTLS = TLS{CertFile: pki.ServerCertFile, KeyFile: pki.ServerKeyFile} }, nil},
		{"peer TLS only", func(c *Config) {
			c.ListenClientURLs = []string{"http://127.0.0.1:2379"}
			c.ClientTLS = TLS{}
		}, nil},
		{"static cluster over https", func(c *Config) {
			c.InitialCluster = "n1=https://127.0.0.1:2380,n2=https://127.0.0.2:2380"
		}, nil},
		{"join over https", func(c *Config) { c.Join = []string{"https://10.0.0.1:2379"} }, nil},
		{"https without certificate", func(c *Config) {
			c.ClientTLS = TLS{}
			c.AdvertiseClientURLs = []string{"https://127.0.0.1:2379"}
		}, []string{`embedded.cert_file: "" must be set, with embedded.key_file, for embedded.listen_client_urls[0] "https://127.0.0.1:2379", which uses https; or use http`}},
		{"http with certificate", func(c *Config) {
			c.ListenClientURLs = []string{"https://127.0.0.1:2379", "http://127.0.0.1:2381"}
			c.InitialCluster = "n1=https://127.0.0.1:2380,n2=http://127.0.0.2:2380"
		}, []string{
			`embedded.listen_client_urls[1]: "http://127.0.0.1:2381" must use https, since embedded.cert_file is set: etcd would serve it without TLS`,
			`embedded.initial_cluster: member "n2": "http://127.0.0.2:2380" must use https, since embedded.peer_cert_file is set: etcd would serve it without TLS`,
		}},
		{"join over http with client TLS", func(c *Config) { c.Join = []string{"http://10.0.0.1:2379"} },
			[]string{`embedded.join[0]: "http://10.0.0.1:2379" must use https, since embedded.cert_file is set`}},
		{"certificate without key", func(c *Config) { c.PeerTLS.KeyFile = "" },
			[]string{`embedded.peer_key_file: "" must be set with embedded.peer_cert_file "` + pki.ServerCertFile + `"`}},
		{"key without certificate", func(c *Config) { c.ClientTLS.CertFile = "" },
			[]string{`embedded.cert_file: "" must be set with embedded.key_file "` + pki.ServerKeyFile + `"`}},
		{"key of another certificate", func(c *Config) { c.ClientTLS.KeyFile = pki.ClientKeyFile },
			[]string{`embedded.cert_file: "` + pki.ServerCertFile + `" cannot be used with embedded.key_file "` + pki.ClientKeyFile + `": tls: private key does not match public key`}},
		{"certificate file missing", func(c *Config) { c.PeerTLS.CertFile = missing },
			[]string{`embedded.peer_cert_file: "` + missing + `" cannot be used with embedded.peer_key_file`}},
		{"CA file missing", func(c *Config) { c.ClientTLS.TrustedCAFile = missing },
			[]string{`embedded.trusted_ca_file: "` + missing + `" cannot be read: no such file or directory`}},
		{"CA file not PEM", func(c *Config) { c.PeerTLS.TrustedCAFile = notPEM },
			[]string{`embedded.peer_trusted_ca_file: "` + notPEM + `" holds no PEM certificate`}},
		{"client cert auth without CA", func(c *Config) { c.ClientTLS.TrustedCAFile = "" },
			[]string{`embedded.trusted_ca_file: "" must be set when embedded.client_cert_auth is true: it signs the client certificates the member accepts`}},
		{"client cert auth without certificate", func(c *Config) {
			c.ListenPeerURLs = []string{"http://127.0.0.1:2380"}
			c.PeerTLS = TLS{ClientCertAuth: true}
		}, []string{`embedded.peer_client_cert_auth: true needs embedded.peer_cert_file and embedded.peer_key_file, which are empty: without them the member serves no TLS`}},
		{"CA without certificate", func(c *Config) {
			c.ListenPeerURLs = []string{"http://127.0.0.1:2380"}
			c.PeerTLS = TLS{TrustedCAFile: pki.CAFile}
		}, []string{`embedded.peer_trusted_ca_file: "` + pki.CAFile + `" needs embedded.peer_cert_file and embedded.peer_key_file, which are empty`}},
		{"https and CA without certificate: one mistake", func(c *Config) { c.ClientTLS.CertFile, c.ClientTLS.KeyFile = "", "" },
			[]string{`embedded.cert_file: "" must be set, with embedded.key_file, for embedded.listen_client_urls[0]`}},
		{"certificate of another CA", func(c *Config) {
			c.PeerTLS.CertFile, c.PeerTLS.KeyFile = pki.OtherServerCertFile, pki.OtherServerKeyFile
		}, []string{`embedded.peer_cert_file: "` + pki.OtherServerCertFile + `" is not accepted by embedded.peer_trusted_ca_file "` + pki.CAFile +
			`" for serving: x509: certificate signed by unknown authority`}},
		{"certificate not for serving", func(c *Config) {
			c.ClientTLS.CertFile, c.ClientTLS.KeyFile = pki.ClientCertFile, pki.ClientKeyFile
		}, []string{`embedded.cert_file: "` + pki.ClientCertFile + `" is not accepted by embedded.trusted_ca_file "` + pki.CAFile +
			`" for serving: x509: certificate specifies an incompatible key usage`}},
		{"certificate not for clients", func(c *Config) {
			c.ClientTLS.CertFile, c.ClientTLS.KeyFile = serverOnly, serverOnlyKey
		}, []string{`embedded.cert_file: "` + serverOnly + `" is not accepted by embedded.trusted_ca_file "` + pki.CAFile +
			`" as a client certificate (the sidecar and the member present it to members): x509: certificate specifies an incompatible key usage`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tlsConfig(pki)
			tt.modify(&c)
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.want)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("Validate() gave %d messages, want %d:\n%v", len(lines), len(tt.want), err)
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(lines[i], w) {
					t.Errorf("message %d =\n%s\nwant it to start with\n%s", i, lines[i], w)
				}
			}
		})
	}
}

// TestEmbedConfigTLS checks that the TLS files reach etcd's configuration,
// and that a side without certificate stays plain.
func TestEmbedConfigTLS(t *testing.T) {
	pki := etcdtest.GenCerts(t, t.TempDir())
	c := tlsConfig(pki)
	c.ListenClientURLs = []string{"http://127.0.0.1:2379"}
	c.ClientTLS = TLS{}
	ec := c.withDefaults().embedConfig(nil, "n1=https://127.0.0.1:2380", "new")
	if !ec.ClientTLSInfo.Empty() {
		t.Errorf("client TLS = %s, want none", ec.ClientTLSInfo)
	}
	p := ec.PeerTLSInfo
	if p.CertFile != pki.ServerCertFile || p.KeyFile != pki.ServerKeyFile || p.TrustedCAFile != pki.CAFile || !p.ClientCertAuth {
		t.Errorf("peer TLS = %s, want the configured files with client-cert-auth", p)
	}
}

// TestNoteTLS checks which TLS failure a start-up error names: the last
// one that says why a certificate was refused, else the last TLS alert.
func TestNoteTLS(t *testing.T) {
	const (
		x509Err = `Get "https://127.0.0.1:1/members": tls: failed to verify certificate: x509: certificate signed by unknown authority`
		alert   = "remote error: tls: bad certificate"
	)
	tests := []struct {
		name string
		logs []string
		want string
	}{
		{"none", []string{"dial tcp 127.0.0.1:1: connect: connection refused"}, ""},
		{"alert", []string{alert}, alert},
		{"x509 kept over a later alert", []string{x509Err, alert}, x509Err},
		{"x509 after an alert", []string{alert, x509Err}, x509Err},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st lifeState
			for _, l := range tt.logs {
				st.noteTLS(l)
			}
			if got := st.tlsFailure(); got != tt.want {
				t.Errorf("tlsFailure() = %q, want %q", got, tt.want)
			}
		})
	}
}

// serverOnlyCert writes server-only.pem and server-only-key.pem into pki's
// dir: a certificate for 127.0.0.1 signed by pki's CA, for serving only (no
// client-auth usage).
func serverOnlyCert(t *testing.T, pki *etcdtest.Certs) (certFile, keyFile string) {
	t.Helper()
	ca, err := tls.LoadX509KeyPair(pki.CAFile, pki.CAKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "server only"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Leaf, &key.PublicKey, ca.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(pki.Dir, "server-only.pem"), filepath.Join(pki.Dir, "server-only-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
