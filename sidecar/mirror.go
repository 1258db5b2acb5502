package sidecar

import (
	"fmt"
	"net/http"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/configsync"
)

// MappingConfigs maps the config section onto configsync's Configs.
func (c *Config) MappingConfigs() []configsync.Config {
	out := make([]configsync.Config, len(c.Config))
	for i, m := range c.Config {
		mode, _ := parseMode(m.FileMode) // validated in New
		out[i] = configsync.Config{
			Prefix: m.Prefix, Dir: m.Dir, FileMode: mode,
			KeepDeleted: m.OnDelete == "keep", MaxFileBytes: int64(m.MaxFileBytes),
		}
	}
	return out
}

// configRoutes are the config mirroring routes.
func (d *Daemon) configRoutes() []route {
	return []route{{method: "GET", pattern: "/v1/config", handle: d.handleConfig}}
}

// configStatus is each mapping's state, in the order of the config section.
func (d *Daemon) configStatus() []api.ConfigMapping {
	out := []api.ConfigMapping{}
	ms := d.mirrors.Load()
	for i, mc := range d.cfg.Config {
		cm := api.ConfigMapping{Prefix: mc.Prefix, Dir: mc.Dir}
		if ms != nil {
			st := (*ms)[i].Status()
			cm.Prefix, cm.Revision, cm.Files, cm.Rejected, cm.LastError = st.Prefix, st.Revision, st.Files, int64(st.Rejected), st.LastError
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
	if r.URL.Query().Get("watch") != "" {
		writeError(w, http.StatusNotImplemented, "GET /v1/config?watch= is not supported yet")
		return
	}
	writeJSON(w, http.StatusOK, api.ConfigMappings{Mappings: d.configStatus()})
}
