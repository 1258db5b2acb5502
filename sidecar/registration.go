package sidecar

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/internal/record"
	"github.com/sidecar-dev/sidecar/registry"
)

// RegistryConfig maps the service section onto the registry's Config.
func (c *Config) RegistryConfig() registry.Config {
	s := c.Service
	return registry.Config{
		Prefix:       record.ServicesPrefix(c.Etcd.Namespace),
		Service:      s.Name,
		ID:           s.ID,
		Node:         c.Name,
		Addr:         net.JoinHostPort(s.Address, strconv.Itoa(s.Port)),
		Weight:       s.Weight,
		Metadata:     s.Metadata,
		TTL:          s.TTL,
		DrainTimeout: s.DrainTimeout,
		Check:        registry.CheckConfig(s.Check),
	}
}

// registration is the registration part of /v1/status; nil without a service.
func (d *Daemon) registration() *api.Registration {
	if d.cfg.Service.Name == "" {
		return nil
	}
	if r := d.reg.Load(); r != nil {
		st := r.Status()
		return &api.Registration{
			Service: st.Service, ID: st.ID, Addr: st.Addr, Weight: st.Weight, State: st.State,
			LeaseID: leaseHex(st.LeaseID), TTLRemainingS: st.TTLRemaining.Seconds(), Reregistrations: st.Reregistrations,
			LastError: st.LastError, Key: st.Key, Check: st.CheckState, CheckError: st.CheckError,
		}
	}
	rc := d.cfg.RegistryConfig()
	return &api.Registration{Service: rc.Service, ID: rc.ID, Addr: rc.Addr, Weight: rc.Weight, State: api.RegStarting}
}

// registrationComponent is the registration part of /v1/health: only a lost
// registration makes the sidecar unhealthy; a critical check is the app's
// problem.
func (d *Daemon) registrationComponent() api.Component {
	reg := d.registration()
	if reg == nil {
		return api.Component{State: api.StateDisabled}
	}
	c := api.Component{State: reg.State, Error: reg.LastError}
	if reg.State == api.RegRegistered {
		c.State = api.StateOK
	}
	return c
}

// weightTimeout bounds the wait for etcd to hold a new weight.
const weightTimeout = 10 * time.Second

// registrationRoutes are the routes of this sidecar's own registration.
func (d *Daemon) registrationRoutes() []route {
	return []route{{method: "PUT", pattern: "/v1/registration/weight", handle: d.handleWeight}}
}

// handleWeight sets this sidecar's registered weight; it answers once etcd
// holds the new value.
func (d *Daemon) handleWeight(w http.ResponseWriter, r *request) {
	var body struct {
		Weight *int `json:"weight"`
	}
	if !decodeJSON(w, r.Request, &body) {
		return
	}
	if body.Weight == nil || *body.Weight < 0 || *body.Weight > registry.MaxWeight {
		writeError(w, http.StatusBadRequest, fmt.Sprintf(`want {"weight":N} with N in 0..%d (0 = drained)`, registry.MaxWeight))
		return
	}
	if d.cfg.Service.Name == "" {
		writeError(w, http.StatusNotFound, "this sidecar registers no service (service.name is empty)")
		return
	}
	reg := d.reg.Load()
	if reg == nil {
		writeError(w, http.StatusServiceUnavailable, "etcd unavailable: "+d.notReadyReason())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), weightTimeout)
	defer cancel()
	if err := reg.SetWeight(ctx, *body.Weight); err != nil {
		code := http.StatusServiceUnavailable
		msg := fmt.Sprintf("etcd unavailable: weight %d not stored: %v", *body.Weight, err)
		if st := reg.Status(); errors.Is(err, registry.ErrNotRegistered) {
			if st.State != api.RegLost {
				code = http.StatusConflict
			}
			msg = fmt.Sprintf("weight %d kept but not in etcd: the registration is %s now; it is written with the next registration", *body.Weight, st.State)
			if st.State == api.RegConflict {
				msg += " (" + st.LastError + ")"
			}
		}
		writeError(w, code, msg)
		return
	}
	d.log.Info("weight changed", "service", d.cfg.Service.Name, "weight", *body.Weight)
	writeJSON(w, http.StatusOK, api.Weight{Weight: *body.Weight})
}

// leaseHex writes a lease id as `etcdctl lease list` does; "" for none.
func leaseHex(id int64) string {
	if id == 0 {
		return ""
	}
	return strconv.FormatInt(id, 16)
}
