package main

import (
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/sidecar"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sidecar.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPrecedence(t *testing.T) {
	file := writeFile(t, `
name: from-file
data_dir: /tmp/file
etcd:
  namespace: /file
log:
  level: warn
`)
	tests := []struct {
		name      string
		env       []string
		args      []string
		wantName  string
		wantNS    string
		wantLevel string
	}{
		{"file only", nil, nil, "from-file", "/file", "warn"},
		{"env beats file", []string{"SIDECAR_NAME=from-env", "SIDECAR_ETCD_NAMESPACE=/env"}, nil, "from-env", "/env", "warn"},
		{"flag beats env", []string{"SIDECAR_NAME=from-env"}, []string{"--name", "from-flag", "--log-level", "debug"}, "from-flag", "/file", "debug"},
		{"flag beats env and file", []string{"SIDECAR_ETCD_NAMESPACE=/env"}, []string{"--namespace", "/flag"}, "from-file", "/flag", "warn"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := newRunCmd()
			if err := cmd.Flags().Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			cfg, err := loadConfig(file, cmd.Flags(), tc.env)
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			if cfg.Name != tc.wantName || cfg.Etcd.Namespace != tc.wantNS || cfg.Log.Level != tc.wantLevel {
				t.Fatalf("got name=%q ns=%q level=%q, want %q %q %q", cfg.Name, cfg.Etcd.Namespace, cfg.Log.Level, tc.wantName, tc.wantNS, tc.wantLevel)
			}
		})
	}
}

