package sidecar

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/configsync"
	"github.com/sidecar-dev/sidecar/registry"
)

// Config is the whole configuration of the daemon (SPEC §3). Field tags are
// the YAML keys; cmd/sidecar fills it from file, environment and flags.
type Config struct {
	Name         string          `mapstructure:"name"`
	DataDir      string          `mapstructure:"data_dir"`
	Etcd         EtcdConfig      `mapstructure:"etcd"`
	Embedded     EmbeddedConfig  `mapstructure:"embedded"`
	Service      ServiceConfig   `mapstructure:"service"`
	Coordination CoordConfig     `mapstructure:"coordination"`
	Config       []MappingConfig `mapstructure:"config"`
	API          APIConfig       `mapstructure:"api"`
	Log          LogConfig       `mapstructure:"log"`
}

// EtcdConfig says how to reach etcd. Endpoints or DNSSRV select join mode.
type EtcdConfig struct {
	Endpoints    []string      `mapstructure:"endpoints"`
	DNSSRV       string        `mapstructure:"dns_srv"`
	Username     string        `mapstructure:"username"`
	Password     string        `mapstructure:"password"`
	PasswordFile string        `mapstructure:"password_file"`
	TLS          TLSConfig     `mapstructure:"tls"`
	DialTimeout  time.Duration `mapstructure:"dial_timeout"`
	Namespace    string        `mapstructure:"namespace"`
}

// TLSConfig holds client TLS files for join mode.
type TLSConfig struct {
	CAFile     string `mapstructure:"ca_file"`
	CertFile   string `mapstructure:"cert_file"`
	KeyFile    string `mapstructure:"key_file"`
	ServerName string `mapstructure:"server_name"`
}

// EmbeddedConfig configures the embedded etcd member; names follow etcd's flags.
type EmbeddedConfig struct {
	Name                     string        `mapstructure:"name"`
	DataDir                  string        `mapstructure:"data_dir"`
	ListenClientURLs         []string      `mapstructure:"listen_client_urls"`
	AdvertiseClientURLs      []string      `mapstructure:"advertise_client_urls"`
	ListenPeerURLs           []string      `mapstructure:"listen_peer_urls"`
	InitialAdvertisePeerURLs []string      `mapstructure:"initial_advertise_peer_urls"`
	InitialCluster           string        `mapstructure:"initial_cluster"`
	InitialClusterToken      string        `mapstructure:"initial_cluster_token"`
	InitialClusterState      string        `mapstructure:"initial_cluster_state"`
	Join                     []string      `mapstructure:"join"`
	DiscoverySRV             string        `mapstructure:"discovery_srv"`
	HeartbeatInterval        time.Duration `mapstructure:"heartbeat_interval"`
	ElectionTimeout          time.Duration `mapstructure:"election_timeout"`
	SnapshotCount            uint64        `mapstructure:"snapshot_count"`
	AutoCompactionRetention  time.Duration `mapstructure:"auto_compaction_retention"`
	QuotaBackendBytes        ByteSize      `mapstructure:"quota_backend_bytes"`
	// Client TLS of the member (etcd's --cert-file, ...); the daemon's own
	// client and the join client use the same files.
	CertFile       string `mapstructure:"cert_file"`
	KeyFile        string `mapstructure:"key_file"`
	TrustedCAFile  string `mapstructure:"trusted_ca_file"`
	ClientCertAuth bool   `mapstructure:"client_cert_auth"`
	// Peer TLS of the member (etcd's --peer-cert-file, ...).
	PeerCertFile       string `mapstructure:"peer_cert_file"`
	PeerKeyFile        string `mapstructure:"peer_key_file"`
	PeerTrustedCAFile  string `mapstructure:"peer_trusted_ca_file"`
	PeerClientCertAuth bool   `mapstructure:"peer_client_cert_auth"`
	// StartTimeout bounds the wait for the member to be ready (an addition
	// to the SPEC: a new static cluster needs a quorum of members started).
	StartTimeout time.Duration `mapstructure:"start_timeout"`
}

// ServiceConfig describes the host service to register. No name: register nothing.
type ServiceConfig struct {
	Name         string            `mapstructure:"name"`
	ID           string            `mapstructure:"id"`
	Address      string            `mapstructure:"address"`
	Port         int               `mapstructure:"port"`
	Weight       int               `mapstructure:"weight"`
	Metadata     map[string]string `mapstructure:"metadata"`
	TTL          time.Duration     `mapstructure:"ttl"`
	DrainTimeout time.Duration     `mapstructure:"drain_timeout"`
	Check        CheckConfig       `mapstructure:"check"`
}

