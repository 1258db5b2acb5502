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
)

// handleCluster lists the members and asks each client endpoint for its
// status, like `etcdctl endpoint status --cluster`. The member list is
// serializable, so a member without quorum still says what it knows; an
// endpoint that does not answer is reported with why, not as a failure of
// the whole answer.
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
	var wg sync.WaitGroup
	for i, m := range ml.Members {
		am := api.Member{ID: fmt.Sprintf("%x", m.ID), Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs,
			IsLearner: m.IsLearner, Endpoints: make([]api.EndpointStatus, len(m.ClientURLs))}
		for j, ep := range m.ClientURLs {
			wg.Go(func() { am.Endpoints[j] = endpointStatus(r.Context(), cli, ep) })
		}
		out.Members[i] = am
	}
	wg.Wait()
	writeJSON(w, http.StatusOK, out)
}

// endpointStatus asks one endpoint for its status within endpointTimeout.
// It dials first: a refused connection is known at once, where the status
// request would retry until its deadline.
func endpointStatus(ctx context.Context, cli *clientv3.Client, ep string) api.EndpointStatus {
	ctx, cancel := context.WithTimeout(ctx, endpointTimeout)
	defer cancel()
	es := api.EndpointStatus{Endpoint: ep}
	if err := dialEndpoint(ctx, ep); err != nil {
		es.Error = err.Error()
		return es
	}
	st, err := cli.Status(ctx, ep)
	if err != nil {
		es.Error = requestError(err, endpointTimeout)
		return es
	}
	es.Version = st.Version
	es.DBSize, es.DBSizeInUse = st.DbSize, st.DbSizeInUse
	es.IsLeader = st.Leader == st.Header.MemberId
	es.RaftTerm, es.RaftIndex, es.RaftApplied = st.RaftTerm, st.RaftIndex, st.RaftAppliedIndex
	es.Errors = st.Errors
	return es
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
