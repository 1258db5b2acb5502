package discovery_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/discovery"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// BenchmarkUpdateLatency measures, for one service of 1,000 and 5,000
// instances, the time from a weight change written by a second client to
// the Subscribe snapshot that contains it ("cache"), next to the floor: a
// bare clientv3 watch of the same prefix, on the cache's client, receiving
// the same kind of put ("floor"). Both include the put's own round trip.
func BenchmarkUpdateLatency(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			e := etcdtest.StartEmbedded(b)
			writer := e.Client(b)
			cli := e.Client(b)
			registerMany(b, writer, "bench", n)
			c := startCache(b, cli, discovery.Config{})
			ch, err := c.Subscribe(b.Context(), "bench")
			if err != nil {
				b.Fatal(err)
			}
			next(b, ch, 10*time.Second, "first snapshot", func(s discovery.Snapshot) bool { return len(s.Instances) == n })
			b.Run("cache", func(b *testing.B) {
				measure(b, writer, n, func(rev int64) {
					next(b, ch, 5*time.Second, "update", func(s discovery.Snapshot) bool { return s.Revision >= rev })
				})
			})
			b.Run("floor", func(b *testing.B) {
				wch := cli.Watch(b.Context(), prefix+"/bench/", clientv3.WithPrefix())
				measure(b, writer, n, func(rev int64) {
					for resp := range wch {
						if len(resp.Events) > 0 && resp.Events[len(resp.Events)-1].Kv.ModRevision >= rev {
							return
						}
					}
					b.Fatal("watch closed")
				})
			})
		})
	}
}

// measure times put-to-seen for weight changes of the n instances in turn
// and reports the median and 99th percentile in milliseconds.
func measure(b *testing.B, writer *clientv3.Client, n int, seen func(rev int64)) {
	var lat []time.Duration
	i := 0
	for b.Loop() {
		id := fmt.Sprintf("i%05d", i%n)
		start := time.Now()
		resp, err := writer.Put(b.Context(), prefix+"/bench/"+id, record(id, "10.9.9.9:8080", 1+i%1000))
		if err != nil {
			b.Fatal(err)
		}
		seen(resp.Header.Revision)
		lat = append(lat, time.Since(start))
		i++
	}
	slices.Sort(lat)
	ms := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(ms(0.50), "p50_ms")
	b.ReportMetric(ms(0.99), "p99_ms")
}
