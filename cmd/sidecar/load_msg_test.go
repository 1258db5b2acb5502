package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sidecar-dev/sidecar/internal/etcdclient"
	"github.com/sidecar-dev/sidecar/sidecar"
)

// configProblems loads a configuration as `sidecar run` does (file, env)
// and returns the lines it would print: one per mistake.
func configProblems(t *testing.T, yaml string, env []string) []string {
	t.Helper()
	file := ""
	if yaml != "" {
		file = writeFile(t, yaml)
	}
	cfg, lerr := loadConfig(file, nil, env)
	_, verr := sidecar.New(cfg, nil)
	err := configError(lerr, verr)
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

// base is the part of each test configuration that keeps it away from the
// machine's defaults (data dir, socket, private address).
func base(t *testing.T) string {
	dir := t.TempDir()
	return fmt.Sprintf("data_dir: %s\napi: {socket: %s}\n", filepath.Join(dir, "data"), filepath.Join(dir, "s.sock"))
}

// TestConfigLines: each bad configuration gives exactly these lines: one
// per mistake, in the user's words (the field, variable or file they
// wrote), never again under a derived field or for a default.
func TestConfigLines(t *testing.T) {
	tests := []struct {
		name string
		yaml string // after base
		env  []string
		want []string // a line ending in "…" is matched as a prefix
	}{
		{"the first hour's file", `
nmae: x
servce:
  name: orders
embedded:
  listen_client_urls: [http://127.0.0.1:99999]
  listen_peer_urls: ["http://127.0.0.1:2380x"]
service:
  name: "bad name!"
  address: 127.0.0.1
  port: 80a
  check: {interval: 1s}
`, nil, []string{
			"nmae: unknown field; did you mean name?",
			"servce: unknown field; did you mean service?",
			`service.port: "80a": not a valid int`,
			`embedded.listen_client_urls[0]: "http://127.0.0.1:99999" must have a port in 1..65535`,
			`embedded.listen_peer_urls[0]: "http://127.0.0.1:2380x" must have a port in 1..65535`,
			`service.name: "bad name!": want letters, digits, '.', '_' or '-', starting with a letter or digit, at most 128`,
		}},
		{"unknown nested fields", `
service: {name: orders, address: 127.0.0.1, port: 8080, chek: {interval: 1s}}
etcd: {endpoint: [http://127.0.0.1:2379]}
config: [{prefix: /a/, dir: /tmp/sidecar-msg-test, file_mod: "0644", mode: x}]
`, nil, []string{
			"config[0].file_mod: unknown field; did you mean file_mode?",
			"config[0].mode: unknown field",
			"etcd.endpoint: unknown field; did you mean endpoints?",
			"service.chek: unknown field; did you mean check?",
		}},
		{"unknown field reported with a bad value", "nmae: x\ncoordination: {ttl: 5}\n", nil, []string{
			"nmae: unknown field; did you mean name?",
			"coordination.ttl: 5: want a duration with a unit, such as 500ms, 5s or 1m",
		}},
		{"bad value from the environment names the variable", "service: {name: orders, address: 127.0.0.1}\n",
			[]string{"SIDECAR_SERVICE_PORT=80a"}, []string{`SIDECAR_SERVICE_PORT: "80a": not a valid int`}},
		{"check timeout default follows the interval", "service: {name: orders, address: 127.0.0.1, port: 8080, check: {tcp: 127.0.0.1:8080, interval: 1s}}\n", nil, nil},
		{"check timeout set longer than the interval", "service: {name: orders, address: 127.0.0.1, port: 8080, check: {tcp: 127.0.0.1:8080, interval: 1s, timeout: 3s}}\n", nil,
			[]string{"service.check.timeout: 3s: want a duration no longer than service.check.interval (1s)"}},
		{"misspelt variables", "", []string{"SIDECAR_SERVICE_NAEM=orders", "SIDECAR_LOG_LEVL=debug", "SIDECAR_NAEM=web-1", "SIDECAR_SERVICE_TAGS=a,b", "SIDECAR_CONFIG=/etc/sidecar.yaml"}, []string{
			"SIDECAR_CONFIG: not a variable sidecar reads: the config section is set only in the file (give it with --config)",
			"SIDECAR_LOG_LEVL: not a variable sidecar reads; did you mean SIDECAR_LOG_LEVEL?",
			"SIDECAR_NAEM: not a variable sidecar reads; did you mean SIDECAR_NAME?",
			"SIDECAR_SERVICE_NAEM: not a variable sidecar reads; did you mean SIDECAR_SERVICE_NAME?",
			"SIDECAR_SERVICE_TAGS: not a variable sidecar reads: want SIDECAR_ and a configuration key, such as SIDECAR_SERVICE_PORT for service.port",
		}},
		{"variables of the CLI, the wrappers, the tests and the user's own", "", []string{
			"SIDECAR_SOCKET=/tmp/x.sock", "SIDECAR_LOCK_NAME=jobs", "SIDECAR_LOCK_FENCE=7", "SIDECAR_ELECTION_NAME=leader",
			"SIDECAR_ELECTION_FENCE=8", "SIDECAR_TEST_LOG=1", "SIDECAR_BENCH_IDLE=1", "SIDECAR_TEST_CLIENT_SOCKET=/x", "SIDECAR_MYAPP_TOKEN=t", "SIDECAR_HOME=/opt/app",
		}, nil},
		{"bad metadata from the environment", "", []string{"SIDECAR_SERVICE_METADATA=version=v1"},
			[]string{`SIDECAR_SERVICE_METADATA: "version=v1": want a JSON object of names to strings, such as {"version":"v1","zone":"a"}`}},
		{"ETCD_ variable that does not parse", "", []string{"ETCD_HEARTBEAT_INTERVAL=100ms"},
			[]string{`ETCD_HEARTBEAT_INTERVAL: "100ms": want milliseconds as a whole number, such as 100`}},
		{"unspecified listen address", "embedded: {listen_client_urls: [http://0.0.0.0:2379]}\n", nil, []string{
			`embedded.advertise_client_urls: [] defaults to listen_client_urls, but "http://0.0.0.0:2379" is an unspecified address no one can dial; set advertise_client_urls`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := configProblems(t, base(t)+tc.yaml, tc.env)
			if len(got) != len(tc.want) {
				t.Fatalf("%d lines, want %d:\n%s", len(got), len(tc.want), strings.Join(got, "\n"))
			}
			for i, w := range tc.want {
				if p, ok := strings.CutSuffix(w, "…"); ok && strings.HasPrefix(got[i], p) || got[i] == w {
					continue
				}
				t.Errorf("line %d:\n got %s\nwant %s", i+1, got[i], w)
			}
			for _, line := range got {
				for _, bad := range []string{"etcdclient", "registry:", "embedded:", "While parsing", `http="`, "advertise_client_urls[", "initial_advertise_peer_urls[", "service.id"} {
					if strings.Contains(line, bad) {
						t.Errorf("%q contains %q", line, bad)
					}
				}
			}
		})
	}
}

// A YAML syntax error names the file and the line, without viper's
// "While parsing config" or the library's "yaml:".
func TestConfigSyntaxError(t *testing.T) {
	file := writeFile(t, "name: [unclosed\n")
	_, err := loadConfig(file, nil, nil)
	want := "config file " + file + ": line 1: did not find expected ',' or ']'"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
	_, err = loadConfig(filepath.Join(t.TempDir(), "none.yaml"), nil, nil)
	if err == nil || !strings.HasSuffix(err.Error(), "none.yaml: no such file") {
		t.Fatalf("err = %v", err)
	}
}

// With etcd's variables exported (an etcd.conf) and no name, the node is
// the member: ETCD_NAME names it, service ids included.
func TestNodeNameFromEtcdName(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		want string
	}{
		{"ETCD_NAME", []string{"ETCD_NAME=etcd01"}, "etcd01"},
		{"name wins", []string{"ETCD_NAME=etcd01", "SIDECAR_NAME=web-1"}, "web-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := append([]string{"SIDECAR_SERVICE_NAME=orders", "SIDECAR_SERVICE_PORT=8080", "SIDECAR_SERVICE_ADDRESS=127.0.0.1"}, tc.env...)
			cfg, err := loadConfig(writeFile(t, base(t)), nil, env)
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.Complete(); err != nil {
				t.Fatal(err)
			}
			if cfg.Name != tc.want || cfg.Embedded.Name != "etcd01" || cfg.Service.ID != "orders-"+tc.want+"-8080" {
				t.Fatalf("name %q, embedded.name %q, service id %q; want %q, etcd01", cfg.Name, cfg.Embedded.Name, cfg.Service.ID, tc.want)
			}
		})
	}
	host, _ := os.Hostname()
	cfg, err := loadConfig("", nil, []string{"ETCD_NAME=etcd01", "SIDECAR_ETCD_ENDPOINTS=http://127.0.0.1:2379"})
	if err != nil || cfg.Complete() != nil || cfg.Name != host {
		t.Fatalf("join mode: name %q (%v), want the hostname %q", cfg.Name, err, host)
	}
}

