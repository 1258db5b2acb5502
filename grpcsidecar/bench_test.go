package grpcsidecar

import (
	"context"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// roundRobin selects grpc-go's round_robin, ignoring the resolver's
// service config.
const roundRobin = `{"loadBalancingConfig":[{"round_robin":{}}]}`

// Calls per second and per-call latency through the weighted balancer and
// through grpc-go's round_robin, on the same three servers (weights
// 1/2/3), the same sidecar resolver and the same run: the difference is
// the picker's overhead. Sequential calls report p50/p99; parallel ones
// (4 x GOMAXPROCS goroutines) show the picker's lock under contention.
func BenchmarkCalls(b *testing.B) {
	ev := newEnv(b)
	startDaemon(b, ev.etcdURL, ev.socket)
	res := grpc.WithResolvers(&Builder{Socket: ev.socket})
	clients := []struct {
		name string
		conn *grpc.ClientConn
	}{
		{Name, dial(b, "sidecar:///"+service, res)},
		{"round_robin", dial(b, "sidecar:///"+service, res, grpc.WithDisableServiceConfig(), grpc.WithDefaultServiceConfig(roundRobin))},
	}
	for _, c := range clients {
		warm(b, ev, c.conn)
		hc := healthpb.NewHealthClient(c.conn)
		b.Run("balancer="+c.name+"/sequential", func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			start := time.Now()
			for b.Loop() {
				t0 := time.Now()
				if _, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			b.ReportMetric(float64(len(lat))/time.Since(start).Seconds(), "calls/s")
			b.ReportMetric(micros(percentile(lat, 50)), "p50-µs")
			b.ReportMetric(micros(percentile(lat, 99)), "p99-µs")
		})
		b.Run("balancer="+c.name+"/parallel", func(b *testing.B) {
			b.SetParallelism(4) // 4 x GOMAXPROCS goroutines
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
		})
	}
}

// The picker alone, over three READY children.
func BenchmarkPick(b *testing.B) {
	child := balancer.Picker(okChild{})
	p := newPicker([]entry{{id: "a", weight: 1, child: child}, {id: "b", weight: 2, child: child}, {id: "c", weight: 3, child: child}}, nil)
	b.Run("sequential", func(b *testing.B) {
		for b.Loop() {
			p.Pick(balancer.PickInfo{})
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				p.Pick(balancer.PickInfo{})
			}
		})
	})
}

type okChild struct{}

func (okChild) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	return balancer.PickResult{}, nil
}

// Weight change → new shares: the time from the etcd transaction that
// moves the weight from one server to another (1/0 ↔ 0/1, one watch
// event) to the first call that lands on the newly weighted server, with
// calls made back to back (one call takes some 100 µs here). It includes
// etcd's commit (an fsync; commit-p50-ms alone), the watch, and for the sidecar resolver the
// daemon's cache and its NDJSON stream.
func BenchmarkWeightChange(b *testing.B) {
	ev := newEnv(b)
	startDaemon(b, ev.etcdURL, ev.socket)
	rb, err := NewEtcdBuilder(ev.cli, EtcdConfig{Namespace: namespace})
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range []struct {
		name, target string
		opt          grpc.DialOption
	}{
		{"resolver=sidecar", "sidecar:///" + service, grpc.WithResolvers(&Builder{Socket: ev.socket})},
		{"resolver=etcd", "etcd:///" + service, grpc.WithResolvers(rb)},
	} {
		conn := dial(b, r.target, r.opt)
		warm(b, ev, conn)
		b.Run(r.name, func(b *testing.B) {
			var lat, commit []time.Duration
			for i := 0; b.Loop(); i++ {
				to, from := ev.backends[i%2], ev.backends[(i+1)%2]
				l, c := weightMove(b, ev, conn, to, from)
				lat, commit = append(lat, l), append(commit, c)
			}
			b.ReportMetric(millis(percentile(lat, 50)), "p50-ms")
			b.ReportMetric(millis(percentile(lat, 99)), "p99-ms")
			b.ReportMetric(millis(percentile(commit, 50)), "commit-p50-ms")
		})
	}
}

// weightMove gives to weight 1 and from (and the third backend) weight 0,
// and returns how long until a call lands on to, and how long etcd took
// to commit the change.
func weightMove(b *testing.B, ev *env, conn *grpc.ClientConn, to, from *backend) (lat, commit time.Duration) {
	hc := healthpb.NewHealthClient(conn)
	n := to.calls.Load()
	t0 := time.Now()
	put(b, ev.cli, map[*backend]int{to: 1, from: 0, ev.backends[2]: 0})
	commit = time.Since(t0)
	for {
		if _, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
			b.Fatal(err)
		}
		if to.calls.Load() > n {
			return time.Since(t0), commit
		}
		if time.Since(t0) > 10*time.Second {
			b.Fatalf("no call reached %s within 10s of its weight change", to.id)
		}
	}
}

// warm sets the weights 1/2/3 and waits until every backend got calls.
func warm(b *testing.B, ev *env, conn *grpc.ClientConn) {
	b.Helper()
	bs := ev.backends
	put(b, ev.cli, map[*backend]int{bs[0]: 1, bs[1]: 2, bs[2]: 3})
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := calls(b, conn, bs, 60)
		if err == nil && !slices.Contains(got, 0) {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("not every server got calls: %v, %v", got, err)
		}
	}
}

func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
