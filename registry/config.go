package registry

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
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

// ErrInvalidConfig is wrapped by every *FieldError returned by New.
var ErrInvalidConfig = errors.New("registry: invalid config")

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
type FieldError struct {
	Field  string // Go name of the field, e.g. "TTL" or "Check.HTTP"
	Value  string // the offending value as written in messages
	Reason string // what is wrong and what is allowed
}

func (e *FieldError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("registry: config: %s: %s", e.Field, e.Reason)
	}
	return fmt.Sprintf("registry: config: %s %s: %s", e.Field, e.Value, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalidConfig) true.
func (e *FieldError) Unwrap() error { return ErrInvalidConfig }

// withDefaults fills zero fields that have a default.
func (c Config) withDefaults() Config {
	if c.ID == "" && c.Service != "" && c.Node != "" {
		if _, port, err := net.SplitHostPort(c.Addr); err == nil {
			c.ID = c.Service + "-" + c.Node + "-" + port
		}
	}
	if c.Check.Interval == 0 {
		c.Check.Interval = DefaultCheckInterval
	}
	if c.Check.Timeout == 0 {
		c.Check.Timeout = DefaultCheckTimeout
	}
	if c.Check.FailuresBeforeCritical == 0 {
		c.Check.FailuresBeforeCritical = DefaultFailuresBeforeCritical
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c.Logger = c.Logger.With("component", "registry")
	md := make(map[string]string, len(c.Metadata))
	for k, v := range c.Metadata {
		md[k] = v
	}
	c.Metadata = md
	return c
}

// validate returns one *FieldError per problem, joined.
func (c Config) validate() error {
	var errs []error
	bad := func(field, value, reason string) {
		errs = append(errs, &FieldError{Field: field, Value: value, Reason: reason})
	}
	switch {
	case c.Prefix == "":
		bad("Prefix", `""`, "must not be empty")
	case strings.HasSuffix(c.Prefix, "/"):
		bad("Prefix", strconv.Quote(c.Prefix), "must not end with /")
	}
	if !names.Valid(c.Service) {
		bad("Service", strconv.Quote(c.Service), "must match "+names.Pattern)
	}
	if !names.Valid(c.ID) {
		bad("ID", strconv.Quote(c.ID), "must match "+names.Pattern)
	}
	if c.Node == "" {
		bad("Node", `""`, "must not be empty")
	}
	if err := checkHostPort(c.Addr); err != nil {
		bad("Addr", strconv.Quote(c.Addr), err.Error())
	}
	if c.Weight < 0 || c.Weight > MaxWeight {
		bad("Weight", strconv.Itoa(c.Weight), fmt.Sprintf("must be 0..%d", MaxWeight))
	}
	for k := range c.Metadata {
		if k == "" {
			bad("Metadata", `""`, "keys must not be empty")
		}
	}
	if c.TTL < MinTTL {
		bad("TTL", c.TTL.String(), "must be at least "+MinTTL.String())
	}
	if c.DrainTimeout < 0 {
		bad("DrainTimeout", c.DrainTimeout.String(), "must not be negative")
	}
	errs = append(errs, c.Check.validate()...)
	return errors.Join(errs...)
}

func (c CheckConfig) validate() []error {
	var errs []error
	bad := func(field, value, reason string) {
		errs = append(errs, &FieldError{Field: "Check." + field, Value: value, Reason: reason})
	}
	var kinds []string
	if c.HTTP != "" {
		kinds = append(kinds, "HTTP")
		if u, err := url.Parse(c.HTTP); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("HTTP", strconv.Quote(c.HTTP), "must be an http:// or https:// URL with a host")
		}
	}
	if c.TCP != "" {
		kinds = append(kinds, "TCP")
		if err := checkHostPort(c.TCP); err != nil {
			bad("TCP", strconv.Quote(c.TCP), err.Error())
		}
	}
	if len(c.Exec) > 0 {
		kinds = append(kinds, "Exec")
		if c.Exec[0] == "" {
			bad("Exec", fmt.Sprintf("%q", c.Exec), "the program (first element) must not be empty")
		}
	}
	if len(kinds) > 1 {
		bad(strings.Join(kinds, "+"), "", "at most one of HTTP, TCP and Exec may be set")
	}
	if c.Interval <= 0 {
		bad("Interval", c.Interval.String(), "must be positive")
	}
	if c.Timeout <= 0 {
		bad("Timeout", c.Timeout.String(), "must be positive")
	}
	if c.FailuresBeforeCritical < 1 {
		bad("FailuresBeforeCritical", strconv.Itoa(c.FailuresBeforeCritical), "must be at least 1")
	}
	return errs
}

// checkHostPort accepts host:port with a non-empty host and a port in
// 1..65535; an IPv6 host must be in brackets.
func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("must be host:port (an IPv6 address in brackets)")
	}
	if host == "" {
		return errors.New("the host must not be empty")
	}
	if strings.Contains(host, ":") && !strings.HasPrefix(s, "[") {
		return errors.New("an IPv6 host must be in brackets")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q must be 1..65535", port)
	}
	return nil
}
