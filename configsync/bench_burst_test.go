package configsync_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"

	"github.com/sidecar-dev/sidecar/configsync"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// The shape of a burst: burstKeys keys under a prefix, each given a new
// value of burstValueBytes, Put as fast as the client can by burstWriters
// goroutines sharing one client (so etcd batches them as it would a
// config push from a tool or an app writing many keys at once).
const (
	burstKeys       = 1000
	burstWriters    = 8
	burstValueBytes = 128
	floorPrefix     = "/config/floor/"
)

// BenchmarkBurst: a burst of 1,000 changed keys under the prefix, from
// the last Put response until the mirrored directory holds all 1,000 final
// values (p50_ms, p99_ms), beside its floor in the same run: a bare
// clientv3 watch of another prefix that writes each value atomically (temp
// file, fsync, rename, fsync of the directory) into a directory of its own
// (floor_p50_ms, floor_p99_ms). Each iteration is a burst of new values to
// the mapping and one to the floor, one after the other, so neither
// competes with the other for the disk; which goes first alternates.
// Arrivals are stamped by an fsnotify watch of each directory; the
// contents are read once all 1,000 have arrived. A figure can be below
// zero: the last file may land before the last Put response reaches its
// goroutine. burst_p50_ms is how long the Puts of a burst took, first to
// last response.
//
//	go test -run '^$' -bench Burst -benchtime 20x ./configsync
func BenchmarkBurst(b *testing.B) {
	e := etcdtest.StartEmbedded(b)
	cli := e.Client(b)
	dir, floorDir := filepath.Join(b.TempDir(), "app"), b.TempDir()
	m, err := configsync.New(cli, configsync.Config{Prefix: prefix, Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var g errgroup.Group
	b.Cleanup(func() { cancel(); g.Wait() }) // before etcd stops
	g.Go(func() error { return m.Run(ctx) })
	start, err := cli.Get(ctx, floorPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		b.Fatal(err)
	}
	g.Go(func() error { return prefixFloor(ctx, cli, floorPrefix, floorDir, start.Header.Revision+1) })
	etcdtest.Eventually(b, time.Minute, "initial sync", func() error {
		if m.Status().Revision == 0 {
			return fmt.Errorf("mapping: %+v", m.Status())
		}
		return nil
	})
	side, floor := watchArrivals(b, dir), watchArrivals(b, floorDir)
	// Create the files first: each iteration replaces existing ones.
	burst(b, cli, prefix, -1, side)
	burst(b, cli, floorPrefix, -1, floor)
	var got, gotFloor, puts []time.Duration
	run := func(samples *[]time.Duration, keys string, i int, a *arrivals) {
		d, put := burst(b, cli, keys, i, a)
		*samples, puts = append(*samples, d), append(puts, put)
	}
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			run(&got, prefix, i, side)
			run(&gotFloor, floorPrefix, i, floor)
		} else {
			run(&gotFloor, floorPrefix, i, floor)
			run(&got, prefix, i, side)
		}
	}
	p50, p99 := quantiles(got)
	f50, f99 := quantiles(gotFloor)
	put50, _ := quantiles(puts)
	b.ReportMetric(put50, "burst_p50_ms")
	b.ReportMetric(p50, "p50_ms")
	b.ReportMetric(p99, "p99_ms")
	b.ReportMetric(f50, "floor_p50_ms")
	b.ReportMetric(f99, "floor_p99_ms")
	b.ReportMetric(0, "ns/op")
}