func TestDefaultsWithoutConfig(t *testing.T) {
	cfg, err := loadConfig("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := sidecar.Defaults()
	if cfg.DataDir != "./sidecar-data" || !cfg.EmbeddedMode() ||
		strings.Join(cfg.Embedded.ListenClientURLs, ",") != "http://127.0.0.1:2379" ||
		strings.Join(cfg.Embedded.ListenPeerURLs, ",") != "http://127.0.0.1:2380" ||
		cfg.Service.TTL != want.Service.TTL || cfg.Etcd.Namespace != "/sidecar" {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
}

func TestFlagList(t *testing.T) {
	cmd := newRunCmd()
	if err := cmd.Flags().Parse([]string{"--etcd-endpoints", "http://10.0.0.1:2379,http://10.0.0.2:2379"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig("", cmd.Flags(), []string{"SIDECAR_ETCD_ENDPOINTS=http://10.9.9.9:2379"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Etcd.Endpoints, " ") != "http://10.0.0.1:2379 http://10.0.0.2:2379" {
		t.Fatalf("endpoints = %q", cfg.Etcd.Endpoints)
	}
}

func TestEnvLists(t *testing.T) {
	cfg, err := loadConfig("", nil, []string{"SIDECAR_ETCD_ENDPOINTS=http://10.0.0.1:2379,http://10.0.0.2:2379", "SIDECAR_API_ALLOWED_UIDS=1000,1001"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Etcd.Endpoints) != 2 || cfg.Etcd.Endpoints[1] != "http://10.0.0.2:2379" || cfg.EmbeddedMode() {
		t.Fatalf("endpoints = %q", cfg.Etcd.Endpoints)
	}
	if len(cfg.API.AllowedUIDs) != 2 || cfg.API.AllowedUIDs[0] != 1000 {
		t.Fatalf("allowed uids = %v", cfg.API.AllowedUIDs)
	}
}

func TestFileListReplacesDefault(t *testing.T) {
	file := writeFile(t, "embedded:\n  listen_client_urls: [http://127.0.0.1:12379]\n")
	cfg, err := loadConfig(file, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.Embedded.ListenClientURLs, ","); got != "http://127.0.0.1:12379" {
		t.Fatalf("listen_client_urls = %q", got)
	}
}

// An etcd.conf environment file (systemd EnvironmentFile=) works unchanged.
func TestEtcdEnvCompat(t *testing.T) {
	env := []string{
		"ETCD_NAME=etcd02",
		"ETCD_DATA_DIR=/var/lib/etcd",
		"ETCD_LISTEN_CLIENT_URLS=http://10.0.0.14:2379,http://127.0.0.1:2379",
		"ETCD_ADVERTISE_CLIENT_URLS=http://10.0.0.14:2379",
		"ETCD_LISTEN_PEER_URLS=http://10.0.0.14:2380",
		"ETCD_INITIAL_ADVERTISE_PEER_URLS=http://10.0.0.14:2380",
		"ETCD_INITIAL_CLUSTER=etcd01=http://10.0.0.13:2380,etcd02=http://10.0.0.14:2380,etcd03=http://10.0.0.15:2380",
		"ETCD_INITIAL_CLUSTER_TOKEN=tkn",
		"ETCD_INITIAL_CLUSTER_STATE=existing",
		"ETCD_HEARTBEAT_INTERVAL=200",
		"ETCD_ELECTION_TIMEOUT=2000",
		"ETCD_SNAPSHOT_COUNT=5000",
	}
	t.Run("fills unset fields", func(t *testing.T) {
		cfg, err := loadConfig("", nil, env)
		if err != nil {
			t.Fatal(err)
		}
		e := cfg.Embedded
		if e.Name != "etcd02" || e.DataDir != "/var/lib/etcd" || len(e.ListenClientURLs) != 2 ||
			e.AdvertiseClientURLs[0] != "http://10.0.0.14:2379" || e.InitialAdvertisePeerURLs[0] != "http://10.0.0.14:2380" ||
			!strings.HasPrefix(e.InitialCluster, "etcd01=") || e.InitialClusterToken != "tkn" || e.InitialClusterState != "existing" ||
			e.HeartbeatInterval != 200*time.Millisecond || e.ElectionTimeout != 2*time.Second || e.SnapshotCount != 5000 {
			t.Fatalf("ETCD_* not applied: %+v", e)
		}
	})
	t.Run("sidecar settings win", func(t *testing.T) {
		file := writeFile(t, "embedded:\n  name: from-file\n")
		cfg, err := loadConfig(file, nil, append(env, "SIDECAR_EMBEDDED_INITIAL_CLUSTER_TOKEN=mine"))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Embedded.Name != "from-file" || cfg.Embedded.InitialClusterToken != "mine" || cfg.Embedded.DataDir != "/var/lib/etcd" {
			t.Fatalf("got name=%q token=%q dir=%q", cfg.Embedded.Name, cfg.Embedded.InitialClusterToken, cfg.Embedded.DataDir)
		}
	})
	t.Run("ignored in join mode", func(t *testing.T) {
		cfg, err := loadConfig("", nil, append(env, "SIDECAR_ETCD_ENDPOINTS=http://10.0.0.1:2379"))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Embedded.Name != "" {
			t.Fatalf("embedded.name = %q in join mode", cfg.Embedded.Name)
		}
	})
	t.Run("TLS files", func(t *testing.T) {
		cfg, err := loadConfig("", nil, append(env,
			"ETCD_CERT_FILE=/etc/etcd/server.pem", "ETCD_KEY_FILE=/etc/etcd/server-key.pem",
			"ETCD_TRUSTED_CA_FILE=/etc/etcd/ca.pem", "ETCD_CLIENT_CERT_AUTH=true",
			"ETCD_PEER_CERT_FILE=/etc/etcd/peer.pem", "ETCD_PEER_KEY_FILE=/etc/etcd/peer-key.pem",
			"ETCD_PEER_TRUSTED_CA_FILE=/etc/etcd/peer-ca.pem", "ETCD_PEER_CLIENT_CERT_AUTH=true"))
		if err != nil {
			t.Fatal(err)
		}
		e := cfg.Embedded
		if e.CertFile != "/etc/etcd/server.pem" || e.KeyFile != "/etc/etcd/server-key.pem" || e.TrustedCAFile != "/etc/etcd/ca.pem" || !e.ClientCertAuth ||
			e.PeerCertFile != "/etc/etcd/peer.pem" || e.PeerKeyFile != "/etc/etcd/peer-key.pem" || e.PeerTrustedCAFile != "/etc/etcd/peer-ca.pem" || !e.PeerClientCertAuth {
			t.Fatalf("ETCD_* TLS variables not applied: %+v", e)
		}
	})
	t.Run("bad boolean names the variable", func(t *testing.T) {
		_, err := loadConfig("", nil, []string{"ETCD_PEER_CLIENT_CERT_AUTH=maybe"})
		if err == nil || !strings.HasPrefix(err.Error(), "ETCD_PEER_CLIENT_CERT_AUTH: ") || strings.Contains(err.Error(), "\n") {
			t.Fatalf("err = %v", err)
		}
		t.Log(err)
	})
	t.Run("bad value names the variable", func(t *testing.T) {
		_, err := loadConfig("", nil, []string{"ETCD_HEARTBEAT_INTERVAL=100ms"})
		if err == nil || !strings.Contains(err.Error(), `ETCD_HEARTBEAT_INTERVAL: "100ms": want milliseconds`) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"unknown fields", "nmae: x\netcd:\n  endpoint: [a]\n", []string{"nmae: unknown field", "etcd.endpoint: unknown field"}},
		{"unknown field in a list", "config:\n  - prefix: /a/\n    dir: /tmp/a\n    mode: x\n", []string{"config[0].mode: unknown field"}},
		{"bad durations", "service:\n  ttl: 5 seconds\ncoordination:\n  ttl: 5\n", []string{`service.ttl: "5 seconds": want a duration such as`, "coordination.ttl: 5: want a duration with a unit"}},
		{"bad size", "embedded:\n  quota_backend_bytes: lots\n", []string{`embedded.quota_backend_bytes: invalid size "lots"`}},
		{"bad int", "service:\n  port: eighty\n", []string{`service.port: "eighty": not a valid int`}},
		{"bad yaml", "name: [unclosed\n", []string{"config file"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadConfig(writeFile(t, tc.yaml), nil, nil)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// Keys and values of service.metadata are the user's data: they reach the
// config as written, from the file and from the environment (a JSON object),
// and the variable beats the file.
func TestMetadataKeepsCase(t *testing.T) {
	file := writeFile(t, `
service:
  name: orders
  metadata: {Version: v1, AZ: eu-1a, build: 1.10, Empty: }
`)
	upper := writeFile(t, "Service:\n  Metadata:\n    Zone: A\n")
	merged := writeFile(t, "service:\n  metadata:\n    <<: {Team: Core}\n    Version: v1\n")
	tests := []struct {
		name string
		file string
		env  []string
		want map[string]string
	}{
		{"file", file, nil, map[string]string{"Version": "v1", "AZ": "eu-1a", "build": "1.10", "Empty": ""}},
		{"env beats file", file, []string{`SIDECAR_SERVICE_METADATA={"Version":"v2","Replicas":3,"Canary":true}`}, map[string]string{"Version": "v2", "Replicas": "3", "Canary": "true"}},
		{"env only", "", []string{`SIDECAR_SERVICE_METADATA= {"AZ": "eu-1b"} `}, map[string]string{"AZ": "eu-1b"}},
		{"empty env clears", file, []string{"SIDECAR_SERVICE_METADATA="}, map[string]string{}},
		{"field names in any case", upper, nil, map[string]string{"Zone": "A"}},
		{"merge key", merged, nil, map[string]string{"Team": "Core", "Version": "v1"}},
		{"unset", "", nil, map[string]string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadConfig(tc.file, nil, tc.env)
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			if !maps.Equal(cfg.Service.Metadata, tc.want) {
				t.Fatalf("metadata = %#v, want %#v", cfg.Service.Metadata, tc.want)
			}
		})
	}
}

// A map that does not parse is one configuration error naming the field or
// variable, never ignored and never reported twice.
func TestMetadataErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		env        []string
		want       string
	}{
		{"env not JSON", "", []string{"SIDECAR_SERVICE_METADATA=version=v1"}, `SIDECAR_SERVICE_METADATA: "version=v1": want a JSON object of names to strings`},
		{"env JSON array", "", []string{`SIDECAR_SERVICE_METADATA=["a"]`}, `SIDECAR_SERVICE_METADATA: "[\"a\"]": want a JSON object`},
		{"env nested object", "", []string{`SIDECAR_SERVICE_METADATA={"a":{"b":"c"}}`}, `SIDECAR_SERVICE_METADATA: "{\"a\":{\"b\":\"c\"}}": want a JSON object`},
		{"env trailing data", "", []string{`SIDECAR_SERVICE_METADATA={"a":"b"}}`}, `SIDECAR_SERVICE_METADATA: "{\"a\":\"b\"}}": want a JSON object`},
		{"file list", "service:\n  metadata: [a, b]\n", nil, "service.metadata: want a mapping of names to values"},
		{"file string", "service:\n  metadata: version=v1\n", nil, "service.metadata: want a mapping of names to values"},
		{"file nested value", "service:\n  metadata: {Tags: [a, b]}\n", nil, "service.metadata.Tags: want a string, number or boolean"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := ""
			if tc.yaml != "" {
				file = writeFile(t, tc.yaml)
			}
			_, err := loadConfig(file, nil, tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if n := strings.Count(err.Error(), "\n") + 1; n != 1 {
				t.Fatalf("%d errors, want one:\n%v", n, err)
			}
		})
	}
}

// Every map field of the configuration is read by rawMaps: a map[string]string
// outside lists. A map of another type, or inside a list of structs, would
// reach the config through viper with its keys lower-cased.
func TestMapFields(t *testing.T) {
	var walk func(reflect.Type, string, bool)
	walk = func(t2 reflect.Type, path string, inList bool) {
		switch t2.Kind() {
		case reflect.Struct:
			for i := range t2.NumField() {
				f := t2.Field(i)
				walk(f.Type, path+"."+f.Tag.Get("mapstructure"), inList)
			}
		case reflect.Slice:
			walk(t2.Elem(), path+"[]", true)
		case reflect.Map:
			if inList || t2 != stringMapType {
				t.Errorf("%s: a %s is not read case-sensitively (see rawMaps)", path, t2)
			}
		}
	}
	walk(reflect.TypeOf(sidecar.Config{}), "", false)
	if got := mapKeys(reflect.TypeOf(sidecar.Config{}), ""); !slices.Equal(got, []string{"service.metadata"}) {
		t.Fatalf("mapKeys = %q", got)
	}
}
