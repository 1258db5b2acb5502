package sidecar

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sidecar-dev/sidecar/configsync"
	"github.com/sidecar-dev/sidecar/internal/liveness"
)

// configCollector exports each config mapping's state at scrape time, and
// the latency of its batches.
type configCollector struct {
	d                                  *Daemon
	revision, files, rejected, failing *prometheus.Desc
	writes, removals, reloads, lag     *prometheus.Desc
	latency                            *prometheus.HistogramVec
}

// newConfigCollector returns the collector; its histogram is fed by
// observe, with each batch.
func newConfigCollector(d *Daemon) *configCollector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, append([]string{"prefix"}, labels...), nil)
	}
	return &configCollector{
		d:        d,
		revision: desc("sidecar_config_revision", "The etcd revision the mapping's directory reflects."),
		files:    desc("sidecar_config_files", "Files the mapping mirrors now."),
		rejected: desc("sidecar_config_rejected_keys", "Keys under the prefix refused now (bad path, value over max_file_bytes)."),
		failing:  desc("sidecar_config_failing", "1 while the mapping cannot bring its directory in step with etcd."),
		writes:   desc("sidecar_config_writes_total", "Files written by the mapping."),
		removals: desc("sidecar_config_removals_total", "Files removed by the mapping."),
		reloads:  desc("sidecar_config_reloads_total", "on_change reloads run, by result (ok, failed).", "result"),
		lag: desc("sidecar_config_lag_seconds", "How long the directory may have been behind etcd: 0 while the mapping follows its watch and etcd answers; "+
			"otherwise the time since it last did (a failed watch, list or write, or a silent etcd)."),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sidecar_config_write_latency_seconds",
			Help:    "Time from the arrival of a watch response to its batch of files on disk (synced).",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"prefix"}),
	}
}

// observe records a batch's latency (a list has none).
func (c *configCollector) observe(b configsync.Batch) {
	if b.Latency > 0 {
		c.latency.WithLabelValues(b.Prefix).Observe(b.Latency.Seconds())
	}
}

// lagSeconds is how long the directory may have been behind etcd: since
// the mapping stopped following its watch, or since etcd last answered
// when it is silent now; 0 while both are well.
func lagSeconds(st configsync.Status, live *liveness.Monitor, now time.Time) float64 {
	if !st.Behind.IsZero() {
		return now.Sub(st.Behind).Seconds()
	}
	if live != nil {
		if ls := live.State(); !ls.Up && !ls.LastAnswer.IsZero() {
			return now.Sub(ls.LastAnswer).Seconds()
		}
	}
	return 0
}

func (c *configCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.revision, c.files, c.rejected, c.failing, c.writes, c.removals, c.reloads, c.lag} {
		ch <- d
	}
	c.latency.Describe(ch)
}

func (c *configCollector) Collect(ch chan<- prometheus.Metric) {
	c.latency.Collect(ch)
	ms, rs := c.d.mirrors.Load(), c.d.reloaders.Load()
	if ms == nil || rs == nil {
		return
	}
	now, live := time.Now(), c.d.etcd.live.Load()
	for i, m := range *ms {
		st := m.Status()
		failing := 0.0
		if st.LastError != "" {
			failing = 1
		}
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, st.Prefix)
		}
		gauge(c.revision, float64(st.Revision))
		gauge(c.files, float64(st.Files))
		gauge(c.rejected, float64(st.Rejected))
		gauge(c.failing, failing)
		gauge(c.lag, lagSeconds(st, live, now)) // as /v1/config's lag_s
		ch <- prometheus.MustNewConstMetric(c.writes, prometheus.CounterValue, float64(st.Writes), st.Prefix)
		ch <- prometheus.MustNewConstMetric(c.removals, prometheus.CounterValue, float64(st.Removals), st.Prefix)
		if r := (*rs)[i]; r != nil {
			ok, failed := r.Reloads()
			ch <- prometheus.MustNewConstMetric(c.reloads, prometheus.CounterValue, float64(ok), st.Prefix, "ok")
			ch <- prometheus.MustNewConstMetric(c.reloads, prometheus.CounterValue, float64(failed), st.Prefix, "failed")
		}
	}
}
