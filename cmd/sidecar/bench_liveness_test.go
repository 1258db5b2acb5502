package main

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"go.etcd.io/etcd/client/v3/naming/endpoints"

	"github.com/sidecar-dev/sidecar/client"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// Liveness figures for the README, against a real etcd process behind a
// TCP proxy that blackholes the link (stops forwarding, closes nothing):
//
//	go test -run '^$' -bench 'Blackhole' -benchtime 20x ./cmd/sidecar
//
// Each sample is one cut at a random phase of the sidecar's 1s liveness
// probe: the time until discovery answers are stale, until /v1/health is
// 503, and, after the link is healed, until both are clear again. Health is
// asked every 20ms throughout; health_p99_ms is the p99 of those answers'
// latency during the cuts, health_max_ms the slowest.
func BenchmarkBlackhole(b *testing.B) {
	srv := etcdtest.StartServer(b, etcdtest.ServerOptions{})
	em, _ := endpoints.NewManager(srv.Client(b), "/sidecar/services/billing")
	if err := em.AddEndpoint(context.Background(), "/sidecar/services/billing/b1", endpoints.Endpoint{Addr: "10.0.0.9:9000"}); err != nil {
		b.Fatal(err)
	}
	p := etcdtest.StartProxy(b, srv.ClientURL)
	cmd, cli, _ := startBench(b, joinYAML(b, p.URL()))
	defer stopBench(cmd)
	var stale, unhealthy, clear, latency []time.Duration
	for b.Loop() {
		waitView(b, cli, true, nil)
		time.Sleep(time.Duration(rand.Int64N(int64(time.Second)))) // a random phase of the probe
		cut := time.Now()
		p.Blackhole()
		s, u := waitView(b, cli, false, &latency)
		stale, unhealthy = append(stale, s.Sub(cut)), append(unhealthy, u.Sub(cut))
		healed := time.Now()
		p.Heal()
		s, u = waitView(b, cli, true, &latency)
		clear = append(clear, max(s.Sub(healed), u.Sub(healed)))
	}
	report := func(name string, samples []time.Duration) {
		p50, p99 := quantiles(samples)
		b.ReportMetric(p50, name+"_p50_ms")
		b.ReportMetric(p99, name+"_p99_ms")
	}
	report("stale", stale)
	report("503", unhealthy)
	report("clear", clear)
	_, p99 := quantiles(latency)
	b.ReportMetric(p99, "health_p99_ms")
	b.ReportMetric(ms(slices.Max(latency)), "health_max_ms")
	b.ReportMetric(0, "ns/op")
}

// waitView polls health and the billing service every 20ms until both say
// etcd is up (up) or down (!up), and returns when each first did; each
// health request's latency is appended to latency when it is not nil.
func waitView(b *testing.B, cli *client.Client, up bool, latency *[]time.Duration) (staleAt, healthAt time.Time) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		start := time.Now()
		h, herr := cli.Health(ctx)
		took := time.Since(start)
		s, serr := cli.Service(ctx, "billing")
		cancel()
		if herr != nil || serr != nil {
			b.Fatalf("health %v, service %v (after %s)", herr, serr, took)
		}
		if latency != nil {
			*latency = append(*latency, took)
		}
		now := time.Now()
		if healthAt.IsZero() && h.Healthy == up {
			healthAt = now
		}
		if staleAt.IsZero() && s.Stale == !up {
			staleAt = now
		}
		if !healthAt.IsZero() && !staleAt.IsZero() {
			return staleAt, healthAt
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Fatalf("etcd not seen up=%v within 30s", up)
	return
}
