package sidecar

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"syscall"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/api"
)

const (
	// memberListTimeout bounds the member list of GET /v1/cluster.
	memberListTimeout = 2 * time.Second
	// endpointTimeout bounds the dial and status request of one endpoint in
	// GET /v1/cluster; endpoints are asked concurrently, so one that does
	// not answer costs the whole answer this much, not more.
	endpointTimeout = 500 * time.Millisecond
	// alarmTimeout bounds the alarm list of GET /v1/cluster, asked with the
	// endpoints; it goes through raft, so it needs a quorum.
	alarmTimeout = time.Second
)

// handleCluster lists the members and asks each client endpoint for its
// status, like `etcdctl endpoint status --cluster`, and the cluster for its
// alarms, then adds the leader and each endpoint's lag behind it. The
// member list is serializable, so a member without quorum still says what
// it knows; an endpoint that does not answer is reported with why, not as a
// failure of the whole answer; alarms that get no answer are reported as
// unknown, with why.
func (d *Daemon) handleCluster(w http.ResponseWriter, r *request) {
	cli := d.etcd.client()
	if cli == nil {
		reason := d.etcd.waiting()
		if reason == "" {
			reason = d.notReadyReason()
		}
		writeError(w, http.StatusServiceUnavailable, "etcd unavailable: "+reason)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), memberListTimeout)
	ml, err := cli.MemberList(ctx, clientv3.WithSerializable())
	cancel()
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "etcd unavailable: member list: "+requestError(err, memberListTimeout))
		return
	}
	out := api.Cluster{ClusterID: fmt.Sprintf("%x", ml.Header.ClusterId), Members: make([]api.Member, len(ml.Members))}
	leaders := make([][]uint64, len(ml.Members)) // the leader ID each endpoint reports
	var wg sync.WaitGroup
	for i, m := range ml.Members {
		am := api.Member{ID: fmt.Sprintf("%x", m.ID), Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs,
			IsLearner: m.IsLearner, Endpoints: make([]api.EndpointStatus, len(m.ClientURLs))}
		leaders[i] = make([]uint64, len(m.ClientURLs))
		for j, ep := range m.ClientURLs {
			wg.Go(func() { am.Endpoints[j], leaders[i][j] = endpointStatus(r.Context(), cli, ep) })
		}
		out.Members[i] = am
	}
	var alarms []*pb.AlarmMember
	wg.Go(func() { alarms, out.AlarmsError = alarmList(r.Context(), cli) })
	wg.Wait()
	setLeader(&out, ml.Members, leaders)
	out.Alarms = clusterAlarms(ml.Members, alarms)
	writeJSON(w, http.StatusOK, out)
}

// setLeader names the leader the endpoints report (the one most of them
// report, should they disagree during an election) and sets each answering
// endpoint's raft index lag behind the leader's own answer.
func setLeader(out *api.Cluster, members []*pb.Member, leaders [][]uint64) {
	votes := map[uint64]int{}
	var leader uint64
	for _, ids := range leaders {
		for _, id := range ids {
			if id == 0 {
				continue
			}
			if votes[id]++; votes[id] > votes[leader] {
				leader = id
			}
		}
	}
	if leader == 0 {
		return
	}
	out.LeaderID = fmt.Sprintf("%x", leader)
	out.Leader = out.LeaderID
	var leaderIndex uint64
	for i, m := range members {
		if m.ID != leader {
			continue
		}
		if m.Name != "" {
			out.Leader = m.Name
		}
		for _, ep := range out.Members[i].Endpoints {
			if ep.Error == "" && ep.IsLeader {
				leaderIndex = max(leaderIndex, ep.RaftIndex)
			}
		}
	}
	if leaderIndex == 0 {
		return // the leader did not answer: lags unknown
	}
	for i := range out.Members {
		for j := range out.Members[i].Endpoints {
			ep := &out.Members[i].Endpoints[j]
			if ep.Error == "" {
				lag := leaderIndex - min(leaderIndex, ep.RaftIndex) // asked at slightly different times
				ep.RaftIndexLag = &lag
			}
		}
	}
}

// alarmList asks the cluster for its active alarms within alarmTimeout,
// returning why when it cannot say.
func alarmList(ctx context.Context, cli *clientv3.Client) ([]*pb.AlarmMember, string) {
	ctx, cancel := context.WithTimeout(ctx, alarmTimeout)
	defer cancel()
	resp, err := cli.AlarmList(ctx)
	if err != nil {
		return nil, requestError(err, alarmTimeout)
	}
	return resp.Alarms, ""
}

// clusterAlarms words etcd's alarms, naming each member when it is listed.
func clusterAlarms(members []*pb.Member, alarms []*pb.AlarmMember) []api.Alarm {
	out := []api.Alarm{}
	for _, a := range alarms {
		if a.Alarm == pb.AlarmType_NONE {
			continue
		}
		al := api.Alarm{MemberID: fmt.Sprintf("%x", a.MemberID), Alarm: a.Alarm.String()}
		for _, m := range members {
			if m.ID == a.MemberID {
				al.Member = m.Name
			}
		}
		out = append(out, al)
	}
	return out
}

// endpointStatus asks one endpoint for its status within endpointTimeout,
// returning it and the leader the endpoint reports (0 if none).
// It dials first: a refused connection is known at once, where the status
// request would retry until its deadline.
func endpointStatus(ctx context.Context, cli *clientv3.Client, ep string) (api.EndpointStatus, uint64) {
	ctx, cancel := context.WithTimeout(ctx, endpointTimeout)
	defer cancel()
	es := api.EndpointStatus{Endpoint: ep}
	if err := dialEndpoint(ctx, ep); err != nil {
		es.Error = err.Error()
		return es, 0
	}
	st, err := cli.Status(ctx, ep)
	if err != nil {
		es.Error = requestError(err, endpointTimeout)
		return es, 0
	}
	es.Version = st.Version
	es.DBSize, es.DBSizeInUse, es.DBSizeQuota = st.DbSize, st.DbSizeInUse, st.DbSizeQuota
	es.IsLeader = st.Leader == st.Header.MemberId
	es.RaftTerm, es.RaftIndex, es.RaftApplied = st.RaftTerm, st.RaftIndex, st.RaftAppliedIndex
	es.Errors = st.Errors
	return es, st.Leader
}

// dialEndpoint opens and closes a TCP connection to ep's host, saying in a
// few words why it failed.
func dialEndpoint(ctx context.Context, ep string) error {
	u, err := url.Parse(ep)
	if err != nil {
		return fmt.Errorf("bad endpoint: %w", err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return errors.New("connection refused")
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("no answer within %s", endpointTimeout)
	case err != nil:
		return err
	}
	return conn.Close()
}

// requestError words an etcd request's error: a deadline as the bound that
// passed, an etcd error as etcd's description.
func requestError(err error, bound time.Duration) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("no answer within %s", bound)
	}
	return rpctypes.ErrorDesc(err)
}
