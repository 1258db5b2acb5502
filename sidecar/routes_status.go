package sidecar

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/internal/version"
)

// statusRoutes are the routes of the sidecar's own state.
func (d *Daemon) statusRoutes() []route {
	return []route{
		{method: "GET", pattern: "/v1/health", handle: d.handleHealth},
		{method: "GET", pattern: "/v1/status", handle: d.handleStatus},
		{method: "GET", pattern: "/v1/cluster", handle: d.handleCluster},
		{method: "GET", pattern: "/metrics", handle: d.handleMetrics},
	}
}

// tcpRoutes are all that the optional api.http listener serves.
func (d *Daemon) tcpRoutes() []route {
	return []route{
		{method: "GET", pattern: "/v1/health", handle: d.handleHealth},
		{method: "GET", pattern: "/metrics", handle: d.handleMetrics},
	}
}

// etcdComponent is the etcd part of /v1/health, read from the liveness
// monitor: it never waits on etcd.
func (d *Daemon) etcdComponent() api.Component {
	st, ok := d.etcd.liveness()
	switch {
	case !ok || !st.Answered:
		c := api.Component{State: api.StateStarting}
		d.etcd.mu.RLock()
		if d.etcd.lastErr != nil {
			c.Error = d.etcd.lastErr.Error()
		}
		d.etcd.mu.RUnlock()
		return c
	case !st.Up:
		return api.Component{State: api.StateUnavailable, Error: st.Reason}
	}
	return api.Component{State: api.StateOK}
}

// health is 200 when the sidecar itself works: etcd answers, registration
// is not lost, no config mapping fails. A critical app check is the app's
// problem and does not make the sidecar unhealthy. It reads state kept by
// the components and never waits on etcd.
func (d *Daemon) health() api.Health {
	h := api.Health{Components: map[string]api.Component{
		"etcd":         d.etcdComponent(),
		"registration": d.registrationComponent(),
		"config":       d.configComponent(),
	}}
	h.Healthy = h.Components["etcd"].State == api.StateOK && h.Components["registration"].State != api.RegLost &&
		h.Components["config"].State != api.StateFailing
	return h
}

func (d *Daemon) handleHealth(w http.ResponseWriter, r *request) {
	h := d.health()
	code := http.StatusOK
	if !h.Healthy {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, h)
}

// Status returns what `sidecar status` shows. It never waits on etcd.
func (d *Daemon) Status() api.Status {
	st := api.Status{
		Node:      d.cfg.Name,
		Version:   version.Sidecar(),
		PID:       os.Getpid(),
		StartedAt: d.started.UTC().Format(time.RFC3339),
		UptimeS:   time.Since(d.started).Seconds(),
		Config:    d.configStatus(),
		Locks:     d.coord.status(api.KindLock),
		Elections: d.coord.status(api.KindElection),
	}
	st.Etcd = d.etcdStatus()
	st.Registration = d.registration()
	return st
}

func (d *Daemon) etcdStatus() api.EtcdStatus {
	live, _ := d.etcd.liveness()
	d.etcd.mu.RLock()
	defer d.etcd.mu.RUnlock()
	es := api.EtcdStatus{Mode: "join", Endpoints: append([]string{}, d.etcd.endpoints...), ConnState: "none"}
	if d.cfg.EmbeddedMode() {
		es.Mode = "embedded"
	}
	if d.etcd.cli != nil {
		es.ConnState = d.etcd.connState.String()
		es.Connected = live.Up
		es.LastError = live.Reason
	} else if d.etcd.lastErr != nil {
		es.LastError = d.etcd.lastErr.Error()
	}
	if m := d.etcd.member; m != nil {
		es.Member = &api.LocalMember{
			Name: m.Name(), ID: fmt.Sprintf("%x", m.ID()), ClientURLs: m.ClientURLs(),
			PeerURLs: d.cfg.Embedded.InitialAdvertisePeerURLs, DataDir: d.cfg.Embedded.DataDir,
		}
	}
	return es
}

func (d *Daemon) handleStatus(w http.ResponseWriter, r *request) {
	writeJSON(w, http.StatusOK, d.Status())
}

// handleCluster lists the members and asks each client endpoint for its
// status, like `etcdctl endpoint status --cluster`.
func (d *Daemon) handleCluster(w http.ResponseWriter, r *request) {
	cli := d.etcd.client()
	if cli == nil {
		writeError(w, http.StatusServiceUnavailable, "etcd unavailable: "+d.notReadyReason())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	ml, err := cli.MemberList(ctx)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "etcd unavailable: member list: "+err.Error())
		return
	}
	out := api.Cluster{ClusterID: fmt.Sprintf("%x", ml.Header.ClusterId), Members: make([]api.Member, len(ml.Members))}
	var wg sync.WaitGroup
	for i, m := range ml.Members {
		am := api.Member{ID: fmt.Sprintf("%x", m.ID), Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs,
			IsLearner: m.IsLearner, Endpoints: make([]api.EndpointStatus, len(m.ClientURLs))}
		for j, ep := range m.ClientURLs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				am.Endpoints[j] = endpointStatus(ctx, cli, ep)
			}()
		}
		out.Members[i] = am
	}
	wg.Wait()
	writeJSON(w, http.StatusOK, out)
}

func endpointStatus(ctx context.Context, cli *clientv3.Client, ep string) api.EndpointStatus {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	es := api.EndpointStatus{Endpoint: ep}
	st, err := cli.Status(ctx, ep)
	if err != nil {
		es.Error = err.Error()
		return es
	}
	es.Version = st.Version
	es.DBSize, es.DBSizeInUse = st.DbSize, st.DbSizeInUse
	es.IsLeader = st.Leader == st.Header.MemberId
	es.RaftTerm, es.RaftIndex, es.RaftApplied = st.RaftTerm, st.RaftIndex, st.RaftAppliedIndex
	es.Errors = st.Errors
	return es
}

func (d *Daemon) promHandler() http.Handler {
	return promhttp.HandlerFor(d.metrics.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelWarn)})
}

func (d *Daemon) handleMetrics(w http.ResponseWriter, r *request) {
	d.metricsHandler.ServeHTTP(w, r.Request)
}
