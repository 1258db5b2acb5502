package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/discovery"
)

// firstListTimeout bounds the wait for a service's first list from etcd.
const firstListTimeout = 5 * time.Second

// discoveryCache returns the cache, or answers 503 while etcd is not up yet.
func (d *Daemon) discoveryCache(w http.ResponseWriter) *discovery.Cache {
	c := d.disc.Load()
	if c == nil {
		writeError(w, http.StatusServiceUnavailable, "etcd unavailable: "+d.notReadyReason())
	}
	return c
}

func (d *Daemon) notReadyReason() string {
	if r := d.startingReason(); r != "" {
		return r
	}
	return "still connecting"
}

// serviceRoutes are the discovery routes.
func (d *Daemon) serviceRoutes() []route {
	return []route{
		{method: "GET", pattern: "/v1/services", handle: d.handleServices},
		{method: "GET", pattern: "/v1/services/{name}", handle: d.handleService, noun: "service", stream: true},
		{method: "GET", pattern: "/v1/services/{name}/pick", handle: d.handlePick, noun: "service"},
	}
}

func (d *Daemon) handleServices(w http.ResponseWriter, r *request) {
	c := d.discoveryCache(w)
	if c == nil {
		return
	}
	names, err := c.Services(r.Context())
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "etcd unavailable: "+err.Error())
		return
	}
	if names == nil {
		names = []string{}
	}
	writeJSON(w, http.StatusOK, api.Services{Services: names})
}

func (d *Daemon) handleService(w http.ResponseWriter, r *request) {
	name, watch := r.name, r.watch
	c := d.discoveryCache(w)
	if c == nil {
		return
	}
	// The first list of a service not watched yet waits for etcd; bounded,
	// so an unreachable etcd is a 503, not a request that hangs.
	gctx, cancel := context.WithTimeout(r.Context(), firstListTimeout)
	snap, err := c.Get(gctx, name)
	cancel()
	if err == nil && watch {
		ch, err := c.Subscribe(r.Context(), name)
		if err != nil {
			writeDiscoveryError(w, err)
			return
		}
		streamNDJSON(w, r.Request, ch, toAPIService)
		return
	}
	if err != nil {
		writeDiscoveryError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, toAPIService(snap))
}

func (d *Daemon) handlePick(w http.ResponseWriter, r *request) {
	name := r.name
	c := d.discoveryCache(w)
	if c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), firstListTimeout)
	defer cancel()
	in, err := c.Pick(ctx, name)
	if err != nil {
		writeDiscoveryError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, toAPIInstance(in))
}

func writeDiscoveryError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, discovery.ErrNoInstance):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, discovery.ErrBadName):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, context.Canceled):
		// the caller went away; nobody reads an answer
	default:
		writeError(w, http.StatusServiceUnavailable, "etcd unavailable: "+err.Error())
	}
}

func toAPIService(s discovery.Snapshot) api.Service {
	out := api.Service{Service: s.Service, Revision: s.Revision, Stale: s.Stale, Instances: make([]api.Instance, len(s.Instances))}
	for i, in := range s.Instances {
		out.Instances[i] = toAPIInstance(in)
	}
	return out
}

func toAPIInstance(in discovery.Instance) api.Instance {
	md := in.Metadata
	if md == nil {
		md = map[string]string{}
	}
	return api.Instance{ID: in.ID, Addr: in.Addr, Weight: in.Weight, Node: in.Node, Metadata: md}
}

// streamNDJSON answers 200 and writes each value from ch as one JSON line,
// flushed at once, until ch closes or the caller goes away.
func streamNDJSON[T, W any](w http.ResponseWriter, r *http.Request, ch <-chan T, conv func(T) W) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w) // one value per line
	enc.SetEscapeHTML(false)
	rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	rc.Flush()
	for {
		select {
		case v, ok := <-ch:
			if !ok {
				return
			}
			// A client that stops reading must not hold the stream for ever.
			rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
			if enc.Encode(conv(v)) != nil || rc.Flush() != nil {
				return
			}
		case <-r.Context().Done():
			return
		}
	}
}
