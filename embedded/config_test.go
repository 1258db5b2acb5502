package embedded

import (
	"strings"
	"testing"
	"time"
)

func validConfig() Config {
	return Config{
		Name:             "n1",
		DataDir:          "/var/lib/sidecar/etcd",
		ListenClientURLs: []string{"http://127.0.0.1:2379"},
		ListenPeerURLs:   []string{"http://127.0.0.1:2380"},
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		want   []string // substrings of the error, in one message each; none: valid
	}{
		{"defaults", func(*Config) {}, nil},
		{"static cluster", func(c *Config) {
			c.ListenPeerURLs = []string{"http://10.0.0.1:2380"}
			c.ListenClientURLs = []string{"http://0.0.0.0:2379"}
			c.AdvertiseClientURLs = []string{"http://10.0.0.1:2379"}
			c.InitialCluster = "n1=http://10.0.0.1:2380,n2=http://10.0.0.2:2380,n3=http://10.0.0.3:2380"
			c.InitialClusterState = "new"
		}, nil},
		{"join", func(c *Config) { c.Join = []string{"http://10.0.0.1:2379", "http://node2:2379"} }, nil},
		{"join with state existing", func(c *Config) {
			c.Join = []string{"http://10.0.0.1:2379"}
			c.InitialClusterState = "existing"
		}, nil},
		{"discovery srv", func(c *Config) { c.DiscoverySRV = "etcd.example.com" }, nil},
		{"empty name", func(c *Config) { c.Name = "" }, []string{`embedded.name: "" must not be empty`}},
		{"name with comma", func(c *Config) { c.Name = "a,b" }, []string{`embedded.name: "a,b" must not contain`}},
		{"empty data dir", func(c *Config) { c.DataDir = "" }, []string{`embedded.data_dir: "" must not be empty`}},
		{"no listen client url", func(c *Config) { c.ListenClientURLs = nil }, []string{"embedded.listen_client_urls: [] must list at least one URL"}},
		{"listen url scheme", func(c *Config) { c.ListenClientURLs = []string{"ftp://127.0.0.1:2379"} },
			[]string{`embedded.listen_client_urls[0]: "ftp://127.0.0.1:2379" must be http://host:port`}},
		{"listen url https without certificate", func(c *Config) { c.ListenPeerURLs = []string{"https://127.0.0.1:2380"} },
			[]string{`embedded.peer_cert_file: "" must be set, with embedded.peer_key_file, for embedded.listen_peer_urls[0] "https://127.0.0.1:2380", which uses https; or use http`}},
		{"listen url without port", func(c *Config) { c.ListenPeerURLs = []string{"http://127.0.0.1"} },
			[]string{`embedded.listen_peer_urls[0]: "http://127.0.0.1" must be http://host:port`}},
		{"listen url port out of range", func(c *Config) { c.ListenClientURLs = []string{"http://127.0.0.1:70000"} },
			[]string{`embedded.listen_client_urls[0]: "http://127.0.0.1:70000" must have a port in 1..65535`}},
		{"listen url with host name", func(c *Config) { c.ListenClientURLs = []string{"http://node1:2379"} },
			[]string{`embedded.listen_client_urls[0]: "http://node1:2379" must have an IP address`}},
		{"listen url with path", func(c *Config) { c.ListenClientURLs = []string{"http://127.0.0.1:2379/x"} },
			[]string{`embedded.listen_client_urls[0]: "http://127.0.0.1:2379/x" must be http(s)://host:port without user, path or query`}},
		{"advertise default from unspecified listen", func(c *Config) { c.ListenClientURLs = []string{"http://0.0.0.0:2379"} },
			[]string{`embedded.advertise_client_urls: [] defaults to listen_client_urls, but "http://0.0.0.0:2379" is an unspecified address`}},
		{"advertise unspecified", func(c *Config) { c.InitialAdvertisePeerURLs = []string{"http://[::]:2380"} },
			[]string{`embedded.initial_advertise_peer_urls[0]: "http://[::]:2380" is an unspecified address`}},
		{"advertise bad url", func(c *Config) { c.AdvertiseClientURLs = []string{"127.0.0.1:2379"} },
			[]string{`embedded.advertise_client_urls[0]: "127.0.0.1:2379" must be http://host:port`}},
		{"cluster state", func(c *Config) { c.InitialClusterState = "old" },
			[]string{`embedded.initial_cluster_state: "old" must be new or existing`}},
		{"initial cluster syntax", func(c *Config) { c.InitialCluster = "n1=127.0.0.1:2380" },
			[]string{`embedded.initial_cluster: "n1=127.0.0.1:2380" must be name=http://host:port`}},
		{"initial cluster without this member", func(c *Config) { c.InitialCluster = "n2=http://127.0.0.1:2380" },
			[]string{`embedded.initial_cluster: "n2=http://127.0.0.1:2380" must contain this member (name "n1")`}},
		{"initial cluster with other peer url", func(c *Config) { c.InitialCluster = "n1=http://127.0.0.1:2390" },
			[]string{`embedded.initial_cluster: "n1=http://127.0.0.1:2390" lists http://127.0.0.1:2390 for member "n1", which must equal initial_advertise_peer_urls http://127.0.0.1:2380`}},
		{"initial cluster and join", func(c *Config) {
			c.InitialCluster = "n1=http://127.0.0.1:2380"
			c.Join = []string{"http://10.0.0.1:2379"}
		}, []string{"embedded.join: only one of initial_cluster, discovery_srv and join may be set (got initial_cluster and join)"}},
		{"discovery srv and initial cluster", func(c *Config) {
			c.InitialCluster = "n1=http://127.0.0.1:2380"
			c.DiscoverySRV = "example.com"
		}, []string{"embedded.discovery_srv: only one of initial_cluster, discovery_srv and join may be set (got initial_cluster and discovery_srv)"}},
		{"join and state new", func(c *Config) {
			c.Join = []string{"http://10.0.0.1:2379"}
			c.InitialClusterState = "new"
		}, []string{`embedded.initial_cluster_state: "new" conflicts with join`}},
		{"join url", func(c *Config) { c.Join = []string{"10.0.0.1:2379"} },
			[]string{`embedded.join[0]: "10.0.0.1:2379" must be http://host:port`}},
		{"discovery srv with scheme", func(c *Config) { c.DiscoverySRV = "http://example.com" },
			[]string{`embedded.discovery_srv: "http://example.com" must be a DNS domain`}},
		{"discovery srv with port", func(c *Config) { c.DiscoverySRV = "example.com:53" },
			[]string{`embedded.discovery_srv: "example.com:53" must be a DNS domain`}},
		{"discovery srv label", func(c *Config) { c.DiscoverySRV = "-bad.example.com" },
			[]string{`embedded.discovery_srv: "-bad.example.com" must be a DNS domain`}},
		{"heartbeat too short", func(c *Config) { c.HeartbeatInterval = 5 * time.Millisecond },
			[]string{"embedded.heartbeat_interval: 5ms must be at least 10ms"}},
		{"heartbeat not whole ms", func(c *Config) { c.HeartbeatInterval = 10500 * time.Microsecond },
			[]string{"embedded.heartbeat_interval: 10.5ms must be a whole number of milliseconds"}},
		{"election below 5 heartbeats", func(c *Config) {
			c.HeartbeatInterval = 100 * time.Millisecond
			c.ElectionTimeout = 400 * time.Millisecond
		}, []string{"embedded.election_timeout: 400ms must be at least 5 x embedded.heartbeat_interval (100ms) = 500ms"}},
		{"default election below 5 heartbeats", func(c *Config) { c.HeartbeatInterval = 300 * time.Millisecond },
			[]string{"embedded.election_timeout: 1s must be at least 5 x embedded.heartbeat_interval (300ms) = 1.5s"}},
		{"election too long", func(c *Config) { c.ElectionTimeout = time.Minute },
			[]string{"embedded.election_timeout: 1m0s must be at most 50s"}},
		{"compaction retention", func(c *Config) { c.AutoCompactionRetention = 500 * time.Millisecond },
			[]string{"embedded.auto_compaction_retention: 500ms must be at least 1s"}},
		{"quota negative", func(c *Config) { c.QuotaBackendBytes = -1 },
			[]string{"embedded.quota_backend_bytes: -1 must be in 1..8589934592"}},
		{"quota too large", func(c *Config) { c.QuotaBackendBytes = 9 << 30 },
			[]string{"embedded.quota_backend_bytes: 9663676416 must be in 1..8589934592"}},
		{"start timeout", func(c *Config) { c.StartTimeout = -time.Second },
			[]string{"embedded.start_timeout: -1s must not be negative"}},
		{"every problem at once", func(c *Config) {
			c.Name = ""
			c.DataDir = ""
			c.ElectionTimeout = 200 * time.Millisecond
			c.QuotaBackendBytes = -5
		}, []string{"embedded.name:", "embedded.data_dir:", "embedded.election_timeout: 200ms", "embedded.quota_backend_bytes: -5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.modify(&c)
			before := c
			err := c.Validate()
			if c.InitialCluster != before.InitialCluster || len(c.AdvertiseClientURLs) != len(before.AdvertiseClientURLs) {
				t.Errorf("Validate modified the config")
			}
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error containing %q", tt.want)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Errorf("Validate() gave %d messages, want %d:\n%v", len(lines), len(tt.want), err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() =\n%v\nwant a message containing %q", err, w)
				}
			}
		})
	}
}

