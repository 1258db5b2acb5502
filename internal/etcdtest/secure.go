package etcdtest

import "testing"

// SecurePassword is the password of user root on StartSecure's server.
const SecurePassword = "pw"

// StartSecure starts a server that requires client certificates signed by
// the test CA, with auth enabled and user root's password SecurePassword.
func StartSecure(t testing.TB) (*Server, *Certs) {
	t.Helper()
	c := GenCerts(t, t.TempDir(), "etcd.example.test")
	s := StartServer(t, ServerOptions{TLS: &ServerTLS{
		CertFile: c.ServerCertFile, KeyFile: c.ServerKeyFile, TrustedCAFile: c.CAFile, ClientCertAuth: true,
		ClientCertFile: c.ClientCertFile, ClientKeyFile: c.ClientKeyFile,
	}})
	tlsArgs := []string{"--cacert=" + c.CAFile, "--cert=" + c.ClientCertFile, "--key=" + c.ClientKeyFile}
	for _, args := range [][]string{{"user", "add", ClientUser + ":" + SecurePassword, "--interactive=false"}, {"auth", "enable"}} {
		if _, err := Etcdctl(t, s.ClientURL, append(tlsArgs, args...)...); err != nil {
			t.Fatal(err)
		}
	}
	return s, c
}
