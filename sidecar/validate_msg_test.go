package sidecar

import (
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/registry"
)

// A default is never blamed: with no timeout, the check timeout follows a
// short interval (at most it); a timeout the user set is checked.
func TestCheckTimeoutFollowsInterval(t *testing.T) {
	tests := []struct {
		name              string
		interval, timeout time.Duration
		want              time.Duration
	}{
		{"interval below the default timeout", time.Second, 0, time.Second},
		{"interval above the default timeout", 10 * time.Second, 0, registry.DefaultCheckTimeout},
		{"default interval", 0, 0, registry.DefaultCheckTimeout},
		{"timeout set", time.Second, 500 * time.Millisecond, 500 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := validBase(t)
			c.Service.Name, c.Service.Port, c.Service.Address = "orders", 8080, "127.0.0.1"
			c.Service.Check.HTTP = "http://127.0.0.1:8080/healthz"
			if tc.interval != 0 {
				c.Service.Check.Interval = tc.interval
			}
			c.Service.Check.Timeout = tc.timeout
			if err := c.Complete(); err != nil {
				t.Fatal(err)
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("refused: %v", err)
			}
			if c.Service.Check.Timeout != tc.want {
				t.Fatalf("check timeout = %s, want %s", c.Service.Check.Timeout, tc.want)
			}
			if err := c.RegistryConfig().Validate(); err != nil {
				t.Fatalf("the registry refuses it: %v", err)
			}
		})
	}
}

// In embedded mode, the member's name (embedded.name, which ETCD_NAME
// sets) names the node when name is not set: service ids and status agree
// with the member. In join mode the embedded section is not used.
func TestNodeNameFromMember(t *testing.T) {
	c := validBase(t)
	c.Name = ""
	c.Embedded.Name = "etcd01"
	c.Service.Name, c.Service.Port, c.Service.Address = "orders", 8080, "127.0.0.1"
	if err := c.Complete(); err != nil {
		t.Fatal(err)
	}
	if c.Name != "etcd01" || c.Service.ID != "orders-etcd01-8080" {
		t.Fatalf("name = %q, service id = %q; want etcd01, orders-etcd01-8080", c.Name, c.Service.ID)
	}

	named := validBase(t) // name set: it wins
	named.Embedded.Name = "etcd01"
	if err := named.Complete(); err != nil || named.Name != "web-1" || named.Embedded.Name != "etcd01" {
		t.Fatalf("name = %q, embedded.name = %q (%v); want web-1, etcd01", named.Name, named.Embedded.Name, err)
	}
}

// Problems of the etcd section in join mode are worded for people: no
// "etcdclient:" prefix.
func TestJoinModeMessages(t *testing.T) {
	c := validBase(t)
	c.Etcd.Endpoints = []string{"https://127.0.0.1:2379"}
	c.Etcd.TLS.CAFile = filepath.Join(t.TempDir(), "no-ca.pem")
	if err := c.Complete(); err != nil {
		t.Fatal(err)
	}
	err := c.Validate()
	want := `etcd.tls.ca_file: "` + c.Etcd.TLS.CAFile + `": open ` + c.Etcd.TLS.CAFile + `: no such file or directory`
	if err == nil || err.Error() != want {
		t.Fatalf("problems:\n%v\nwant only %q", err, want)
	}
}

// The daemon's JSON answers are not HTML-escaped: "->" stays "->".
func TestJSONNotHTMLEscaped(t *testing.T) {
	rec := httptest.NewRecorder()
	msg := `a -> b, <c> & "d"`
	writeJSON(rec, 400, api.Error{Error: msg})
	body := rec.Body.String()
	if strings.Contains(body, `\u003e`) || !strings.Contains(body, `a -> b, <c> & \"d\"`) {
		t.Fatalf("body = %s", body)
	}
	var e api.Error
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error != msg {
		t.Fatalf("decoded %q, %v", e.Error, err)
	}
}
