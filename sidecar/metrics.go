package sidecar

import (
	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"

	"github.com/sidecar-dev/sidecar/internal/version"
)

// metrics are the daemon's Prometheus collectors, in a registry of its own.
type metrics struct {
	reg          *prometheus.Registry
	grpc         *grpcprom.ClientMetrics
	apiRequests  *prometheus.CounterVec
	apiRejected  *prometheus.CounterVec
	apiInFlight  prometheus.Gauge
	connState    *prometheus.GaugeVec
	connAttempts *prometheus.CounterVec
	alarms       *prometheus.GaugeVec
}

func newMetrics(etcdUp func() bool) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		grpc: grpcprom.NewClientMetrics(grpcprom.WithClientHandlingTimeHistogram(
			grpcprom.WithHistogramBuckets([]float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}))),
		apiRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_api_requests_total", Help: "Local API requests by route and status code.",
		}, []string{"route", "code"}),
		apiRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_api_rejected_total", Help: "Local API requests refused before reaching a handler, by reason.",
		}, []string{"reason"}),
		apiInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sidecar_api_in_flight_requests", Help: "Local API requests being served, streams included.",
		}),
		connState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sidecar_etcd_connection_state", Help: "gRPC connectivity state of the etcd client connection (1 for the current state).",
		}, []string{"state"}),
		connAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_etcd_connect_attempts_total", Help: "Attempts to connect to etcd at start-up, by result (ok, refused, tls, auth, timeout, dns, unavailable, error).",
		}, []string{"result"}),
		alarms: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sidecar_etcd_alarms", Help: "etcd's active alarms as last asked (every 10s): members with each alarm.",
		}, []string{"alarm"}),
	}
	for _, a := range alarmTypes {
		m.alarms.WithLabelValues(a.String()).Set(0)
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "sidecar_build_info", Help: "Versions built into the sidecar; always 1.",
		ConstLabels: prometheus.Labels{"version": version.Sidecar(), "etcd_version": version.Etcd(), "go_version": version.Go()},
	})
	build.Set(1)
	up := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sidecar_etcd_up", Help: "1 while etcd answers the sidecar (its liveness monitor: an answer within the last 2s); 0 otherwise.",
	}, func() float64 {
		if etcdUp() {
			return 1
		}
		return 0
	})
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.grpc, m.apiRequests, m.apiRejected, m.apiInFlight, m.connState, m.connAttempts, m.alarms, build, up,
	)
	return m
}

// dialOptions instrument the etcd client's gRPC calls.
func (m *metrics) dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(m.grpc.UnaryClientInterceptor()),
		grpc.WithChainStreamInterceptor(m.grpc.StreamClientInterceptor()),
	}
}
