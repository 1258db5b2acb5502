package sidecar

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/configsync"
)

// MappingConfigs maps the config section onto configsync's Configs
// (without Logger and OnBatch, which the daemon sets). Call it on a
// validated Config.
func (c *Config) MappingConfigs() []configsync.Config {
	out := make([]configsync.Config, len(c.Config))
	for i, m := range c.Config {
		if mc, _ := m.mapping(); mc != nil { // validated in New
			out[i] = *mc
		}
	}
	return out
}

// reloaderFor returns the reload of mapping i, or nil without on_change.
func (c *Config) reloaderFor(i int) (*configsync.Reloader, error) {
	oc := c.Config[i].OnChange
	if len(oc.Command) == 0 && oc.Signal == "" {
		return nil, nil
	}
	rc, err := oc.reload()
	if err != nil {
		return nil, err
	}
	return configsync.NewReloader(rc)
}

// configRoutes are the config mirroring routes.
func (d *Daemon) configRoutes() []route {
	return []route{{method: "GET", pattern: "/v1/config", handle: d.handleConfig, stream: true}}
}

// configStatus is each mapping's state, in the order of the config section.
func (d *Daemon) configStatus() []api.ConfigMapping {
	out := []api.ConfigMapping{}
	ms, live, now := d.mirrors.Load(), d.etcd.live.Load(), time.Now()
	for i, mc := range d.cfg.Config {
		cm := api.ConfigMapping{Prefix: mc.Prefix, Dir: mc.Dir, Layout: mc.Layout}
		if ms != nil {
			st := (*ms)[i].Status()
			cm.Prefix, cm.Revision, cm.Files, cm.Rejected, cm.LastError = st.Prefix, st.Revision, st.Files, int64(st.Rejected), st.LastError
			cm.LagS = lagSeconds(st, live, now)
		}
		out = append(out, cm)
	}
	return out
}

// configComponent is the config part of /v1/health: failing while a
// mapping cannot bring its directory in step with etcd.
func (d *Daemon) configComponent() api.Component {
	if len(d.cfg.Config) == 0 {
		return api.Component{State: api.StateDisabled}
	}
	c := api.Component{State: api.StateOK}
	for _, m := range d.configStatus() {
		switch {
		case m.LastError != "":
			return api.Component{State: api.StateFailing, Error: fmt.Sprintf("%s → %s: %s", m.Prefix, m.Dir, m.LastError)}
		case m.Revision == 0:
			c.State = api.StateStarting
		}
	}
	return c
}

func (d *Daemon) handleConfig(w http.ResponseWriter, r *request) {
	if !r.watch {
		writeJSON(w, http.StatusOK, api.ConfigMappings{Mappings: d.configStatus()})
		return
	}
	ch := d.batches.subscribe(r.Context())
	streamNDJSON(w, r.Request, ch, toAPIBatch)
}

func toAPIBatch(b configsync.Batch) api.ConfigBatch {
	return api.ConfigBatch{Prefix: b.Prefix, Revision: b.Revision, Changed: orEmpty(b.Changed), Deleted: orEmpty(b.Deleted)}
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// batchHub hands each mapping's batches to the /v1/config streams. It is
// safe for concurrent use.
type batchHub struct {
	mu   sync.Mutex
	subs map[chan configsync.Batch]struct{}
}

// subscribe returns a channel of the batches from now on; it is closed
// when ctx ends, or when its reader falls more than its buffer behind (the
// stream ends rather than skip a batch).
func (h *batchHub) subscribe(ctx context.Context) <-chan configsync.Batch {
	ch := make(chan configsync.Batch, 64)
	h.mu.Lock()
	if h.subs == nil {
		h.subs = map[chan configsync.Batch]struct{}{}
	}
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	context.AfterFunc(ctx, func() { h.drop(ch) })
	return ch
}

func (h *batchHub) drop(ch chan configsync.Batch) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[ch]; ok {
		delete(h.subs, ch)
		close(ch)
	}
}

// publish sends b to every subscriber without blocking the mapping.
func (h *batchHub) publish(b configsync.Batch) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- b:
		default:
			delete(h.subs, ch)
			close(ch)
		}
	}
}

// closeAll ends every stream, when the mappings have stopped.
func (h *batchHub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		delete(h.subs, ch)
		close(ch)
	}
}