// Every map field takes a JSON object from the environment.
func TestMetadataFromEnvJSON(t *testing.T) {
	cfg, err := loadConfig("", nil, []string{`SIDECAR_SERVICE_METADATA={"Version":"v2"}`, "SIDECAR_SERVICE_NAME=orders"})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"Version": "v2"}; !maps.Equal(cfg.Service.Metadata, want) {
		t.Fatalf("metadata = %v, want %v", cfg.Service.Metadata, want)
	}
	if got := cfg.RegistryConfig().Metadata; got["Version"] != "v2" {
		t.Fatalf("registry metadata = %v", got)
	}
}

// What ends the daemon is worded for people: no package prefixes; the
// cancellation of a signal still counts as one.
func TestStartFailure(t *testing.T) {
	refused := &etcdclient.ConnError{Endpoint: "http://127.0.0.1:1", Kind: etcdclient.KindRefused}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"etcd refused", fmt.Errorf("etcdclient: check: %w", errors.Join(refused)), "sidecar: cannot use etcd: etcd endpoint http://127.0.0.1:1: connection refused"},
		{"two endpoints", fmt.Errorf("etcdclient: check: %w", errors.Join(refused, &etcdclient.ConnError{Endpoint: "http://127.0.0.1:2", Kind: etcdclient.KindRefused})),
			"sidecar: cannot use etcd:\n  - etcd endpoint http://127.0.0.1:1: connection refused\n  - etcd endpoint http://127.0.0.1:2: connection refused"},
		{"tls file", &etcdclient.FieldError{Field: "etcd.tls.ca_file", Value: `"/x"`, Reason: "no such file"}, `sidecar: cannot use etcd: etcd.tls.ca_file: "/x": no such file`},
		{"embedded", errors.New("embedded: cannot listen on http://127.0.0.1:2379 (embedded.listen_client_urls): address already in use"),
			"sidecar: cannot listen on http://127.0.0.1:2379 (embedded.listen_client_urls): address already in use"},
		{"daemon", fmt.Errorf("sidecar: registry: %w", errors.New("registry: put: no leader")), "sidecar: put: no leader"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := startFailure(tc.err); got.Error() != tc.want || !errors.Is(got, tc.err) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	if startFailure(nil) != nil || !errors.Is(startFailure(context.Canceled), context.Canceled) {
		t.Fatal("nil or a cancellation changed")
	}
}

