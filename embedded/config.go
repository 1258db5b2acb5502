package embedded

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/types"
)

// Defaults applied to zero fields of Config.
const (
	DefaultInitialClusterToken     = "etcd-cluster"
	DefaultHeartbeatInterval       = 100 * time.Millisecond
	DefaultElectionTimeout         = time.Second
	DefaultSnapshotCount           = 10000
	DefaultAutoCompactionRetention = time.Hour
	DefaultQuotaBackendBytes       = 2 << 30
	DefaultStartTimeout            = 60 * time.Second

	// MaxQuotaBackendBytes is the largest backend quota etcd recommends.
	MaxQuotaBackendBytes = 8 << 30

	minHeartbeat      = 10 * time.Millisecond
	maxElection       = 50 * time.Second // etcd refuses longer election timeouts
	minCompaction     = time.Second
	urlForm           = "must be http://host:port (https://host:port with TLS)"
	clusterStateNew   = "new"
	clusterStateExist = "existing"
)

// Config is the embedded member's configuration. Field names follow etcd's
// flags; zero values mean the documented default. Validate names fields as
// they appear in the sidecar configuration file (embedded.<snake_case>).
type Config struct {
	Name    string // member name, unique in the cluster
	DataDir string // the etcd data dir itself (the sidecar passes <data_dir>/etcd)

	ListenClientURLs         []string
	AdvertiseClientURLs      []string // default: ListenClientURLs
	ListenPeerURLs           []string
	InitialAdvertisePeerURLs []string // default: ListenPeerURLs

	// InitialCluster is "name=peerURL,name=peerURL,..."; default:
	// Name=InitialAdvertisePeerURLs (a single-member cluster). Ignored by etcd
	// once the data dir holds a member.
	InitialCluster      string
	InitialClusterToken string // default etcd-cluster
	InitialClusterState string // new (default) | existing

	// Join lists client URLs of a running cluster. On first start (no member
	// in DataDir) the node is added to that cluster as a learner, started with
	// state existing, and promoted once in sync. Later starts do not add.
	Join []string

	// DiscoverySRV is a DNS domain; the initial cluster comes from the SRV
	// records _etcd-server-ssl._tcp.<domain> and _etcd-server._tcp.<domain>.
	DiscoverySRV string

	HeartbeatInterval       time.Duration // default 100ms, at least 10ms
	ElectionTimeout         time.Duration // default 1s, at least 5 x HeartbeatInterval
	SnapshotCount           uint64        // default 10000
	AutoCompactionRetention time.Duration // default 1h (periodic mode)
	QuotaBackendBytes       int64         // default 2 GiB, at most 8 GiB

	// ClientTLS serves the client URLs with TLS (etcd's --cert-file, ...),
	// PeerTLS the peer URLs (--peer-cert-file, ...); see TLS. With a side's
	// certificate set its URLs must be https, without it http.
	ClientTLS TLS
	PeerTLS   TLS

	// StartTimeout bounds how long Run waits for the member to serve
	// (default 60s); the first start of a static cluster waits for a quorum of
	// its members.
	StartTimeout time.Duration

	// Logger receives the package's own records (default: discard). Its
	// enabled level also sets etcd's log level: debug if it logs debug,
	// otherwise the higher of warn and its level; etcd writes JSON to stderr.
	Logger *slog.Logger
}

// withDefaults returns a copy of c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if len(c.AdvertiseClientURLs) == 0 {
		c.AdvertiseClientURLs = c.ListenClientURLs
	}
	if len(c.InitialAdvertisePeerURLs) == 0 {
		c.InitialAdvertisePeerURLs = c.ListenPeerURLs
	}
	if c.InitialClusterToken == "" {
		c.InitialClusterToken = DefaultInitialClusterToken
	}
	if c.InitialClusterState == "" {
		c.InitialClusterState = clusterStateNew
		if len(c.Join) > 0 {
			c.InitialClusterState = clusterStateExist
		}
	}
	if c.InitialCluster == "" && c.DiscoverySRV == "" && len(c.Join) == 0 {
		c.InitialCluster = clusterString(c.Name, c.InitialAdvertisePeerURLs)
	}
	setDefault(&c.HeartbeatInterval, DefaultHeartbeatInterval)
	setDefault(&c.ElectionTimeout, DefaultElectionTimeout)
	setDefault(&c.SnapshotCount, DefaultSnapshotCount)
	setDefault(&c.AutoCompactionRetention, DefaultAutoCompactionRetention)
	setDefault(&c.QuotaBackendBytes, DefaultQuotaBackendBytes)
	setDefault(&c.StartTimeout, DefaultStartTimeout)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

