// Package api holds the wire types of sidecar's local API (HTTP/1.1 + JSON on
// a unix socket), shared by the daemon, the Go client and the CLI. It has no
// behaviour; field names and JSON tags are part of the stable contract.
package api

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
}

// Component states reported by /v1/health.
const (
	StateOK          = "ok"
	StateStarting    = "starting"
	StateUnavailable = "unavailable"
	StateDisabled    = "disabled"
	StateFailing     = "failing" // a config mapping cannot bring its directory in step with etcd
)

// Health is the body of GET /v1/health.
type Health struct {
	Healthy    bool                 `json:"healthy"`
	Components map[string]Component `json:"components"`
}

// Component is the state of one part of the sidecar.
type Component struct {
	State string `json:"state"`
	Error string `json:"error,omitempty"`
}

// Status is the body of GET /v1/status.
type Status struct {
	Node         string          `json:"node"`
	Version      string          `json:"version"`
	PID          int             `json:"pid"`
	StartedAt    string          `json:"started_at"`
	UptimeS      float64         `json:"uptime_s"`
	Etcd         EtcdStatus      `json:"etcd"`
	Registration *Registration   `json:"registration"`
	Config       []ConfigMapping `json:"config"`
	Locks        []Hold          `json:"locks"`
	Elections    []Hold          `json:"elections"`
}

// EtcdStatus describes the etcd connection.
type EtcdStatus struct {
	Mode      string   `json:"mode"` // embedded | join
	Endpoints []string `json:"endpoints"`
	Connected bool     `json:"connected"`
	// ConnState is gRPC's connectivity state of the client connection.
	ConnState string `json:"conn_state"`
	LastError string `json:"last_error,omitempty"`
	// Waiting says what the embedded member's start-up waits for, and why
	// (for example "joining via http://10.0.0.13:2379: etcd refuses to add
	// a member while etcd02 is down"); empty when it does not wait.
	Waiting string `json:"waiting,omitempty"`
	// Member is set in embedded mode.
	Member *LocalMember `json:"member,omitempty"`
	// Alarms are etcd's active alarms (NOSPACE, CORRUPT) as the daemon last
	// asked, every 10 s; GET /v1/cluster asks afresh.
	Alarms []Alarm `json:"alarms,omitempty"`
}

// LocalMember is the embedded etcd member of this sidecar.
type LocalMember struct {
	Name       string   `json:"name"`
	ID         string   `json:"id"`
	ClientURLs []string `json:"client_urls"`
	PeerURLs   []string `json:"peer_urls"`
	DataDir    string   `json:"data_dir"`
}

// Registration states, in Registration.State. They are defined here, once;
// the registry package reports these values.
const (
	RegStarting     = "starting"     // not registered yet: no lease, no passing check, or the first write pending
	RegRegistered   = "registered"   // the record is in etcd under a live lease
	RegCritical     = "critical"     // the check is critical: record withdrawn, lease kept
	RegLost         = "lost"         // the lease is past its deadline, or the lease or record was lost and is not back yet
	RegConflict     = "conflict"     // another holder owns this instance id; retried with backoff
	RegDeregistered = "deregistered" // the registrar has stopped
)

// RegStates lists every registration state, for metrics and documentation.
var RegStates = []string{RegStarting, RegRegistered, RegCritical, RegLost, RegConflict, RegDeregistered}

// Registration is this sidecar's own service registration.
type Registration struct {
	Service string `json:"service"`
	ID      string `json:"id"`
	Addr    string `json:"addr"`
	Weight  int    `json:"weight"`
	State   string `json:"state"`
	// LeaseID is the lease in hex, as `etcdctl lease list` prints it; empty
	// without a lease. 64-bit ids are strings so that JSON readers that use
	// doubles (JavaScript, jq before 1.7) do not round them.
	LeaseID         string  `json:"lease_id"`
	TTLRemainingS   float64 `json:"ttl_remaining_s"`
	Reregistrations int64   `json:"reregistrations"`
	LastError       string  `json:"last_error,omitempty"`
	Key             string  `json:"key,omitempty"`
	// Check is the health check's state: none, pending, passing or critical.
	Check      string `json:"check,omitempty"`
	CheckError string `json:"check_error,omitempty"`
}

