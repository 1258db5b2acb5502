package sidecar

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sidecar-dev/sidecar/api"
)

// The metrics of locks and elections, named in this one place.
const (
	metricLocksHeld     = "sidecar_locks_held"
	metricElectionsLed  = "sidecar_elections_led"
	metricCoordAcquired = "sidecar_coordination_acquired_total"
	metricCoordLost     = "sidecar_coordination_lost_total"
)

// coordMetrics are the collectors of the coordinator: gauges read from its
// table at scrape time, counters fed as holds come and go.
type coordMetrics struct {
	held, led prometheus.GaugeFunc
	acquired  *prometheus.CounterVec // by kind
	lost      *prometheus.CounterVec // by kind and reason (one of lossReasons)
}

// newCoordMetrics builds the collectors; count says how many holds of a
// kind the table has now.
func newCoordMetrics(count func(kind string) int) *coordMetrics {
	gauge := func(name, help, kind string) prometheus.GaugeFunc {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help},
			func() float64 { return float64(count(kind)) })
	}
	m := &coordMetrics{
		held: gauge(metricLocksHeld, "Locks held through this sidecar now.", api.KindLock),
		led:  gauge(metricElectionsLed, "Elections led through this sidecar now.", api.KindElection),
		acquired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricCoordAcquired, Help: "Locks acquired and elections won through this sidecar, by kind (lock, election).",
		}, []string{"kind"}),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricCoordLost, Help: "Holds lost while their holder still held them, by kind and reason " +
				"(session: the session's lease expired or was revoked, or its deadline passed while etcd was silent; " +
				"deleted: someone deleted the holder's key; shutdown: the sidecar stopped).",
		}, []string{"kind", "reason"}),
	}
	for _, kind := range []string{api.KindLock, api.KindElection} {
		m.acquired.WithLabelValues(kind)
		for _, reason := range lossReasons {
			m.lost.WithLabelValues(kind, reason)
		}
	}
	return m
}

// collectors are what the daemon registers.
func (m *coordMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.held, m.led, m.acquired, m.lost}
}
