package registry_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
	"github.com/sidecar-dev/sidecar/registry"
)

func TestNewValidation(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	tests := []struct {
		name   string
		mutate func(*registry.Config)
		fields []string // each must be named in the error
	}{
		{"ttl below 2s", func(c *registry.Config) { c.TTL = 1500 * time.Millisecond }, []string{"TTL 1.5s"}},
		{"no ttl", func(c *registry.Config) { c.TTL = 0 }, []string{"TTL"}},
		{"bad service", func(c *registry.Config) { c.Service = "-orders" }, []string{`Service "-orders"`}},
		{"service with slash", func(c *registry.Config) { c.Service = "a/b" }, []string{"Service"}},
		{"bad id", func(c *registry.Config) { c.ID = strings.Repeat("x", 129) }, []string{"ID"}},
		{"empty prefix", func(c *registry.Config) { c.Prefix = "" }, []string{"Prefix"}},
		{"prefix with trailing slash", func(c *registry.Config) { c.Prefix = "/sidecar/services/" }, []string{"Prefix"}},
		{"no node", func(c *registry.Config) { c.Node = "" }, []string{"Node"}},
		{"addr without port", func(c *registry.Config) { c.Addr = "10.0.0.5" }, []string{"Addr"}},
		{"addr ipv6 unbracketed", func(c *registry.Config) { c.Addr = "::1:8080" }, []string{"Addr"}},
		{"addr port 0", func(c *registry.Config) { c.Addr = "10.0.0.5:0" }, []string{"Addr"}},
		{"weight high", func(c *registry.Config) { c.Weight = 10001 }, []string{"Weight 10001"}},
		{"weight negative", func(c *registry.Config) { c.Weight = -1 }, []string{"Weight -1"}},
		{"negative drain", func(c *registry.Config) { c.DrainTimeout = -time.Second }, []string{"DrainTimeout"}},
		{"addr host with a space", func(c *registry.Config) { c.Addr = "a b:8080" }, []string{"Addr"}},
		{"http and tcp checks", func(c *registry.Config) {
			c.Check.HTTP, c.Check.TCP = "http://127.0.0.1:8080/healthz", "127.0.0.1:8080"
		}, []string{"Check: http and tcp are set", "at most one"}},
		{"bad http check", func(c *registry.Config) { c.Check.HTTP = "127.0.0.1:8080/healthz" }, []string{"Check.HTTP"}},
		{"bad tcp check", func(c *registry.Config) { c.Check.TCP = "localhost" }, []string{"Check.TCP"}},
		{"tcp check port out of range", func(c *registry.Config) { c.Check.TCP = "127.0.0.1:99999" }, []string{`Check.TCP "127.0.0.1:99999"`, "1..65535"}},
		{"tcp check without host", func(c *registry.Config) { c.Check.TCP = ":80" }, []string{`Check.TCP ":80"`, "host is empty"}},
		{"tcp check ipv6 unbracketed", func(c *registry.Config) { c.Check.TCP = "::1:80" }, []string{"Check.TCP", "brackets"}},
		{"empty metadata key", func(c *registry.Config) { c.Metadata = map[string]string{"": "x"} }, []string{"Metadata"}},
		{"negative timeout", func(c *registry.Config) { c.Check.Timeout = -time.Second }, []string{"Check.Timeout"}},
		{"derived id too long", func(c *registry.Config) { c.ID, c.Service = "", strings.Repeat("s", 120) }, []string{"ID", "default id"}},
		{"empty exec program", func(c *registry.Config) { c.Check.Exec = []string{"", "x"} }, []string{"Check.Exec"}},
		{"negative interval", func(c *registry.Config) { c.Check.Interval = -time.Second }, []string{"Check.Interval"}},
		{"negative failures", func(c *registry.Config) { c.Check.FailuresBeforeCritical = -1 }, []string{"Check.FailuresBeforeCritical"}},
		{"several at once", func(c *registry.Config) { c.TTL, c.Weight = time.Second, 20000 }, []string{"TTL", "Weight"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig("orders-1")
			tt.mutate(&cfg)
			_, err := registry.New(cli, cfg)
			if err == nil {
				t.Fatalf("New accepted %+v", cfg)
			}
			if !errors.Is(err, registry.ErrInvalidConfig) {
				t.Errorf("error %v does not wrap ErrInvalidConfig", err)
			}
			for _, f := range tt.fields {
				if !strings.Contains(err.Error(), f) {
					t.Errorf("error %q does not name %q", err, f)
				}
			}
		})
	}
	if _, err := registry.New(nil, testConfig("orders-1")); err == nil {
		t.Errorf("New accepted a nil client")
	}
}

// TestValidate checks the exported rules the daemon translates: one
// *FieldError per problem, with the Go path, the part of a host:port, the
// value and the reason.
func TestValidate(t *testing.T) {
	fieldErrors := func(err error) []*registry.FieldError {
		var out []*registry.FieldError
		for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
			var fe *registry.FieldError
			if !errors.As(e, &fe) {
				t.Fatalf("%v is not a *FieldError", e)
			}
			out = append(out, fe)
		}
		return out
	}
	if err := testConfig("").Validate(); err != nil {
		t.Fatalf("valid config with defaults to fill: %v", err)
	}
	cfg := testConfig("orders-1")
	cfg.Addr, cfg.Check.TCP, cfg.TTL = "10.0.0.5:0", ":80", time.Second
	got := fieldErrors(cfg.Validate())
	want := []registry.FieldError{
		{Field: "Addr", Part: "port", Value: `"10.0.0.5:0"`},
		{Field: "TTL", Value: "1s", Reason: "want at least 2s"},
		{Field: "Check.TCP", Part: "host", Value: `":80"`},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d problems, want %d: %v", len(got), len(want), cfg.Validate())
	}
	for i, w := range want {
		g := got[i]
		if g.Field != w.Field || g.Part != w.Part || g.Value != w.Value || (w.Reason != "" && g.Reason != w.Reason) {
			t.Errorf("problem %d = %+v, want %+v", i, *g, w)
		}
		if strings.Contains(g.Reason, "registry") {
			t.Errorf("reason %q is not for people", g.Reason)
		}
	}

	// The default id derives from Service: a bad Service is not reported
	// again as a bad ID.
	cfg = testConfig("")
	cfg.Service = "a/b"
	got = fieldErrors(cfg.Validate())
	if len(got) != 1 || got[0].Field != "Service" {
		t.Errorf("bad service with a default id: %v", cfg.Validate())
	}
	if id := registry.DefaultID("orders", "web-1", 8080); id != "orders-web-1-8080" {
		t.Errorf("DefaultID = %q", id)
	}
}
