package sidecar

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sidecar-dev/sidecar/api"
)

// registrationCollector exports the registrar's state at scrape time.
type registrationCollector struct {
	d               *Daemon
	state, weight   *prometheus.Desc
	ttl, reregister *prometheus.Desc
}

func newRegistrationCollector(d *Daemon) *registrationCollector {
	labels := prometheus.Labels{"service": d.cfg.Service.Name, "id": d.cfg.Service.ID}
	return &registrationCollector{
		d: d,
		state: prometheus.NewDesc("sidecar_registration_state",
			"State of this sidecar's registration (1 for the current state).", []string{"state"}, labels),
		weight: prometheus.NewDesc("sidecar_registration_weight",
			"Weight of this sidecar's registration.", nil, labels),
		ttl: prometheus.NewDesc("sidecar_registration_ttl_remaining_seconds",
			"Time until the registration's lease would expire without another keep-alive.", nil, labels),
		reregister: prometheus.NewDesc("sidecar_registration_reregistrations_total",
			"Registrations after the first: each time the lease or key was lost and written again.", nil, labels),
	}
}

func (c *registrationCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.state
	ch <- c.weight
	ch <- c.ttl
	ch <- c.reregister
}

func (c *registrationCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.d.registration()
	if r == nil {
		return
	}
	for _, s := range api.RegStates {
		v := 0.0
		if s == r.State {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, v, s)
	}
	ch <- prometheus.MustNewConstMetric(c.weight, prometheus.GaugeValue, float64(r.Weight))
	ch <- prometheus.MustNewConstMetric(c.ttl, prometheus.GaugeValue, r.TTLRemainingS)
	ch <- prometheus.MustNewConstMetric(c.reregister, prometheus.CounterValue, float64(r.Reregistrations))
}
