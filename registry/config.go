package registry

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sidecar-dev/sidecar/internal/names"
)

// Limits and defaults of Config.
const (
	MaxWeight = 10000
	MinTTL    = 2 * time.Second

	DefaultCheckInterval          = 5 * time.Second
	DefaultCheckTimeout           = 2 * time.Second
	DefaultFailuresBeforeCritical = 3
)

// DefaultTimeout is the check timeout used when none is set:
// DefaultCheckTimeout, or the interval when that is shorter, so that a
// check never outlasts its interval. A non-positive interval (an error
// reported on its own) gives DefaultCheckTimeout.
func DefaultTimeout(interval time.Duration) time.Duration {
	if interval <= 0 {
		return DefaultCheckTimeout
	}
	return min(DefaultCheckTimeout, interval)
}

// ErrInvalidConfig is wrapped by every *FieldError returned by Validate and New.
var ErrInvalidConfig = errors.New("registry: invalid config")

// nameRule says what a service name or instance id may be, in words.
const nameRule = "want letters, digits, '.', '_' or '-', starting with a letter or digit, at most 128"

// CheckConfig is the health check that gates the registration. At most one
// of HTTP, TCP and Exec is set; with none, the service always passes.
// Zero Interval, Timeout and FailuresBeforeCritical take the defaults.
type CheckConfig struct {
	HTTP     string   // URL; a GET answered with 2xx passes
	TCP      string   // host:port; a completed connect passes
	Exec     []string // argv (no shell); exit status 0 passes
	Interval time.Duration
	Timeout  time.Duration // bounds each check
	// FailuresBeforeCritical consecutive failures turn a passing check
	// critical. One pass turns it passing again.
	FailuresBeforeCritical int
}

func (c CheckConfig) kind() string {
	switch {
	case c.HTTP != "":
		return "http"
	case c.TCP != "":
		return "tcp"
	case len(c.Exec) > 0:
		return "exec"
	}
	return ""
}

// Config describes the registration. New copies it; the caller may reuse it.
type Config struct {
	// Prefix is the parent of every service's instances, such as
	// "/sidecar/services" (namespace + "/services"). The key is
	// Prefix/<Service>/<ID>.
	Prefix  string
	Service string // [A-Za-z0-9][A-Za-z0-9._-]{0,127}
	// ID names the instance, with the pattern of Service. Default:
	// <Service>-<Node>-<port of Addr>.
	ID   string
	Node string // the sidecar's node name, written as metadata "node"
	// Addr is the address callers dial: host:port, an IPv6 host in brackets.
	Addr     string
	Weight   int // 0..MaxWeight; 0 means drained: listed but never picked
	Metadata map[string]string
	TTL      time.Duration // of the lease, >= MinTTL; rounded up to whole seconds
	// DrainTimeout is how long Run keeps the record with weight 0 after its
	// context ends, before revoking the lease. Zero: revoke at once.
	DrainTimeout time.Duration
	Check        CheckConfig
	Logger       *slog.Logger // nil discards; records get component=registry
}

// FieldError is one problem with a Config field. It wraps ErrInvalidConfig.
// Value and Reason are written for people, so that a program that maps
// Field to its own configuration's names can show them unchanged.
type FieldError struct {
	Field string // Go path of the field, e.g. "TTL" or "Check.TCP"; "Check" for a mix of kinds
	// Part is "host" or "port" when the problem is in that part of a
	// host:port field (Addr, Check.TCP); empty otherwise.
	Part   string
	Value  string // the offending value as written in messages; empty when there is no single one
	Reason string // what is wrong and what is allowed, e.g. "want at least 2s"
}

func (e *FieldError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("registry: config: %s: %s", e.Field, e.Reason)
	}
	return fmt.Sprintf("registry: config: %s %s: %s", e.Field, e.Value, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalidConfig) true.
func (e *FieldError) Unwrap() error { return ErrInvalidConfig }

// DefaultID is the instance id used when Config.ID is empty:
// <service>-<node>-<port>.
func DefaultID(service, node string, port int) string {
	return service + "-" + node + "-" + strconv.Itoa(port)
}

// Validate applies the defaults of zero fields, as New does, and reports
// every problem of the result at once: one *FieldError per problem,
// joined. It contacts nobody.
func (c Config) Validate() error {
	return c.withDefaults().validate(c.ID == "")
}

// withDefaults fills zero fields that have a default. It shares Metadata
// and Logger with c.
func (c Config) withDefaults() Config {
	if c.ID == "" && c.Service != "" && c.Node != "" {
		if _, p, err := net.SplitHostPort(c.Addr); err == nil {
			if port, err := strconv.Atoi(p); err == nil {
				c.ID = DefaultID(c.Service, c.Node, port)
			}
		}
	}
	if c.Check.Interval == 0 {
		c.Check.Interval = DefaultCheckInterval
	}
	if c.Check.Timeout == 0 {
		c.Check.Timeout = DefaultTimeout(c.Check.Interval)
	}
	if c.Check.FailuresBeforeCritical == 0 {
		c.Check.FailuresBeforeCritical = DefaultFailuresBeforeCritical
	}
	return c
}