// clusterString formats one member's entries of an initial-cluster string.
func clusterString(name string, peerURLs []string) string {
	parts := make([]string, len(peerURLs))
	for i, u := range peerURLs {
		parts[i] = name + "=" + u
	}
	return strings.Join(parts, ",")
}

// Validate reports every problem of c at once (errors.Join), each naming the
// field, the value and what is allowed. It checks the values Run would use,
// defaults included, and does not modify c.
func (c *Config) Validate() error {
	d := c.withDefaults()
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(checkName(d.Name))
	if d.DataDir == "" {
		add(errors.New(`embedded.data_dir: "" must not be empty`))
	}
	add(checkURLs("listen_client_urls", d.ListenClientURLs, true))
	add(checkURLs("listen_peer_urls", d.ListenPeerURLs, true))
	add(checkAdvertised("advertise_client_urls", "listen_client_urls", c.AdvertiseClientURLs, d.AdvertiseClientURLs))
	add(checkAdvertised("initial_advertise_peer_urls", "listen_peer_urls", c.InitialAdvertisePeerURLs, d.InitialAdvertisePeerURLs))
	errs = append(errs, d.checkBootstrap(c)...)
	errs = append(errs, d.checkTuning()...)
	errs = append(errs, tlsSide{"", d.ClientTLS}.validate(slices.Concat(namedURLs("listen_client_urls", d.ListenClientURLs),
		namedURLs("advertise_client_urls", c.AdvertiseClientURLs), namedURLs("join", d.Join)))...)
	errs = append(errs, tlsSide{"peer_", d.PeerTLS}.validate(slices.Concat(namedURLs("listen_peer_urls", d.ListenPeerURLs),
		namedURLs("initial_advertise_peer_urls", c.InitialAdvertisePeerURLs), clusterURLs(c.InitialCluster)))...)
	return errors.Join(errs...)
}

func checkName(name string) error {
	switch {
	case name == "":
		return errors.New(`embedded.name: "" must not be empty`)
	case strings.ContainsAny(name, "=, \t\n"):
		return fmt.Errorf("embedded.name: %q must not contain '=', ',' or white space", name)
	}
	return nil
}

// checkURLs checks a list of URLs of the form http(s)://host:port (whether
// http or https is checked with the TLS files, see tlsSide); bind
// additionally requires an IP address (or localhost), as etcd does for
// listen URLs.
func checkURLs(field string, urls []string, bind bool) error {
	if len(urls) == 0 {
		return fmt.Errorf("embedded.%s: [] must list at least one URL", field)
	}
	var errs []error
	for i, s := range urls {
		if err := checkURL(s, bind); err != nil {
			errs = append(errs, fmt.Errorf("embedded.%s[%d]: %q %w", field, i, s, err))
		}
	}
	return errors.Join(errs...)
}

