package sidecar

import (
	"github.com/prometheus/client_golang/prometheus"
)

// configCollector exports each config mapping's state at scrape time.
type configCollector struct {
	d                                  *Daemon
	revision, files, rejected, failing *prometheus.Desc
	writes, removals, reloads          *prometheus.Desc
}

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
	}
}

func (c *configCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.revision, c.files, c.rejected, c.failing, c.writes, c.removals, c.reloads} {
		ch <- d
	}
}

func (c *configCollector) Collect(ch chan<- prometheus.Metric) {
	ms, rs := c.d.mirrors.Load(), c.d.reloaders.Load()
	if ms == nil || rs == nil {
		return
	}
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
		ch <- prometheus.MustNewConstMetric(c.writes, prometheus.CounterValue, float64(st.Writes), st.Prefix)
		ch <- prometheus.MustNewConstMetric(c.removals, prometheus.CounterValue, float64(st.Removals), st.Prefix)
		if r := (*rs)[i]; r != nil {
			ok, failed := r.Reloads()
			ch <- prometheus.MustNewConstMetric(c.reloads, prometheus.CounterValue, float64(ok), st.Prefix, "ok")
			ch <- prometheus.MustNewConstMetric(c.reloads, prometheus.CounterValue, float64(failed), st.Prefix, "failed")
		}
	}
}