// validate returns one *FieldError per problem, joined. idDerived says
// that ID is the default, derived from Service, Node and Addr: a problem
// of theirs is not reported again as a problem of ID.
func (c Config) validate(idDerived bool) error {
	var errs []error
	bad := func(field, value, reason string) {
		errs = append(errs, &FieldError{Field: field, Value: value, Reason: reason})
	}
	switch {
	case c.Prefix == "":
		bad("Prefix", `""`, "want a key prefix such as /sidecar/services")
	case strings.HasSuffix(c.Prefix, "/"):
		bad("Prefix", strconv.Quote(c.Prefix), "want no trailing /")
	}
	if !names.Valid(c.Service) {
		bad("Service", strconv.Quote(c.Service), nameRule)
	}
	switch {
	case names.Valid(c.ID):
	case !idDerived:
		bad("ID", strconv.Quote(c.ID), nameRule)
	case c.ID != "" && names.Valid(c.Service):
		bad("ID", strconv.Quote(c.ID), "the default id <service>-<node>-<port> is not a valid name ("+nameRule+"): set the id")
	}
	if c.Node == "" {
		bad("Node", `""`, "want the node name")
	}
	errs = append(errs, checkHostPort("Addr", c.Addr)...)
	if c.Weight < 0 || c.Weight > MaxWeight {
		bad("Weight", strconv.Itoa(c.Weight), fmt.Sprintf("out of range: want 0..%d (0 = drained)", MaxWeight))
	}
	if _, ok := c.Metadata[""]; ok {
		bad("Metadata", `""`, "want non-empty keys")
	}
	if c.TTL < MinTTL {
		bad("TTL", c.TTL.String(), "want at least "+MinTTL.String())
	}
	if c.DrainTimeout < 0 {
		bad("DrainTimeout", c.DrainTimeout.String(), "want 0 or more")
	}
	errs = append(errs, c.Check.validate()...)
	return errors.Join(errs...)
}

func (c CheckConfig) validate() []error {
	var errs []error
	bad := func(field, value, reason string) {
		errs = append(errs, &FieldError{Field: "Check" + field, Value: value, Reason: reason})
	}
	var kinds []string
	if c.HTTP != "" {
		kinds = append(kinds, "http")
		if u, err := url.Parse(c.HTTP); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(".HTTP", strconv.Quote(c.HTTP), "want an http:// or https:// URL with a host")
		}
	}
	if c.TCP != "" {
		kinds = append(kinds, "tcp")
		errs = append(errs, checkHostPort("Check.TCP", c.TCP)...)
	}
	if len(c.Exec) > 0 {
		kinds = append(kinds, "exec")
		if c.Exec[0] == "" {
			bad(".Exec", fmt.Sprintf("%q", c.Exec), "want an argv whose first element is the program")
		}
	}
	if len(kinds) > 1 {
		both := strings.Join(kinds[:len(kinds)-1], ", ") + " and " + kinds[len(kinds)-1]
		bad("", "", both+" are set: want at most one of the http, tcp and exec checks")
	}
	if c.Interval <= 0 {
		bad(".Interval", c.Interval.String(), "want a positive duration")
	}
	if c.Timeout <= 0 {
		bad(".Timeout", c.Timeout.String(), "want a positive duration")
	}
	if c.FailuresBeforeCritical < 1 {
		bad(".FailuresBeforeCritical", strconv.Itoa(c.FailuresBeforeCritical), "want at least 1")
	}
	return errs
}

// checkHostPort accepts host:port with a host that is a name or an IP
// address (IPv6 in brackets) and a port in 1..65535; otherwise it returns
// the problems, of the host and of the port, as *FieldErrors of field.
func checkHostPort(field, s string) []error {
	bad := func(part, reason string) []error {
		return []error{&FieldError{Field: field, Part: part, Value: strconv.Quote(s), Reason: reason}}
	}
	host, port, err := net.SplitHostPort(s)
	switch {
	case err != nil && strings.Count(s, ":") > 1 && !strings.HasPrefix(s, "["):
		return bad("host", "an IPv6 host must be in brackets, such as [::1]:8080")
	case err != nil:
		return bad("", "want host:port, such as 10.0.0.5:8080")
	}
	var errs []error
	switch {
	case host == "":
		errs = bad("host", "the host is empty: want host:port, such as 10.0.0.5:8080")
	case strings.ContainsAny(host, " /\\\x00"), strings.ContainsAny(host, ":%") && !validIPv6(host):
		errs = bad("host", "want an IP address or a host name as the host")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		errs = append(errs, bad("port", "want a port number in 1..65535")...)
	}
	return errs
}

// validIPv6 reports whether host is an IPv6 address, with or without a zone.
func validIPv6(host string) bool {
	a, err := netip.ParseAddr(host)
	return err == nil && a.Is6()
}
