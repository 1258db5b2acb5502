package embedded

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"slices"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/etcd/server/v3/embed"
)

// TLS names the PEM files of one side of the member, client or peer, as
// etcd's flags do (--cert-file, --key-file, --trusted-ca-file,
// --client-cert-auth and their --peer- twins). Set CertFile and KeyFile to
// serve that side with TLS: its URLs are then https, and only then.
//
// The member also acts as a client with these files: toward other members'
// client URLs (join, promotion) and, through the sidecar, toward itself with
// the client side's files; toward its peers with the peer side's files. It
// trusts TrustedCAFile for the certificates it is shown (empty: the system's
// roots) and presents CertFile as its client certificate when asked.
type TLS struct {
	CertFile      string // PEM certificate, for serving and as client certificate
	KeyFile       string // its private key
	TrustedCAFile string // PEM CA bundle; set, etcd requires client certificates signed by it
	// ClientCertAuth requires client certificates signed by TrustedCAFile
	// (which must then be set); etcd also does so whenever TrustedCAFile is set.
	ClientCertAuth bool
}

// Enabled reports whether the side serves TLS: its certificate or key is
// set (Validate requires both).
func (t TLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// info is etcd's form of t.
func (t TLS) info() transport.TLSInfo {
	return transport.TLSInfo{CertFile: t.CertFile, KeyFile: t.KeyFile, TrustedCAFile: t.TrustedCAFile, ClientCertAuth: t.ClientCertAuth}
}

// clientConfig is the TLS configuration of a client of a member on this
// side (nil without TLS): TrustedCAFile verifies the member, CertFile is the
// client certificate.
func (t TLS) clientConfig() (*tls.Config, error) {
	if !t.Enabled() {
		return nil, nil
	}
	info := t.info()
	info.ClientCertAuth = false
	return info.ClientConfig()
}

// setTLS puts the client and peer TLS files into etcd's configuration.
func (c Config) setTLS(ec *embed.Config) {
	if c.ClientTLS.Enabled() {
		ec.ClientTLSInfo = c.ClientTLS.info()
	}
	if c.PeerTLS.Enabled() {
		ec.PeerTLSInfo = c.PeerTLS.info()
	}
}

// tlsSide names the fields of one side in messages: prefix "" (client) or
// "peer_".
type tlsSide struct {
	prefix string
	t      TLS
}

func (s tlsSide) field(name string) string { return "embedded." + s.prefix + name }

// validate checks the side: its URLs' schemes (see checkSchemes) and its
// files: cert_file and key_file in a pair that loads, a CA bundle that
// parses, client_cert_auth with a CA, and a certificate that the side's own
// CA accepts for serving and as a client (members and the sidecar verify
// each other with it). A side without certificate reports one mistake.
func (s tlsSide) validate(urls []namedURL) []error {
	t := s.t
	if !t.Enabled() {
		return s.checkPlain(urls)
	}
	errs := s.checkSchemes(urls)
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	var pool *x509.CertPool
	if t.TrustedCAFile != "" {
		var err error
		if pool, err = loadCAs(t.TrustedCAFile); err != nil {
			add("%s: %q %v", s.field("trusted_ca_file"), t.TrustedCAFile, err)
		}
	} else if t.ClientCertAuth {
		add(`%s: "" must be set when %s is true: it signs the client certificates the member accepts`, s.field("trusted_ca_file"), s.field("client_cert_auth"))
	}
	var cert *x509.Certificate
	switch {
	case t.CertFile == "":
		add(`%s: "" must be set with %s %q`, s.field("cert_file"), s.field("key_file"), t.KeyFile)
	case t.KeyFile == "":
		add(`%s: "" must be set with %s %q`, s.field("key_file"), s.field("cert_file"), t.CertFile)
	default:
		pair, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			add("%s: %q cannot be used with %s %q: %v", s.field("cert_file"), t.CertFile, s.field("key_file"), t.KeyFile, err)
			break
		}
		cert = pair.Leaf
	}
	if cert != nil && pool != nil {
		if err := verifyOwn(cert, pool); err != nil {
			add("%s: %q is not accepted by %s %q %v", s.field("cert_file"), t.CertFile, s.field("trusted_ca_file"), t.TrustedCAFile, err)
		}
	}
	return errs
}