func checkURL(s string, bind bool) error {
	u, err := url.Parse(s)
	switch {
	case err != nil && strings.Contains(err.Error(), "invalid port"):
		return errors.New("must have a port in 1..65535")
	case err != nil, u.Scheme != "http" && u.Scheme != "https":
		return errors.New(urlForm)
	case u.User != nil || u.Opaque != "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "":
		return errors.New("must be http(s)://host:port without user, path or query")
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || host == "" {
		return errors.New(urlForm)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return errors.New("must have a port in 1..65535")
	}
	if bind && host != "localhost" && net.ParseIP(host) == nil {
		return errors.New("must have an IP address (or localhost) as host to listen on")
	}
	return nil
}

// checkAdvertised checks advertised URLs: reachable host:port, never an
// unspecified address such as 0.0.0.0. An empty list defaults to the listen
// URLs, whose syntax is checked under their own field.
func checkAdvertised(field, from string, given, effective []string) error {
	if len(given) > 0 {
		if err := checkURLs(field, given, false); err != nil {
			return err
		}
	}
	for i, s := range effective {
		u, err := url.Parse(s)
		if err != nil {
			return nil // reported under the listen field
		}
		if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsUnspecified() {
			continue
		}
		if len(given) == 0 {
			return fmt.Errorf("embedded.%s: [] defaults to %s, but %q is an unspecified address no one can dial; set %s",
				field, from, s, field)
		}
		return fmt.Errorf("embedded.%s[%d]: %q is an unspecified address no one can dial; set an address others can reach", field, i, s)
	}
	return nil
}

// checkBootstrap checks how the cluster is formed: static, DNS SRV or join.
// d has defaults applied; given is the configuration as written.
func (d Config) checkBootstrap(given *Config) []error {
	var errs []error
	switch d.InitialClusterState {
	case clusterStateNew, clusterStateExist:
	default:
		errs = append(errs, fmt.Errorf("embedded.initial_cluster_state: %q must be new or existing", d.InitialClusterState))
	}
	var modes []string
	if given.InitialCluster != "" {
		modes = append(modes, "initial_cluster")
	}
	if d.DiscoverySRV != "" {
		modes = append(modes, "discovery_srv")
		errs = append(errs, checkDomain(d.DiscoverySRV))
	}
	if len(d.Join) > 0 {
		modes = append(modes, "join")
		errs = append(errs, checkURLs("join", d.Join, false))
		if given.InitialClusterState == clusterStateNew {
			errs = append(errs, errors.New(`embedded.initial_cluster_state: "new" conflicts with join, which starts the member with state existing; leave it empty`))
		}
	}
	if len(modes) > 1 {
		errs = append(errs, fmt.Errorf("embedded.%s: only one of initial_cluster, discovery_srv and join may be set (got %s)",
			modes[len(modes)-1], strings.Join(modes, " and ")))
	} else if given.InitialCluster != "" {
		errs = append(errs, checkInitialCluster(d.InitialCluster, d.Name, d.InitialAdvertisePeerURLs)...)
	}
	return errs
}

func checkDomain(s string) error {
	name := strings.TrimSuffix(s, ".")
	bad := name == "" || len(name) > 253
	for _, label := range strings.Split(name, ".") {
		if bad {
			break
		}
		bad = label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' ||
			strings.IndexFunc(label, func(r rune) bool {
				return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
			}) >= 0
	}
	if bad {
		return fmt.Errorf("embedded.discovery_srv: %q must be a DNS domain such as example.com (no scheme, port or path)", s)
	}
	return nil
}

func checkInitialCluster(s, name string, advertised []string) []error {
	m, err := types.NewURLsMap(s)
	if err != nil {
		return []error{fmt.Errorf("embedded.initial_cluster: %q must be name=http://host:port,... (https with TLS): %w", s, err)}
	}
	var errs []error
	for n, urls := range m {
		if err := checkName(n); err != nil {
			errs = append(errs, fmt.Errorf("embedded.initial_cluster: %q: member %q: name must be non-empty without '=', ',' or white space", s, n))
		}
		for _, u := range urls {
			if err := checkURL(u.String(), false); err != nil {
				errs = append(errs, fmt.Errorf("embedded.initial_cluster: %q: member %q: %q %w", s, n, u.String(), err))
			}
		}
	}
	own, ok := m[name]
	if !ok {
		return append(errs, fmt.Errorf("embedded.initial_cluster: %q must contain this member (name %q)", s, name))
	}
	adv, err := types.NewURLs(advertised)
	if err == nil && !slices.Equal(own.StringSlice(), adv.StringSlice()) {
		errs = append(errs, fmt.Errorf("embedded.initial_cluster: %q lists %s for member %q, which must equal initial_advertise_peer_urls %s",
			s, strings.Join(own.StringSlice(), ","), name, strings.Join(adv.StringSlice(), ",")))
	}
	return errs
}

func (d Config) checkTuning() []error {
	var errs []error
	hb, el := d.HeartbeatInterval, d.ElectionTimeout
	switch {
	case hb < minHeartbeat:
		errs = append(errs, fmt.Errorf("embedded.heartbeat_interval: %s must be at least %s", hb, minHeartbeat))
	case hb%time.Millisecond != 0:
		errs = append(errs, fmt.Errorf("embedded.heartbeat_interval: %s must be a whole number of milliseconds", hb))
	}
	switch {
	case el < 5*hb:
		errs = append(errs, fmt.Errorf("embedded.election_timeout: %s must be at least 5 x embedded.heartbeat_interval (%s) = %s", el, hb, 5*hb))
	case el > maxElection:
		errs = append(errs, fmt.Errorf("embedded.election_timeout: %s must be at most %s", el, maxElection))
	case el%time.Millisecond != 0:
		errs = append(errs, fmt.Errorf("embedded.election_timeout: %s must be a whole number of milliseconds", el))
	}
	if r := d.AutoCompactionRetention; r < minCompaction {
		errs = append(errs, fmt.Errorf("embedded.auto_compaction_retention: %s must be at least %s (0 means the default %s)", r, minCompaction, DefaultAutoCompactionRetention))
	}
	if q := d.QuotaBackendBytes; q < 0 || q > MaxQuotaBackendBytes {
		errs = append(errs, fmt.Errorf("embedded.quota_backend_bytes: %d must be in 1..%d (8 GiB; 0 means the default 2 GiB)", q, int64(MaxQuotaBackendBytes)))
	}
	if d.StartTimeout < 0 {
		errs = append(errs, fmt.Errorf("embedded.start_timeout: %s must not be negative (0 means the default %s)", d.StartTimeout, DefaultStartTimeout))
	}
	return errs
}
