package etcdclient_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/internal/etcdclient"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

func TestValidate(t *testing.T) {
	pki := etcdtest.GenCerts(t, t.TempDir())
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")
	ep := []string{"127.0.0.1:2379"}
	goodTLS := etcdclient.TLSConfig{CAFile: pki.CAFile, CertFile: pki.ClientCertFile, KeyFile: pki.ClientKeyFile}

	cases := []struct {
		name string
		cfg  etcdclient.Config
		want []string // one message per problem, in order; nil: valid
	}{
		{"host:port", etcdclient.Config{Endpoints: ep}, nil},
		{"urls", etcdclient.Config{Endpoints: []string{"http://10.0.0.1:2379", "http://etcd-2.example.com:2379/", "http://[::1]:2379"}}, nil},
		{"https with files", etcdclient.Config{Endpoints: []string{"https://10.0.0.1:2379"}, TLS: goodTLS, Username: "root", Password: "pw", DialTimeout: time.Second}, nil},
		{"https with system roots", etcdclient.Config{Endpoints: []string{"https://etcd.example.com:2379"}}, nil},
		{"dns srv", etcdclient.Config{DNSSRV: "example.com", TLS: goodTLS}, nil},
		{"nothing", etcdclient.Config{}, []string{
			`etcdclient: etcd.endpoints: empty and etcd.dns_srv not set; give at least one endpoint (want http://host:port, https://host:port or host:port) or a DNS SRV domain`}},
		{"both", etcdclient.Config{Endpoints: ep, DNSSRV: "example.com"}, []string{
			`etcdclient: etcd.dns_srv "example.com": set together with etcd.endpoints; use one or the other`}},
		{"bad dns srv", etcdclient.Config{DNSSRV: "https://example.com"}, []string{
			`etcdclient: etcd.dns_srv "https://example.com": want a DNS name such as example.com`}},
		{"empty endpoint", etcdclient.Config{Endpoints: []string{""}}, []string{
			`etcdclient: etcd.endpoints[0] "": empty; want http://host:port, https://host:port or host:port`}},
		{"scheme", etcdclient.Config{Endpoints: []string{"127.0.0.1:2379", "unix:///run/etcd.sock"}}, []string{
			`etcdclient: etcd.endpoints[1] "unix:///run/etcd.sock": scheme "unix" not supported; want http://host:port, https://host:port or host:port`}},
		{"no port", etcdclient.Config{Endpoints: []string{"http://10.0.0.1"}}, []string{
			`etcdclient: etcd.endpoints[0] "http://10.0.0.1": no port (address 10.0.0.1: missing port in address); want http://host:port, https://host:port or host:port`}},
		{"port range", etcdclient.Config{Endpoints: []string{"10.0.0.1:65536", "10.0.0.1:0"}}, []string{
			`etcdclient: etcd.endpoints[0] "10.0.0.1:65536": port "65536" not in 1-65535`,
			`etcdclient: etcd.endpoints[1] "10.0.0.1:0": port "0" not in 1-65535`}},
		{"path", etcdclient.Config{Endpoints: []string{"http://10.0.0.1:2379/v3"}}, []string{
			`etcdclient: etcd.endpoints[0] "http://10.0.0.1:2379/v3": unexpected user, path, query or fragment in "10.0.0.1:2379/v3"; want http://host:port, https://host:port or host:port`}},
		{"bad host", etcdclient.Config{Endpoints: []string{"etcd_1!:2379"}}, []string{
			`etcdclient: etcd.endpoints[0] "etcd_1!:2379": host "etcd_1!" is neither an IP address nor a DNS name`}},
		{"mixed schemes", etcdclient.Config{Endpoints: []string{"http://10.0.0.1:2379", "https://10.0.0.2:2379"}}, []string{
			`etcdclient: etcd.endpoints: mixes http:// and https:// endpoints; the etcd client uses one transport for all, so use one scheme`}},
		{"tls with http", etcdclient.Config{Endpoints: []string{"http://10.0.0.1:2379"}, TLS: goodTLS}, []string{
			`etcdclient: etcd.tls: set, but every endpoint is http://, so TLS would not be used; use https://host:port or host:port endpoints`}},
		{"user without password", etcdclient.Config{Endpoints: ep, Username: "root"}, []string{
			`etcdclient: etcd.password: empty while etcd.username "root" is set; give both or neither`}},
		{"password without user", etcdclient.Config{Endpoints: ep, Password: "secret"}, []string{
			`etcdclient: etcd.username: empty while etcd.password is set; give both or neither`}},
		{"dial timeout", etcdclient.Config{Endpoints: ep, DialTimeout: -time.Second}, []string{
			`etcdclient: etcd.dial_timeout -1s: must be at least 100ms (0 means the default 5s)`}},
		{"missing ca", etcdclient.Config{Endpoints: ep, TLS: etcdclient.TLSConfig{CAFile: missing}}, []string{
			`etcdclient: etcd.tls.ca_file "` + missing + `": open ` + missing + `: no such file or directory`}},
		{"garbage ca", etcdclient.Config{Endpoints: ep, TLS: etcdclient.TLSConfig{CAFile: garbage}}, []string{
			`etcdclient: etcd.tls.ca_file "` + garbage + `": no PEM certificate found`}},
		{"cert without key", etcdclient.Config{Endpoints: ep, TLS: etcdclient.TLSConfig{CertFile: pki.ClientCertFile}}, []string{
			`etcdclient: etcd.tls.key_file: empty while etcd.tls.cert_file "` + pki.ClientCertFile + `" is set; give both or neither`}},
		{"key without cert", etcdclient.Config{Endpoints: ep, TLS: etcdclient.TLSConfig{KeyFile: pki.ClientKeyFile}}, []string{
			`etcdclient: etcd.tls.cert_file: empty while etcd.tls.key_file "` + pki.ClientKeyFile + `" is set; give both or neither`}},
		{"key of another cert", etcdclient.Config{Endpoints: ep, TLS: etcdclient.TLSConfig{CertFile: pki.ClientCertFile, KeyFile: pki.ServerKeyFile}}, []string{
			`etcdclient: etcd.tls.cert_file "` + pki.ClientCertFile + `": cannot be used with etcd.tls.key_file "` + pki.ServerKeyFile + `": tls: private key does not match public key`}},
		{"server name", etcdclient.Config{Endpoints: ep, TLS: etcdclient.TLSConfig{ServerName: "https://etcd"}}, []string{
			`etcdclient: etcd.tls.server_name "https://etcd": want a host name or IP address`}},
		{"several problems", etcdclient.Config{Endpoints: []string{"ftp://x:1"}, Username: "root", DialTimeout: time.Millisecond}, []string{
			`etcdclient: etcd.endpoints[0] "ftp://x:1": scheme "ftp" not supported; want http://host:port, https://host:port or host:port`,
			`etcdclient: etcd.password: empty while etcd.username "root" is set; give both or neither`,
			`etcdclient: etcd.dial_timeout 1ms: must be at least 100ms (0 means the default 5s)`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tc.want)
			}
			if got := strings.Split(err.Error(), "\n"); !equal(got, tc.want) {
				t.Errorf("Validate() =\n%s\nwant\n%s", err, strings.Join(tc.want, "\n"))
			}
			var fe *etcdclient.FieldError
			if !errors.As(err, &fe) || !etcdclient.Permanent(err) {
				t.Errorf("Validate() error is not a permanent *FieldError: %T", err)
			}
			if _, nerr := etcdclient.New(t.Context(), tc.cfg); nerr == nil || nerr.Error() != err.Error() {
				t.Errorf("New() = %v, want the Validate error", nerr)
			}
		})
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