// checkPlain checks a side without certificate: its URLs must be http, and
// trusted_ca_file and client_cert_auth have no effect. The missing
// certificate is one mistake, reported once, on cert_file.
func (s tlsSide) checkPlain(urls []namedURL) []error {
	for _, u := range urls {
		if p, err := url.Parse(u.value); err == nil && p.Scheme == "https" {
			return []error{fmt.Errorf(`%s: "" must be set, with %s, for %s %q, which uses https; or use http`,
				s.field("cert_file"), s.field("key_file"), u.field, u.value)}
		}
	}
	switch {
	case s.t.TrustedCAFile != "":
		return []error{fmt.Errorf("%s: %q needs %s and %s, which are empty: without them the member serves no TLS",
			s.field("trusted_ca_file"), s.t.TrustedCAFile, s.field("cert_file"), s.field("key_file"))}
	case s.t.ClientCertAuth:
		return []error{fmt.Errorf("%s: true needs %s and %s, which are empty: without them the member serves no TLS",
			s.field("client_cert_auth"), s.field("cert_file"), s.field("key_file"))}
	}
	return nil
}

// checkSchemes checks that every URL of a side with TLS uses https: etcd
// would serve an http URL without TLS although TLS is configured.
func (s tlsSide) checkSchemes(urls []namedURL) []error {
	var errs []error
	for _, u := range urls {
		if p, err := url.Parse(u.value); err == nil && p.Scheme == "http" {
			errs = append(errs, fmt.Errorf("%s: %q must use https, since %s is set: etcd would serve it without TLS",
				u.field, u.value, s.field("cert_file")))
		}
	}
	return errs
}

// loadCAs reads a PEM CA bundle.
func loadCAs(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("cannot be read: %w", errors.Unwrap(err)) // the path is in the message already
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		if blk, _ := pem.Decode(b); blk == nil {
			return nil, errors.New("holds no PEM certificate")
		}
		return nil, errors.New("holds no certificate that parses")
	}
	return pool, nil
}

// verifyOwn checks that cert chains to pool both as a server and as a
// client certificate: members verify each other with their CA, and the
// sidecar and the member present the certificate to members as clients.
func verifyOwn(cert *x509.Certificate, pool *x509.CertPool) error {
	uses := []struct {
		usage x509.ExtKeyUsage
		as    string
	}{
		{x509.ExtKeyUsageServerAuth, "for serving"},
		{x509.ExtKeyUsageClientAuth, "as a client certificate (the sidecar and the member present it to members)"},
	}
	for _, u := range uses {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{u.usage}}); err != nil {
			return fmt.Errorf("%s: %w", u.as, err)
		}
	}
	return nil
}

// namedURL is a URL with the field it was written in, for messages.
type namedURL struct{ field, value string }

// namedURLs names the elements of a list field.
func namedURLs(field string, urls []string) []namedURL {
	out := make([]namedURL, len(urls))
	for i, u := range urls {
		out[i] = namedURL{fmt.Sprintf("embedded.%s[%d]", field, i), u}
	}
	return out
}

// clusterURLs names the peer URLs of an initial cluster string, member by
// member in name order; nil when it does not parse (reported elsewhere).
func clusterURLs(s string) []namedURL {
	m, err := types.NewURLsMap(s)
	if err != nil {
		return nil
	}
	var out []namedURL
	for _, name := range slices.Sorted(maps.Keys(m)) {
		for _, u := range m[name] {
			out = append(out, namedURL{fmt.Sprintf("embedded.initial_cluster: member %q", name), u.String()})
		}
	}
	return out
}
