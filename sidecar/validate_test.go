package sidecar

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func validBase(t *testing.T) Config {
	t.Helper()
	c := Defaults()
	c.Name = "web-1"
	c.DataDir = t.TempDir()
	c.API.Socket = filepath.Join(t.TempDir(), "s.sock")
	return c
}

func TestValidateOK(t *testing.T) {
	c := validBase(t)
	c.Service = Defaults().Service
	c.Service.Name, c.Service.Port, c.Service.Address = "orders", 8080, "10.0.0.5"
	c.Service.Check.HTTP = "http://127.0.0.1:8080/healthz"
	c.Config = []MappingConfig{{Prefix: "/config/orders/", Dir: filepath.Join(t.TempDir(), "orders")}}
	if err := c.Complete(); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	if c.Service.ID != "orders-web-1-8080" || c.Embedded.Name != "web-1" || c.Embedded.DataDir != filepath.Join(c.DataDir, "etcd") ||
		c.Config[0].Layout != "files" || c.Config[0].FileMode != "0644" || c.Config[0].MaxFileBytes != 1<<20 {
		t.Fatalf("derived defaults not filled: %+v", c)
	}
}

func TestValidateMessages(t *testing.T) {
	tmp := t.TempDir()
	file := filepath.Join(tmp, "afile")
	os.WriteFile(file, nil, 0o600)
	tests := []messageCase{
		{"bad node name", func(c *Config) { c.Name = "-x" }, []string{`name: "-x": want letters`}},
		{"namespace", func(c *Config) { c.Etcd.Namespace = "sidecar/" }, []string{`etcd.namespace: "sidecar/": want a key prefix starting with '/'`}},
		{"coordination ttl", func(c *Config) { c.Coordination.TTL = 500 * time.Millisecond }, []string{"coordination.ttl: 500ms: want at least 2s"}},
		{"socket mode", func(c *Config) { c.API.SocketMode = "0440" }, []string{`api.socket_mode: "0440": the owner needs read and write`}},
		{"socket path too long", func(c *Config) { c.API.Socket = "/" + strings.Repeat("a", 120) }, []string{"api.socket: ", "too long for a unix socket"}},
		{"api http", func(c *Config) { c.API.HTTP = "9090" }, []string{`api.http: "9090": want host:port`}},
		{"log", func(c *Config) { c.Log.Level = "verbose"; c.Log.Format = "xml" }, []string{`log.level: "verbose"`, `log.format: "xml": want text or json`}},
		{"election timeout (embedded)", func(c *Config) { c.Embedded.ElectionTimeout = 300 * time.Millisecond }, []string{"embedded.election_timeout"}},
		{"join mode endpoint", func(c *Config) { c.Etcd.Endpoints = []string{"ftp://x"} }, []string{"etcd.endpoints"}},
		{"password and password_file", func(c *Config) {
			c.Etcd.Endpoints = []string{"http://127.0.0.1:2379"}
			c.Etcd.Username, c.Etcd.Password, c.Etcd.PasswordFile = "root", "pw", file
		}, []string{"etcd.password_file: ", "not both"}},
		{"several problems at once", func(c *Config) {
			c.Log.Level = "x"
			c.Coordination.TTL = time.Second
			c.API.HTTP = "x"
		}, []string{"log.level", "coordination.ttl", "api.http"}},
	}
	checkMessages(t, tests)
}

