package sidecar

import (
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

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
		return api.Component{State: api.StateStarting, Error: d.startingReason()}
	case !st.Up:
		return api.Component{State: api.StateUnavailable, Error: st.Reason}
	}
	return api.Component{State: api.StateOK}
}

// startingReason says why etcd does not serve yet: what the embedded
// member's start-up waits for, else the last connection error, else "".
func (d *Daemon) startingReason() string {
	if w := d.etcd.waiting(); w != "" {
		return w
	}
	d.etcd.mu.RLock()
	defer d.etcd.mu.RUnlock()
	if d.etcd.lastErr != nil {
		return describeEtcdErr(d.etcd.lastErr)
	}
	return ""
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
		UptimeS:   math.Round(time.Since(d.started).Seconds()*1000) / 1000, // milliseconds
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
	es.Alarms = slices.Clone(d.etcd.alarms)
	if d.etcd.cli != nil {
		es.ConnState = d.etcd.connState.String()
		es.Connected = live.Up
		es.LastError = live.Reason
	} else if d.etcd.lastErr != nil {
		es.LastError = describeEtcdErr(d.etcd.lastErr)
	}
	if m := d.etcd.member; m != nil {
		es.Waiting = m.Waiting()
		if len(es.Endpoints) == 0 { // the client is not built before the member serves
			es.Endpoints = m.ClientURLs()
		}
		es.Member = &api.LocalMember{
			Name: m.Name(), ClientURLs: m.ClientURLs(),
			PeerURLs: d.cfg.Embedded.InitialAdvertisePeerURLs, DataDir: d.cfg.Embedded.DataDir,
		}
		if id := m.ID(); id != 0 { // known once it serves
			es.Member.ID = fmt.Sprintf("%x", id)
		}
	}
	return es
}

func (d *Daemon) handleStatus(w http.ResponseWriter, r *request) {
	writeJSON(w, http.StatusOK, d.Status())
}

func (d *Daemon) promHandler() http.Handler {
	return promhttp.HandlerFor(d.metrics.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelWarn)})
}

func (d *Daemon) handleMetrics(w http.ResponseWriter, r *request) {
	d.metricsHandler.ServeHTTP(w, r.Request)
}