func TestWithDefaults(t *testing.T) {
	c := validConfig().withDefaults()
	if got, want := c.InitialCluster, "n1=http://127.0.0.1:2380"; got != want {
		t.Errorf("InitialCluster = %q, want %q", got, want)
	}
	if got := c.AdvertiseClientURLs; len(got) != 1 || got[0] != "http://127.0.0.1:2379" {
		t.Errorf("AdvertiseClientURLs = %v, want the listen URLs", got)
	}
	if c.InitialClusterState != "new" || c.InitialClusterToken != "etcd-cluster" || c.HeartbeatInterval != 100*time.Millisecond ||
		c.ElectionTimeout != time.Second || c.SnapshotCount != 10000 || c.AutoCompactionRetention != time.Hour ||
		c.QuotaBackendBytes != 2<<30 || c.StartTimeout != time.Minute || c.Logger == nil {
		t.Errorf("defaults not applied: %+v", c)
	}
	j := validConfig()
	j.Join = []string{"http://10.0.0.1:2379"}
	if d := j.withDefaults(); d.InitialClusterState != "existing" || d.InitialCluster != "" {
		t.Errorf("join defaults: state %q, initial cluster %q; want existing and empty", d.InitialClusterState, d.InitialCluster)
	}
}

func TestEmbedConfig(t *testing.T) {
	c := validConfig()
	c.HeartbeatInterval = 50 * time.Millisecond
	c.ElectionTimeout = 750 * time.Millisecond
	c.SnapshotCount = 500
	c.AutoCompactionRetention = 30 * time.Minute
	c.QuotaBackendBytes = 1 << 30
	ec := c.withDefaults().embedConfig(nil, "n1=http://127.0.0.1:2380", "new")
	if ec.TickMs != 50 || ec.ElectionMs != 750 || ec.SnapshotCount != 500 || ec.QuotaBackendBytes != 1<<30 ||
		ec.AutoCompactionMode != "periodic" || ec.AutoCompactionRetention != "30m0s" {
		t.Errorf("embed config: tick %d election %d snapshot %d quota %d compaction %s %s",
			ec.TickMs, ec.ElectionMs, ec.SnapshotCount, ec.QuotaBackendBytes, ec.AutoCompactionMode, ec.AutoCompactionRetention)
	}
	if ec.Name != "n1" || ec.Dir != c.DataDir || ec.ClusterState != "new" || ec.InitialClusterToken != "etcd-cluster" ||
		ec.AdvertiseClientUrls[0].String() != "http://127.0.0.1:2379" {
		t.Errorf("embed config: name %q dir %q state %q token %q advertise %v",
			ec.Name, ec.Dir, ec.ClusterState, ec.InitialClusterToken, ec.AdvertiseClientUrls)
	}
}