// burst gives each of the burstKeys keys under prefix the value of
// iteration i, Put by burstWriters goroutines, and returns the time from
// the last Put response to the last arrival of a final value in a's
// directory, and the time the Puts took.
func burst(b *testing.B, cli *clientv3.Client, prefix string, i int, a *arrivals) (settled, puts time.Duration) {
	want := make(map[string]string, burstKeys)
	for k := range burstKeys {
		want[fmt.Sprintf("k%04d", k)] = burstValue(i, k)
	}
	a.reset()
	start := time.Now()
	var mu sync.Mutex
	var last time.Time // when the last Put response came back
	var g errgroup.Group
	for w := range burstWriters {
		g.Go(func() error {
			for k := w; k < burstKeys; k += burstWriters {
				name := fmt.Sprintf("k%04d", k)
				if _, err := cli.Put(b.Context(), prefix+name, want[name]); err != nil {
					return err
				}
			}
			now := time.Now()
			mu.Lock()
			last = later(last, now)
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	return a.settle(b, want).Sub(last), last.Sub(start)
}

// burstValue is the value of key k in iteration i: burstValueBytes long,
// different in each iteration.
func burstValue(i, k int) string {
	v := fmt.Sprintf("iteration %d key %04d ", i, k)
	return v + strings.Repeat("x", burstValueBytes-len(v))
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// prefixFloor is the floor: a bare watch of prefix from rev, each value
// written atomically and durably into dir, at its key minus the prefix
// (the benchmark's keys have no '/' after it).
func prefixFloor(ctx context.Context, cli *clientv3.Client, prefix, dir string, rev int64) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	for wr := range cli.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev)) {
		for _, ev := range wr.Events {
			if ev.Type != clientv3.EventTypePut {
				continue
			}
			f, err := os.CreateTemp(dir, ".tmp")
			if err != nil {
				return err
			}
			f.Write(ev.Kv.Value)
			f.Chmod(0o644)
			f.Sync()
			f.Close()
			if err := os.Rename(f.Name(), filepath.Join(dir, strings.TrimPrefix(string(ev.Kv.Key), prefix))); err != nil {
				return err
			}
			d.Sync()
		}
	}
	return nil
}

// arrivals stamps the files that land in one directory (created or
// renamed into it, or written in place), by name; names starting with '.'
// (temporary files) are left out. Safe for concurrent use.
type arrivals struct {
	dir string
	mu  sync.Mutex
	at  map[string]time.Time // since the last reset: name → its last arrival
	err error                // of the watch (an overflowed queue loses arrivals)
}

func watchArrivals(b *testing.B, dir string) *arrivals {
	w := watchDir(b, dir)
	a := &arrivals{dir: dir, at: map[string]time.Time{}}
	go func() {
		for ev := range w.Events {
			name := filepath.Base(ev.Name)
			if strings.HasPrefix(name, ".") || !ev.Has(fsnotify.Create) && !ev.Has(fsnotify.Write) {
				continue
			}
			at := time.Now()
			a.mu.Lock()
			a.at[name] = at
			a.mu.Unlock()
		}
	}()
	go func() {
		for err := range w.Errors {
			a.mu.Lock()
			a.err = err
			a.mu.Unlock()
		}
	}()
	return a
}

// reset forgets the arrivals so far.
func (a *arrivals) reset() {
	a.mu.Lock()
	clear(a.at)
	a.mu.Unlock()
}

// settle waits until every file of want holds its value and returns when
// the last of them arrived. It reads the files once each has arrived
// since the reset, and again a file that was not final when read, after
// it arrives again.
func (a *arrivals) settle(b *testing.B, want map[string]string) time.Time {
	read := make(map[string]time.Time, len(want)) // not final yet → arrival last read; zero before
	for name := range want {
		read[name] = time.Time{}
	}
	var last time.Time
	etcdtest.Eventually(b, time.Minute, "directory equals the burst", func() error {
		fresh := make(map[string]time.Time, len(read))
		a.mu.Lock()
		for name, seen := range read {
			if at := a.at[name]; at.After(seen) {
				fresh[name] = at
			}
		}
		err := a.err
		a.mu.Unlock()
		if err != nil {
			b.Fatalf("fsnotify %s: %v", a.dir, err)
		}
		if len(fresh) < len(read) {
			return fmt.Errorf("%d of %d files not arrived", len(read)-len(fresh), len(want))
		}
		for name, at := range fresh {
			read[name] = at
			if data, err := os.ReadFile(filepath.Join(a.dir, name)); err == nil && string(data) == want[name] {
				delete(read, name)
				last = later(last, at)
			}
		}
		if len(read) > 0 {
			return fmt.Errorf("%d of %d files not final", len(read), len(want))
		}
		return nil
	})
	return last
}