// ConfigMapping is one mirrored prefix, as in GET /v1/config.
type ConfigMapping struct {
	Prefix    string `json:"prefix"`
	Dir       string `json:"dir"`
	Revision  int64  `json:"revision"`
	Files     int    `json:"files"`
	Rejected  int64  `json:"rejected"`
	LastError string `json:"last_error"`
	Layout    string `json:"layout"`
	// LagS is how long the directory may have been behind etcd, in
	// seconds: 0 while the mapping follows its watch and etcd answers;
	// otherwise the time since it last did (a failed watch, list or
	// write, or a silent etcd). The metric sidecar_config_lag_seconds.
	LagS float64 `json:"lag_s"`
}

// ConfigMappings is the body of GET /v1/config.
type ConfigMappings struct {
	Mappings []ConfigMapping `json:"mappings"`
}

// ConfigBatch is one line of GET /v1/config?watch=true: a batch of
// changes on disk; paths are relative to the mapping's dir.
type ConfigBatch struct {
	Prefix   string   `json:"prefix"`
	Revision int64    `json:"revision"`
	Changed  []string `json:"changed"`
	Deleted  []string `json:"deleted"`
}

// Hold is a lock or leadership held through this sidecar, in the locks
// and elections of GET /v1/status.
type Hold struct {
	Name string `json:"name"`
	Kind string `json:"kind"` // KindLock | KindElection
	// Key is the holder's full etcd key; Fence its creation revision.
	Key   string `json:"key"`
	Fence int64  `json:"fence"`
	// Value is the leader's value (elections only).
	Value string `json:"value,omitempty"`
	// PID and UID are the holding process, from SO_PEERCRED of its
	// connection; absent when the connection carried no credentials.
	PID int  `json:"pid,omitempty"`
	UID *int `json:"uid,omitempty"`
	// HeldSince is when the hold was acquired, RFC 3339 in UTC; empty
	// while Waiting.
	HeldSince string `json:"held_since,omitempty"`
	// Waiting: the caller waits for the lock or election, since
	// WaitingSince; Key and Fence are not known yet.
	Waiting      bool   `json:"waiting,omitempty"`
	WaitingSince string `json:"waiting_since,omitempty"`
}

// Cluster is the body of GET /v1/cluster: members, endpoint status, the
// leader and the cluster's alarms.
type Cluster struct {
	ClusterID string   `json:"cluster_id"`
	Members   []Member `json:"members"`
	// Leader is the name of the leader as the endpoints that answered see
	// it (its ID if it has no name yet); empty when none knows a leader.
	Leader   string `json:"leader,omitempty"`
	LeaderID string `json:"leader_id,omitempty"`
	// Alarms are the active alarms of the cluster (etcd's alarm list);
	// empty when there are none. AlarmsError says why they are unknown.
	Alarms      []Alarm `json:"alarms"`
	AlarmsError string  `json:"alarms_error,omitempty"`
}

// Alarm is one active etcd alarm: NOSPACE (a member's db reached its quota;
// the cluster takes only reads and deletes) or CORRUPT (a member's data
// differs from the others').
type Alarm struct {
	MemberID string `json:"member_id"`
	Member   string `json:"member,omitempty"` // the member's name, when it is listed
	Alarm    string `json:"alarm"`
}

// String words the alarm for people: "NOSPACE on etcd01", or "NOSPACE on
// member 8e9e05c52164694d" when the member's name is not known.
func (a Alarm) String() string {
	who := a.Member
	if who == "" {
		who = "member " + a.MemberID
	}
	return a.Alarm + " on " + who
}

// Member is one etcd member and the status of each of its client endpoints.
type Member struct {
	ID         string           `json:"id"`
	Name       string           `json:"name"`
	PeerURLs   []string         `json:"peer_urls"`
	ClientURLs []string         `json:"client_urls"`
	IsLearner  bool             `json:"is_learner"`
	Endpoints  []EndpointStatus `json:"endpoints"`
}