// TestValidateMappingMessages: the config section's problems, one line
// each, in the keys the user wrote.
func TestValidateMappingMessages(t *testing.T) {
	tmp := t.TempDir()
	realDir := filepath.Join(tmp, "real")
	os.Mkdir(realDir, 0o755)
	link := filepath.Join(tmp, "link")
	os.Symlink(realDir, link)
	file := filepath.Join(tmp, "afile")
	os.WriteFile(file, nil, 0o600)
	mapping := func(mod func(*MappingConfig)) func(*Config) {
		return func(c *Config) {
			m := MappingConfig{Prefix: "/config/a/", Dir: filepath.Join(tmp, "m")}
			mod(&m)
			c.Config = append(c.Config, m)
		}
	}
	tests := []messageCase{
		{"dir is a file", mapping(func(m *MappingConfig) { m.Dir = file }), []string{"exists and is not a directory"}},
		{"layout", mapping(func(m *MappingConfig) { m.Layout = "tree" }), []string{`config[0].layout: "tree": want files or snapshot`}},
		{"file mode", mapping(func(m *MappingConfig) { m.FileMode = "rw" }), []string{`config[0].file_mode: "rw": want an octal permission`}},
		{"file mode unreadable", mapping(func(m *MappingConfig) { m.FileMode = "0200" }), []string{`config[0].file_mode: "0200": the owner must be able to read the files`}},
		{"unknown owner and group", mapping(func(m *MappingConfig) { m.Owner = "no-such-user-x"; m.Group = "no-such-group-x" }), []string{
			`config[0].owner: "no-such-user-x": want a user name or uid: no such name on this machine`,
			`config[0].group: "no-such-group-x": want a group name or gid: no such name on this machine`}},
		{"reload timeout", mapping(func(m *MappingConfig) { m.OnChange = OnChangeConfig{Command: []string{"true"}, Timeout: -time.Second} }),
			[]string{"config[0].on_change.timeout: -1s: want 0 or more"}},
		{"command and signal", mapping(func(m *MappingConfig) {
			m.OnChange = OnChangeConfig{Command: []string{"true"}, Signal: "HUP", PIDFile: "/run/app.pid"}
		}), []string{"config[0].on_change.command: want a command or a signal, not both"}},
		{"on delete", mapping(func(m *MappingConfig) { m.OnDelete = "trash" }), []string{`config[0].on_delete: "trash": want remove or keep`}},
		{"empty prefix", mapping(func(m *MappingConfig) { m.Prefix = "" }), []string{`config[0].prefix: "": want a non-empty etcd key prefix`}},
		{"dir is a symlink", mapping(func(m *MappingConfig) { m.Dir = link }), []string{`config[0].dir: "` + link + `": is a symlink to "` + realDir + `"`}},
		{"dir inside data_dir", func(c *Config) {
			c.Config = []MappingConfig{{Prefix: "/a/", Dir: filepath.Join(c.DataDir, "cfg")}}
		}, []string{"config[0].dir: ", "overlaps data_dir"}},
		{"overlapping dirs", func(c *Config) {
			c.Config = []MappingConfig{{Prefix: "/a/", Dir: filepath.Join(tmp, "x")}, {Prefix: "/b/", Dir: filepath.Join(tmp, "x", "y")}}
		}, []string{"config[1].dir: ", "overlaps config[0].dir"}},
		{"relative dir overlapping absolute", func(c *Config) {
			wd, _ := os.Getwd()
			c.Config = []MappingConfig{{Prefix: "/a/", Dir: "cfg"}, {Prefix: "/b/", Dir: filepath.Join(wd, "cfg")}}
		}, []string{"config[1].dir: ", "overlaps config[0].dir"}},
		{"signal", mapping(func(m *MappingConfig) { m.OnChange.Signal = "BOGUS"; m.OnChange.PIDFile = "/run/app.pid" }), []string{`config[0].on_change.signal: "BOGUS": want a signal name`}},
		{"signal without pid file", mapping(func(m *MappingConfig) { m.OnChange.Signal = "SIGHUP" }), []string{"config[0].on_change.pid_file: "}},
	}
	checkMessages(t, tests)
}

