package sidecar

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/internal/version"
)

// etcdComponent is the etcd part of /v1/health.
func (d *Daemon) etcdComponent(ctx context.Context) api.Component {
	select {
	case <-d.ready:
	default:
		d.etcd.mu.RLock()
		defer d.etcd.mu.RUnlock()
		c := api.Component{State: api.StateStarting}
		if d.etcd.lastErr != nil {
			c.Error = d.etcd.lastErr.Error()
		}
		return c
	}
	if err := d.probe(ctx); err != nil {
		return api.Component{State: api.StateUnavailable, Error: err.Error()}
	}
	return api.Component{State: api.StateOK}
}

// health is 200 when the sidecar itself works: etcd answers, registration
// is not lost, no config mapping fails. A critical app check is the app's
// problem and does not make the sidecar unhealthy.
func (d *Daemon) health(ctx context.Context) api.Health {
	h := api.Health{Components: map[string]api.Component{
		"etcd":         d.etcdComponent(ctx),
		"registration": d.registrationComponent(),
		"config":       {State: api.StateDisabled},
	}}
	h.Healthy = h.Components["etcd"].State == api.StateOK && h.Components["registration"].State != api.RegLost
	return h
}

func (d *Daemon) handleHealth(w http.ResponseWriter, r *http.Request) {
	h := d.health(r.Context())
	code := http.StatusOK
	if !h.Healthy {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, h)
}

// Status returns what `sidecar status` shows.
func (d *Daemon) Status(ctx context.Context) api.Status {
	st := api.Status{
		Node:      d.cfg.Name,
		Version:   version.Sidecar(),
		PID:       os.Getpid(),
		StartedAt: d.started.UTC().Format(time.RFC3339),
		UptimeS:   time.Since(d.started).Seconds(),
		Config:    []api.ConfigMapping{},
		Locks:     []api.Hold{},
		Elections: []api.Hold{},
	}
	st.Etcd = d.etcdStatus(ctx)
	st.Registration = d.registration()
	return st
}

func (d *Daemon) etcdStatus(ctx context.Context) api.EtcdStatus {
	perr := d.probe(ctx)
	d.etcd.mu.RLock()
	defer d.etcd.mu.RUnlock()
	es := api.EtcdStatus{Mode: "join", Endpoints: append([]string{}, d.etcd.endpoints...), ConnState: "none"}
	if d.cfg.EmbeddedMode() {
		es.Mode = "embedded"
	}
	if d.etcd.cli != nil {
		es.ConnState = d.etcd.connState.String()
		es.Connected = perr == nil
		if perr != nil {
			es.LastError = perr.Error()
		}
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

func (d *Daemon) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, d.Status(r.Context()))
}

// handleCluster lists the members and asks each client endpoint for its
// status, like `etcdctl endpoint status --cluster`.
func (d *Daemon) handleCluster(w http.ResponseWriter, r *http.Request) {
	cli := d.etcd.client()
	if cli == nil {
		writeError(w, http.StatusServiceUnavailable, "etcd unavailable: "+d.etcdComponent(r.Context()).Error)
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