// EndpointStatus is etcd's Status answer for one client endpoint, with the
// raft index lag behind the leader that the sidecar adds to it.
type EndpointStatus struct {
	Endpoint    string `json:"endpoint"`
	Version     string `json:"version,omitempty"`
	DBSize      int64  `json:"db_size"`
	DBSizeInUse int64  `json:"db_size_in_use"`
	// DBSizeQuota is the member's backend quota (quota_backend_bytes, with
	// etcd's default applied) as etcd 3.6 and later report it; 0 (absent)
	// means unknown: an older etcd.
	DBSizeQuota int64  `json:"db_size_quota,omitempty"`
	IsLeader    bool   `json:"is_leader"`
	RaftTerm    uint64 `json:"raft_term"`
	RaftIndex   uint64 `json:"raft_index"`
	RaftApplied uint64 `json:"raft_applied_index"`
	// RaftIndexLag is the leader's raft index minus this endpoint's, absent
	// when either is unknown; a few entries are normal under writes.
	RaftIndexLag *uint64  `json:"raft_index_lag,omitempty"`
	Errors       []string `json:"errors,omitempty"`
	Error        string   `json:"error,omitempty"`
}

// Services is the body of GET /v1/services.
type Services struct {
	Services []string `json:"services"`
}

// Service is the body of GET /v1/services/{name}, and each line of its
// ?watch=true stream.
type Service struct {
	Service   string     `json:"service"`
	Revision  int64      `json:"revision"`
	Stale     bool       `json:"stale"`
	Instances []Instance `json:"instances"`
}

// Instance is one registered instance of a service.
type Instance struct {
	ID       string            `json:"id"`
	Addr     string            `json:"addr"`
	Weight   int               `json:"weight"`
	Node     string            `json:"node,omitempty"`
	Metadata map[string]string `json:"metadata"`
}

// Weight is the body of PUT /v1/registration/weight and of its answer.
type Weight struct {
	Weight int `json:"weight"`
}

// Kinds of holds, in Hold.Kind.
const (
	KindLock     = "lock"
	KindElection = "election"
)

// Events of a hold's stream, in HoldEvent.Event.
const (
	EventAcquired = "acquired" // the lock is held (POST /v1/locks/{name})
	EventElected  = "elected"  // this caller leads (POST /v1/elections/{name})
	EventLost     = "lost"     // the hold is gone; the stream ends after it
	// EventValid says the hold is valid for ValidForMS more, from when the
	// line was sent; the next comes before that runs out, or EventLost. A
	// holder that hears nothing by then must count the hold as lost (the
	// sidecar may be paused). Clients ignore events they do not know.
	EventValid = "valid"
)

// ReasonShutdown is the Reason of the lost event that every holder gets
// when the daemon stops.
const ReasonShutdown = "sidecar shutting down"

// ExitHoldLost is the exit code of `sidecar lock` and `sidecar elect` when
// the hold was lost (or never won within --wait) and the child was
// stopped: EX_TEMPFAIL of sysexits.h, "try again later", so that a
// scheduler can tell it from the child's own failure.
const ExitHoldLost = 75

// HoldEvent is one line of the stream of POST /v1/locks/{name} and POST
// /v1/elections/{name}: first EventAcquired (or EventElected), then, if
// the hold is lost while the caller still holds it, EventLost with the
// reason, and the end of the stream.
type HoldEvent struct {
	Event string `json:"event"`
	Name  string `json:"name"`
	// Key is the holder's full etcd key; Fence its creation revision, which
	// only grows from holder to holder: pass it to the resource you guard.
	Key    string `json:"key"`
	Fence  int64  `json:"fence"`
	Reason string `json:"reason,omitempty"`
	// ValidForMS, in the acquired/elected and valid events: how long the
	// hold is surely valid from when the line was sent, in milliseconds.
	ValidForMS int64 `json:"valid_for_ms,omitempty"`
}

// Campaign is the body of POST /v1/elections/{name}: the value the leader
// shows to observers.
type Campaign struct {
	Value string `json:"value"`
}

// Leader is the body of GET /v1/elections/{name}, and each line of its
// ?watch=true stream. Leader is null while the election has no leader
// (only in the stream: the plain GET answers 404 then). Stale is true in
// the stream while etcd does not answer: the leader shown is the last one
// known, and may be gone (the line comes again when etcd answers).
type Leader struct {
	Name   string  `json:"name"`
	Leader *string `json:"leader"`
	Key    string  `json:"key,omitempty"`
	Fence  int64   `json:"fence,omitempty"`
	Stale  bool    `json:"stale,omitempty"`
}