// TestValidateServiceMessages: the service section is checked with the
// registry's rules, and each problem is reported in the user's words.
func TestValidateServiceMessages(t *testing.T) {
	svc := func(mod func(*ServiceConfig)) func(*Config) {
		return func(c *Config) {
			c.Service.Name, c.Service.Port, c.Service.Address = "orders", 8080, "10.0.0.5"
			mod(&c.Service)
		}
	}
	checkMessages(t, []messageCase{
		{"port out of range", svc(func(s *ServiceConfig) { s.Port = 70000 }), []string{"service.port: 70000: want a port number in 1..65535"}},
		{"port 0", svc(func(s *ServiceConfig) { s.Port = 0 }), []string{"service.port: 0: want a port number in 1..65535"}},
		{"address with a space", svc(func(s *ServiceConfig) { s.Address = "a b" }), []string{`service.address: "a b": want an IP address or host name`}},
		{"address with a colon", svc(func(s *ServiceConfig) { s.Address = "a:b" }), []string{`service.address: "a:b": want an IP address or host name`}},
		{"address and port", svc(func(s *ServiceConfig) { s.Address, s.Port = "a b", 0 }), []string{`service.address: "a b"`, "service.port: 0: "}},
		{"weight", svc(func(s *ServiceConfig) { s.Weight = 10001 }), []string{"service.weight: 10001: out of range: want 0..10000"}},
		{"negative weight", svc(func(s *ServiceConfig) { s.Weight = -1 }), []string{"service.weight: -1: out of range: want 0..10000"}},
		{"ttl below 2s", svc(func(s *ServiceConfig) { s.TTL = time.Second }), []string{"service.ttl: 1s: want at least 2s"}},
		{"service name", svc(func(s *ServiceConfig) { s.Name = "a/b"; s.ID = "x" }), []string{`service.name: "a/b": want letters`}},
		{"service id", svc(func(s *ServiceConfig) { s.ID = "-x" }), []string{`service.id: "-x": want letters`}},
		{"default id too long", svc(func(s *ServiceConfig) { s.Name = strings.Repeat("s", 120) }), []string{`service.id: "sss`, "the default id"}},
		{"empty metadata key", svc(func(s *ServiceConfig) { s.Metadata = map[string]string{"": "x"} }), []string{`service.metadata: "": want non-empty keys`}},
		{"negative drain timeout", svc(func(s *ServiceConfig) { s.DrainTimeout = -time.Second }), []string{"service.drain_timeout: -1s: want 0 or more"}},
		{"both checks", svc(func(s *ServiceConfig) { s.Check.HTTP = "http://x/h"; s.Check.TCP = "x:1" }),
			[]string{"service.check: http and tcp are set: want at most one of the http, tcp and exec checks"}},
		{"all checks", svc(func(s *ServiceConfig) {
			s.Check.HTTP, s.Check.TCP, s.Check.Exec = "http://x/h", "x:1", []string{"true"}
		}), []string{"service.check: http, tcp and exec are set"}},
		{"check url", svc(func(s *ServiceConfig) { s.Check.HTTP = "ftp://x" }), []string{`service.check.http: "ftp://x": want an http:// or https:// URL`}},
		{"check url without host", svc(func(s *ServiceConfig) { s.Check.HTTP = "http:///healthz" }), []string{`service.check.http: "http:///healthz": want an http:// or https:// URL with a host`}},
		{"check tcp", svc(func(s *ServiceConfig) { s.Check.TCP = "nohost" }), []string{`service.check.tcp: "nohost": want host:port`}},
		{"check tcp port out of range", svc(func(s *ServiceConfig) { s.Check.TCP = "127.0.0.1:99999" }), []string{`service.check.tcp: "127.0.0.1:99999": want a port number in 1..65535`}},
		{"check tcp empty host", svc(func(s *ServiceConfig) { s.Check.TCP = ":80" }), []string{`service.check.tcp: ":80": the host is empty`}},
		{"check tcp ipv6 without brackets", svc(func(s *ServiceConfig) { s.Check.TCP = "::1:80" }), []string{`service.check.tcp: "::1:80": an IPv6 host must be in brackets`}},
		{"check exec without program", svc(func(s *ServiceConfig) { s.Check.Exec = []string{"", "x"} }), []string{`service.check.exec: ["" "x"]: want an argv whose first element is the program`}},
		{"check interval", svc(func(s *ServiceConfig) { s.Check.Interval = -time.Second }), []string{"service.check.interval: -1s: want a positive duration"}},
		{"check timeout negative", svc(func(s *ServiceConfig) { s.Check.Timeout = -time.Second }), []string{"service.check.timeout: -1s: want a positive duration"}},
		{"check timeout", svc(func(s *ServiceConfig) { s.Check.Timeout = 10 * time.Second }), []string{"service.check.timeout: 10s: want a duration no longer than service.check.interval (5s)"}},
		{"failures", svc(func(s *ServiceConfig) { s.Check.FailuresBeforeCritical = -1 }), []string{"service.check.failures_before_critical: -1: want at least 1"}},
	})
}

// messageCase is a configuration change and the texts its problems must
// contain.
type messageCase struct {
	name string
	mod  func(*Config)
	want []string
}

// checkMessages runs each case on a valid base config and checks that
// Validate reports it, in words for people.
func checkMessages(t *testing.T, tests []messageCase) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := validBase(t)
			tc.mod(&c)
			if err := c.Complete(); err != nil {
				t.Fatal(err)
			}
			err := c.Validate()
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
			// Messages are for people: no package prefixes, Go field names or Go values.
			for _, bad := range []string{"registry", "config:", "Check.", "TTL", "http=", "tcp="} {
				if strings.Contains(err.Error(), bad) {
					t.Errorf("error %q contains %q", err, bad)
				}
			}
		})
	}
}

