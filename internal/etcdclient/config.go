package etcdclient

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
)

// Defaults applied by New and Check to a zero field.
const (
	DefaultDialTimeout = 5 * time.Second
	minDialTimeout     = 100 * time.Millisecond
)

// TLSConfig names the PEM files of the client's TLS: the CA bundle that
// signs the servers' certificates (empty: the system roots), and the client
// certificate and key presented when etcd runs with --client-cert-auth.
type TLSConfig struct {
	CAFile     string
	CertFile   string
	KeyFile    string
	ServerName string // overrides the host name verified in servers' certificates
}

func (t TLSConfig) isZero() bool { return t == TLSConfig{} }

// Config is the etcd section of the sidecar's configuration. The field
// names in messages (etcd.endpoints, etcd.tls.ca_file, ...) are those of the
// YAML file. New and Check only read it, so one Config may be shared by
// goroutines.
type Config struct {
	// Endpoints are http://host:port, https://host:port or host:port (TLS
	// when TLS is configured, plain otherwise). All use one scheme.
	Endpoints []string
	// DNSSRV is a domain whose SRV records give the endpoints:
	// _etcd-client-ssl._tcp.<domain> (https) if it has any, else
	// _etcd-client._tcp.<domain> (http); etcdctl --discovery-srv reads the
	// same records. Looked up once, by New. Exclusive with Endpoints.
	DNSSRV string
	// Resolver is used for the DNS SRV lookup and for diagnosing endpoints'
	// host names; nil means net.DefaultResolver. gRPC resolves host names
	// with the system resolver.
	Resolver *net.Resolver

	Username string
	Password string // both or neither
	TLS      TLSConfig

	// DialTimeout bounds New's authentication and each Check; default 5s.
	DialTimeout time.Duration
	// DialOptions are appended to the client's gRPC dial options, e.g.
	// metrics interceptors. They are not used by diagnostic probes.
	DialOptions []grpc.DialOption
	// Logger receives debug records about diagnosis; nil discards them.
	Logger *slog.Logger
}

// FieldError is one problem with a Config field.
type FieldError struct {
	Field  string // e.g. "etcd.endpoints[1]"
	Value  string // the offending value, quoted if a string; empty: not shown
	Reason string // what is wrong and what is allowed
	Err    error  // underlying error, if any
}

func (e *FieldError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("etcdclient: %s: %s", e.Field, e.Reason)
	}
	return fmt.Sprintf("etcdclient: %s %s: %s", e.Field, e.Value, e.Reason)
}

func (e *FieldError) Unwrap() error { return e.Err }

const endpointForm = "want http://host:port, https://host:port or host:port"

// Validate checks the configuration, including that the TLS files exist
// and parse. It returns every problem found, joined; each is a *FieldError
// naming the field, the value and what is allowed.
func (c Config) Validate() error {
	var errs []error
	add := func(field, value, reason string, err error) {
		errs = append(errs, &FieldError{Field: field, Value: value, Reason: reason, Err: err})
	}
	switch {
	case len(c.Endpoints) == 0 && c.DNSSRV == "":
		add("etcd.endpoints", "", "empty and etcd.dns_srv not set; give at least one endpoint ("+endpointForm+") or a DNS SRV domain", nil)
	case len(c.Endpoints) > 0 && c.DNSSRV != "":
		add("etcd.dns_srv", strconv.Quote(c.DNSSRV), "set together with etcd.endpoints; use one or the other", nil)
	case c.DNSSRV != "":
		if reason := checkDomain(c.DNSSRV); reason != "" {
			add("etcd.dns_srv", strconv.Quote(c.DNSSRV), reason, nil)
		}
	}
	errs = append(errs, c.validateEndpoints()...)
	switch {
	case c.Username != "" && c.Password == "":
		add("etcd.password", "", fmt.Sprintf("empty while etcd.username %q is set; give both or neither", c.Username), nil)
	case c.Username == "" && c.Password != "":
		add("etcd.username", "", "empty while etcd.password is set; give both or neither", nil)
	}
	if c.DialTimeout != 0 && c.DialTimeout < minDialTimeout {
		add("etcd.dial_timeout", c.DialTimeout.String(), fmt.Sprintf("must be at least %s (0 means the default %s)", minDialTimeout, DefaultDialTimeout), nil)
	}
	errs = append(errs, c.TLS.validate()...)
	return errors.Join(errs...)
}

