package etcdtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// ClientUser is the common name of the client certificates made by GenCerts.
// With etcd auth enabled and --client-cert-auth, the common name is the user.
const ClientUser = "root"

// Certs names the PEM files written by GenCerts.
type Certs struct {
	Dir string

	CAFile    string // the CA that signed the server and client certificates
	CAKeyFile string

	ServerCertFile string // SANs 127.0.0.1, ::1, localhost and any extra hosts; server and client auth
	ServerKeyFile  string

	ClientCertFile string // common name ClientUser, signed by CAFile
	ClientKeyFile  string

	OtherCAFile         string // a second CA, unrelated to CAFile
	OtherClientCertFile string // common name ClientUser, signed by OtherCAFile
	OtherClientKeyFile  string
	OtherServerCertFile string // like ServerCertFile, signed by OtherCAFile
	OtherServerKeyFile  string
}

// GenCerts writes a fresh PKI into dir: a CA, a server certificate for the
// loopback addresses (plus extraHosts, IP addresses or DNS names), a client
// certificate with common name ClientUser, and a second, unrelated CA with
// its own client and server certificates. Keys are ECDSA P-256, valid for a
// day. It fails the test on any error.
func GenCerts(t testing.TB, dir string, extraHosts ...string) *Certs {
	t.Helper()
	c := &Certs{Dir: dir}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatalf("etcdtest: certs dir: %v", err)
	}
	ca := newCA(t, "etcdtest CA")
	other := newCA(t, "etcdtest other CA")
	c.CAFile, c.CAKeyFile = writePair(t, dir, "ca", ca)
	c.OtherCAFile, _ = writePair(t, dir, "other-ca", other)

	serverTmpl := leafTemplate("etcdtest server", x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	serverTmpl.DNSNames = []string{"localhost"}
	serverTmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	for _, h := range extraHosts {
		if ip := net.ParseIP(h); ip != nil {
			serverTmpl.IPAddresses = append(serverTmpl.IPAddresses, ip)
		} else {
			serverTmpl.DNSNames = append(serverTmpl.DNSNames, h)
		}
	}
	clientTmpl := leafTemplate(ClientUser, x509.ExtKeyUsageClientAuth)

	c.ServerCertFile, c.ServerKeyFile = writePair(t, dir, "server", ca.sign(t, serverTmpl))
	c.ClientCertFile, c.ClientKeyFile = writePair(t, dir, "client", ca.sign(t, clientTmpl))
	c.OtherServerCertFile, c.OtherServerKeyFile = writePair(t, dir, "other-server", other.sign(t, serverTmpl))
	c.OtherClientCertFile, c.OtherClientKeyFile = writePair(t, dir, "other-client", other.sign(t, clientTmpl))
	return c
}

// keyPair is a certificate with its private key.
type keyPair struct {
	cert *x509.Certificate
	der  []byte
	key  *ecdsa.PrivateKey
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("etcdtest: generate key: %v", err)
	}
	return key
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatalf("etcdtest: serial: %v", err)
	}
	return n
}

func newCA(t testing.TB, name string) *keyPair {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("etcdtest: create CA %s: %v", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("etcdtest: parse CA %s: %v", name, err)
	}
	return &keyPair{cert: cert, der: der, key: key}
}

func leafTemplate(cn string, usage ...x509.ExtKeyUsage) *x509.Certificate {
	return &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		NotBefore:   time.Now().Add(-time.Hour),
		NotAfter:    time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: usage,
	}
}

// sign issues a certificate for tmpl, with a new key, signed by ca.
func (ca *keyPair) sign(t testing.TB, tmpl *x509.Certificate) *keyPair {
	t.Helper()
	key := newKey(t)
	leaf := *tmpl
	leaf.SerialNumber = serial(t)
	der, err := x509.CreateCertificate(rand.Reader, &leaf, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatalf("etcdtest: sign %s: %v", tmpl.Subject.CommonName, err)
	}
	return &keyPair{der: der, key: key}
}

// writePair writes NAME.pem and NAME-key.pem into dir and returns their paths.
func writePair(t testing.TB, dir, name string, kp *keyPair) (certFile, keyFile string) {
	t.Helper()
	keyDER, err := x509.MarshalPKCS8PrivateKey(kp.key)
	if err != nil {
		t.Fatalf("etcdtest: marshal key %s: %v", name, err)
	}
	certFile = filepath.Join(dir, name+".pem")
	keyFile = filepath.Join(dir, name+"-key.pem")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: kp.der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		t.Fatalf("etcdtest: write %s: %v", certFile, err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatalf("etcdtest: write %s: %v", keyFile, err)
	}
	return certFile, keyFile
}