// Usage errors start with "sidecar:", say what to run for help, and exit
// with status 2.
func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"bogus"}, `sidecar: unknown command "bogus" (run 'sidecar --help' for usage)`},
		{[]string{"statsu"}, `sidecar: unknown command "statsu"; did you mean status? (run 'sidecar --help' for usage)`},
		{[]string{"status", "--bogus"}, "sidecar: status: unknown flag: --bogus (run 'sidecar status --help' for usage)"},
		{[]string{"run", "extra"}, `sidecar: run: takes no arguments, got "extra" (run 'sidecar run --help' for usage)`},
		{[]string{"services", "a", "b"}, "sidecar: services: accepts at most 1 arg(s), received 2 (run 'sidecar services --help' for usage)"},
		{[]string{"run", "--log-level"}, "sidecar: run: flag needs an argument: --log-level (run 'sidecar run --help' for usage)"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			root := newRoot()
			var out, stderr bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&out)
			root.SetArgs(tc.args)
			err := root.ExecuteContext(t.Context())
			if code := exitCode(t.Context(), err, &stderr); code != 2 || stderr.String() != tc.want+"\n" {
				t.Fatalf("exit %d, printed %q; want 2, %q", code, stderr.String(), tc.want)
			}
		})
	}
	root := newRoot() // no command: help, and success
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs(nil)
	if err := root.ExecuteContext(t.Context()); err != nil || !strings.Contains(out.String(), "Usage:") {
		t.Fatalf("sidecar with no command: %v, %q", err, out.String())
	}
}

// The CLI's JSON output is not HTML-escaped.
func TestCLIJSONNotHTMLEscaped(t *testing.T) {
	var b bytes.Buffer
	v := map[string]string{"error": "a -> <b> & c"}
	if err := writeJSONLine(&b, v); err != nil {
		t.Fatal(err)
	}
	if err := writeJSONOut(&b, v); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), `\u00`) || strings.Count(b.String(), "a -> <b> & c") != 2 {
		t.Fatalf("output %s", b.String())
	}
}