// validateEndpoints checks each endpoint and that they share one scheme.
func (c Config) validateEndpoints() []error {
	var errs []error
	schemes := map[string]bool{}
	for i, ep := range c.Endpoints {
		field := fmt.Sprintf("etcd.endpoints[%d]", i)
		e, reason := parseEndpoint(ep)
		if reason != "" {
			errs = append(errs, &FieldError{Field: field, Value: strconv.Quote(ep), Reason: reason})
			continue
		}
		schemes[e.scheme] = true
	}
	if schemes["http"] && schemes["https"] {
		errs = append(errs, &FieldError{Field: "etcd.endpoints", Reason: "mixes http:// and https:// endpoints; the etcd client uses one transport for all, so use one scheme"})
	}
	if schemes["http"] && len(schemes) == 1 && !c.TLS.isZero() {
		errs = append(errs, &FieldError{Field: "etcd.tls", Reason: "set, but every endpoint is http://, so TLS would not be used; use https://host:port or host:port endpoints"})
	}
	return errs
}

// validate checks that the TLS files are given in pairs, exist and parse.
func (t TLSConfig) validate() []error {
	var errs []error
	add := func(field, value, reason string, err error) {
		errs = append(errs, &FieldError{Field: field, Value: value, Reason: reason, Err: err})
	}
	if t.CAFile != "" {
		if pem, err := os.ReadFile(t.CAFile); err != nil {
			add("etcd.tls.ca_file", strconv.Quote(t.CAFile), err.Error(), err)
		} else if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			add("etcd.tls.ca_file", strconv.Quote(t.CAFile), "no PEM certificate found", nil)
		}
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		add("etcd.tls.key_file", "", fmt.Sprintf("empty while etcd.tls.cert_file %q is set; give both or neither", t.CertFile), nil)
	case t.CertFile == "" && t.KeyFile != "":
		add("etcd.tls.cert_file", "", fmt.Sprintf("empty while etcd.tls.key_file %q is set; give both or neither", t.KeyFile), nil)
	case t.CertFile != "":
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			add("etcd.tls.cert_file", strconv.Quote(t.CertFile),
				fmt.Sprintf("cannot be used with etcd.tls.key_file %q: %v", t.KeyFile, err), err)
		}
	}
	if t.ServerName != "" && checkDomain(t.ServerName) != "" && net.ParseIP(t.ServerName) == nil {
		add("etcd.tls.server_name", strconv.Quote(t.ServerName), "want a host name or IP address", nil)
	}
	return errs
}

// endpoint is a parsed Config endpoint.
type endpoint struct {
	raw    string // as configured
	scheme string // "http", "https" or "" (host:port)
	host   string // without brackets
	port   string
}

func (e endpoint) hostPort() string { return net.JoinHostPort(e.host, e.port) }

// parseEndpoint parses an endpoint as clientv3 understands it; a non-empty
// reason says what is wrong.
func parseEndpoint(raw string) (endpoint, string) {
	if raw == "" {
		return endpoint{}, "empty; " + endpointForm
	}
	e := endpoint{raw: raw}
	hostport := raw
	if scheme, rest, ok := strings.Cut(raw, "://"); ok {
		u, err := url.Parse(raw)
		if err != nil {
			return e, fmt.Sprintf("not a URL (%v); %s", err, endpointForm)
		}
		if scheme != "http" && scheme != "https" {
			return e, fmt.Sprintf("scheme %q not supported; %s", scheme, endpointForm)
		}
		if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			return e, fmt.Sprintf("unexpected user, path, query or fragment in %q; %s", rest, endpointForm)
		}
		e.scheme, hostport = scheme, u.Host
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return e, fmt.Sprintf("no port (%v); %s", err, endpointForm)
	}
	if host == "" {
		return e, "no host; " + endpointForm
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return e, fmt.Sprintf("port %q not in 1-65535", port)
	}
	if net.ParseIP(host) == nil && checkDomain(host) != "" {
		return e, fmt.Sprintf("host %q is neither an IP address nor a DNS name", host)
	}
	e.host, e.port = host, port
	return e, ""
}

// checkDomain returns why name is not a DNS name, or "".
func checkDomain(name string) string {
	const want = "want a DNS name such as example.com"
	trimmed := strings.TrimSuffix(name, ".")
	if trimmed == "" || len(trimmed) > 253 {
		return want
	}
	for _, label := range strings.Split(trimmed, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return want
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return want
			}
		}
	}
	return ""
}

func (c Config) withDefaults() Config {
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.Resolver == nil {
		c.Resolver = net.DefaultResolver
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Logger = c.Logger.With("component", "etcdclient")
	return c
}