// TestValidateReportsOnce: a problem is reported once, on the field the
// user wrote, not again on the fields derived from it.
func TestValidateReportsOnce(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		want string // the only problem
	}{
		{"bad service name, default id", func(c *Config) { c.Service.Name = "a/b" }, `service.name: "a/b"`},
		{"bad node name, default id", func(c *Config) { c.Name = "a/b" }, `name: "a/b"`},
		{"bad namespace", func(c *Config) { c.Etcd.Namespace = "sidecar/" }, `etcd.namespace: "sidecar/"`},
		{"port out of range, default id", func(c *Config) { c.Service.Port = 70000 }, "service.port: 70000"},
		{"address empty, default id", func(c *Config) { c.Service.Address = "" }, `service.address: ""`},
		{"bad service name with spaces, default id", func(c *Config) { c.Service.Name = "bad name!" }, `service.name: "bad name!"`},
		{"node name with a space, derived embedded.name", func(c *Config) { c.Name = "web 1" }, `name: "web 1"`},
		{"listen client url port, derived advertise url", func(c *Config) { c.Embedded.ListenClientURLs = []string{"http://127.0.0.1:99999"} },
			`embedded.listen_client_urls[0]: "http://127.0.0.1:99999" must have a port in 1..65535`},
		{"listen peer url, derived advertise url", func(c *Config) { c.Embedded.ListenPeerURLs = []string{"http://127.0.0.1:2380x"} },
			`embedded.listen_peer_urls[0]: "http://127.0.0.1:2380x"`},
		{"unspecified listen address, derived advertise url", func(c *Config) { c.Embedded.ListenClientURLs = []string{"http://0.0.0.0:2379"} },
			`embedded.advertise_client_urls: [] defaults to listen_client_urls, but "http://0.0.0.0:2379" is an unspecified address no one can dial; set advertise_client_urls`},
		{"https listen client url without TLS files, derived advertise url", func(c *Config) { c.Embedded.ListenClientURLs = []string{"https://127.0.0.1:2379"} },
			`embedded.cert_file: "" must be set, with embedded.key_file, for embedded.listen_client_urls[0] "https://127.0.0.1:2379", which uses https; or use http`},
		{"check interval below the default timeout, timeout set", func(c *Config) { c.Service.Check.Interval, c.Service.Check.Timeout = time.Second, 3*time.Second },
			"service.check.timeout: 3s: want a duration no longer than service.check.interval (1s)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := validBase(t)
			c.Service.Name, c.Service.Port, c.Service.Address = "orders", 8080, "10.0.0.5"
			tc.mod(&c)
			if err := c.Complete(); err != nil {
				t.Fatal(err)
			}
			err := c.Validate()
			if err == nil {
				t.Fatal("no error")
			}
			if lines := strings.Split(err.Error(), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], tc.want) {
				t.Errorf("problems:\n%v\nwant only %q", err, tc.want)
			}
		})
	}
}

// TestValidateMatchesRegistry: every service section Validate accepts, the
// registry accepts, so `sidecar run` never fails after etcd is up for a
// configuration problem.
func TestValidateMatchesRegistry(t *testing.T) {
	for _, tcp := range []string{"127.0.0.1:8080", "[::1]:8080", "localhost:80", "127.0.0.1:99999", ":80", "::1:80", "a b:80"} {
		c := validBase(t)
		c.Service.Name, c.Service.Port, c.Service.Address = "orders", 8080, "10.0.0.5"
		c.Service.Check.TCP = tcp
		if err := c.Complete(); err != nil {
			t.Fatal(err)
		}
		daemonErr, registryErr := c.Validate(), c.RegistryConfig().Validate()
		if (daemonErr == nil) != (registryErr == nil) {
			t.Errorf("check.tcp %q: daemon says %v, registry says %v", tcp, daemonErr, registryErr)
		}
	}
}

func TestTemplates(t *testing.T) {
	c := validBase(t)
	c.Service.Name, c.Service.Port = "orders", 8080
	const lo = `{{ GetAllInterfaces | include "flag" "loopback" | include "type" "IPv4" | attr "address" }}`
	c.Service.Address = lo
	c.Embedded.ListenClientURLs = []string{"http://" + lo + ":2379"}
	c.API.HTTP = lo + ":9090"
	if err := c.Complete(); err != nil {
		t.Fatal(err)
	}
	if c.Service.Address != "127.0.0.1" || c.Embedded.ListenClientURLs[0] != "http://127.0.0.1:2379" ||
		c.Embedded.AdvertiseClientURLs[0] != "http://127.0.0.1:2379" || c.API.HTTP != "127.0.0.1:9090" {
		t.Fatalf("templates not rendered: %q %q %q", c.Service.Address, c.Embedded.ListenClientURLs, c.API.HTTP)
	}
	bad := validBase(t)
	bad.API.HTTP = `{{ GetInterfaceIP "nosuchif0" }}`
	bad.Embedded.ListenPeerURLs = []string{"http://{{ Nope }}:2380"}
	err := bad.Complete()
	if err == nil || !strings.Contains(err.Error(), "api.http: ") || !strings.Contains(err.Error(), "embedded.listen_peer_urls[0]: ") {
		t.Fatalf("template errors = %v", err)
	}
}