// CheckConfig is the health check gating registration; at most one kind.
type CheckConfig struct {
	HTTP                   string        `mapstructure:"http"`
	TCP                    string        `mapstructure:"tcp"`
	Exec                   []string      `mapstructure:"exec"`
	Interval               time.Duration `mapstructure:"interval"`
	Timeout                time.Duration `mapstructure:"timeout"`
	FailuresBeforeCritical int           `mapstructure:"failures_before_critical"`
}

// CoordConfig configures locks and elections held through this sidecar.
type CoordConfig struct {
	TTL time.Duration `mapstructure:"ttl"`
}

// MappingConfig mirrors one etcd prefix into a local directory.
type MappingConfig struct {
	Prefix       string         `mapstructure:"prefix"`
	Dir          string         `mapstructure:"dir"`
	Layout       string         `mapstructure:"layout"`
	FileMode     string         `mapstructure:"file_mode"`
	Owner        string         `mapstructure:"owner"`
	Group        string         `mapstructure:"group"`
	OnDelete     string         `mapstructure:"on_delete"`
	MaxFileBytes ByteSize       `mapstructure:"max_file_bytes"`
	OnChange     OnChangeConfig `mapstructure:"on_change"`
}

// OnChangeConfig is what runs once per batch of mirrored changes.
type OnChangeConfig struct {
	Command  []string      `mapstructure:"command"`
	Signal   string        `mapstructure:"signal"`
	PIDFile  string        `mapstructure:"pid_file"`
	Debounce time.Duration `mapstructure:"debounce"`
	Timeout  time.Duration `mapstructure:"timeout"` // of the command; 0 = configsync.DefaultReloadTimeout
}

// APIConfig configures the local API.
type APIConfig struct {
	Socket      string `mapstructure:"socket"`
	SocketMode  string `mapstructure:"socket_mode"`
	AllowedUIDs []int  `mapstructure:"allowed_uids"`
	HTTP        string `mapstructure:"http"`
}

// LogConfig configures the daemon's log.
type LogConfig struct {
	Level  string `mapstructure:"level"`
	Format string `mapstructure:"format"`
}

// Defaults returns the configuration used for every field the user leaves unset.
func Defaults() Config {
	return Config{
		DataDir: "./sidecar-data",
		Etcd: EtcdConfig{
			DialTimeout: 5 * time.Second,
			Namespace:   "/sidecar",
		},
		Embedded: EmbeddedConfig{
			ListenClientURLs: []string{"http://127.0.0.1:2379"},
			ListenPeerURLs:   []string{"http://127.0.0.1:2380"},
			// initial_cluster_token and _state stay empty: the embedded
			// package defaults them (etcd-cluster, new), and join needs the
			// state unset.
			HeartbeatInterval:       100 * time.Millisecond,
			ElectionTimeout:         time.Second,
			SnapshotCount:           10000,
			AutoCompactionRetention: time.Hour,
			QuotaBackendBytes:       2 << 30,
			StartTimeout:            60 * time.Second,
		},
		Service: ServiceConfig{
			Address: "{{ GetPrivateIP }}",
			Weight:  100,
			TTL:     5 * time.Second,
			Check: CheckConfig{
				Interval: registry.DefaultCheckInterval,
				// Timeout stays 0: Complete sets it from the interval
				// (registry.DefaultTimeout), so that a short interval
				// does not meet a longer default timeout.
				FailuresBeforeCritical: registry.DefaultFailuresBeforeCritical,
			},
		},
		Coordination: CoordConfig{TTL: 5 * time.Second},
		API:          APIConfig{SocketMode: "0660"},
		Log:          LogConfig{Level: "info", Format: "text"},
	}
}

// Mapping defaults, applied per list element by Complete: configsync's,
// written as the config section writes them.
var (
	DefaultLayout       = string(configsync.LayoutFiles)
	DefaultFileMode     = fmt.Sprintf("%04o", configsync.DefaultFileMode)
	DefaultOnDelete     = string(configsync.OnDeleteRemove)
	DefaultMaxFileBytes = ByteSize(configsync.DefaultMaxFileBytes)
	DefaultDebounce     = configsync.DefaultDebounce
)

// EmbeddedMode reports whether the daemon runs its own etcd member.
func (c *Config) EmbeddedMode() bool {
	return len(c.Etcd.Endpoints) == 0 && c.Etcd.DNSSRV == ""
}

// DefaultSocketPath is the socket used when api.socket is empty; the CLI
// uses the same rule. It is [api.DefaultSocketPath], the one definition
// shared with the Go client and the CLI.
func DefaultSocketPath() string { return api.DefaultSocketPath() }

// SocketPath returns the configured socket path or the default.
func (c *Config) SocketPath() string {
	if c.API.Socket != "" {
		return c.API.Socket
	}
	return DefaultSocketPath()
}

// parseMode parses an octal permission string such as "0660".
func parseMode(s string) (os.FileMode, error) {
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("want an octal permission such as 0660")
	}
	return os.FileMode(m), nil
}
