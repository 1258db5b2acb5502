package configsync_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/configsync"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// BenchmarkPutToFile: a Put until the new value is in the mirrored file,
// beside its floor in the same run: a bare clientv3 watch of the key that
// writes the value atomically (temp file, fsync, rename, fsync of the
// directory) into a directory of its own. Both files are observed the same
// way, by an fsnotify watch of their directory, stamped on arrival.
//
//	go test -run '^$' -bench PutToFile -benchtime 200x ./configsync
func BenchmarkPutToFile(b *testing.B) {
	for _, keys := range []int{1, 5000} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) { benchPutToFile(b, keys) })
	}
}

func benchPutToFile(b *testing.B, keys int) {
	e := etcdtest.StartEmbedded(b)
	cli := e.Client(b)
	for i := range keys - 1 {
		if _, err := cli.Put(b.Context(), fmt.Sprintf("%sother/%05d", prefix, i), "x"); err != nil {
			b.Fatal(err)
		}
	}
	dir, floorDir := filepath.Join(b.TempDir(), "app"), b.TempDir()
	m, err := configsync.New(cli, configsync.Config{Prefix: prefix, Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.Run(ctx)
	go floorWriter(ctx, cli, prefix+"hot", floorDir)
	key := prefix + "hot"
	rev, _ := cli.Put(ctx, key, "start")
	for m.Status().Revision < rev.Header.Revision {
		time.Sleep(10 * time.Millisecond)
	}
	side := observe(b, dir, "hot")
	floor := observe(b, floorDir, "hot")
	var got, gotFloor []time.Duration
	for i := 0; b.Loop(); i++ {
		value := fmt.Sprintf("value %d", i)
		start := time.Now()
		if _, err := cli.Put(ctx, key, value); err != nil {
			b.Fatal(err)
		}
		got = append(got, side.wait(b, value).Sub(start))
		gotFloor = append(gotFloor, floor.wait(b, value).Sub(start))
	}
	p50, p99 := quantiles(got)
	f50, f99 := quantiles(gotFloor)
	b.ReportMetric(p50, "p50_ms")
	b.ReportMetric(p99, "p99_ms")
	b.ReportMetric(f50, "floor_p50_ms")
	b.ReportMetric(f99, "floor_p99_ms")
	b.ReportMetric(0, "ns/op")
}

// floorWriter is the floor: a bare watch of key, each value written
// atomically and durably into dir as "hot".
func floorWriter(ctx context.Context, cli *clientv3.Client, key, dir string) {
	for wr := range cli.Watch(ctx, key) {
		for _, ev := range wr.Events {
			f, err := os.CreateTemp(dir, ".tmp")
			if err != nil {
				return
			}
			f.Write(ev.Kv.Value)
			f.Sync()
			f.Close()
			os.Rename(f.Name(), filepath.Join(dir, "hot"))
			if d, err := os.Open(dir); err == nil {
				d.Sync()
				d.Close()
			}
		}
	}
}

// observer stamps each content of one file as it appears.
type observer struct {
	arrivals chan arrival
}

type arrival struct {
	content string
	at      time.Time
}

func observe(b *testing.B, dir, name string) *observer {
	w := watchDir(b, dir)
	o := &observer{arrivals: make(chan arrival, 1024)}
	path := filepath.Join(dir, name)
	go func() {
		for ev := range w.Events {
			if ev.Name != path || !ev.Has(fsnotify.Create) && !ev.Has(fsnotify.Write) {
				continue
			}
			at := time.Now()
			if data, err := os.ReadFile(path); err == nil {
				o.arrivals <- arrival{string(data), at}
			}
		}
	}()
	return o
}

// wait returns when content arrived.
func (o *observer) wait(b *testing.B, content string) time.Time {
	timeout := time.After(10 * time.Second)
	for {
		select {
		case a := <-o.arrivals:
			if a.content == content {
				return a.at
			}
		case <-timeout:
			b.Fatalf("%q not seen within 10s", content)
		}
	}
}

func quantiles(samples []time.Duration) (p50, p99 float64) {
	sorted := append([]time.Duration(nil), samples...)
	slices.Sort(sorted)
	q := func(p float64) float64 {
		return float64(sorted[min(len(sorted)-1, int(p*float64(len(sorted))))].Microseconds()) / 1000
	}
	return q(0.5), q(0.99)
}

// watchDir returns an fsnotify watch of dir, closed at the end of b.
func watchDir(b *testing.B, dir string) *fsnotify.Watcher {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { w.Close() })
	if err := w.Add(dir); err != nil {
		b.Fatal(err)
	}
	return w
}
