package chaos

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// cfgKeys is how many keys the churn scenario rewrites in turn.
const cfgKeys = 20

// cfgValueBytes is about the size of each value: larger than one page, so
// that a write that is not atomic could be seen half done.
const cfgValueBytes = 6 << 10

// TestConfigMemberChurn: a sidecar mirrors cfgPrefix (layout files) through
// the proxies while a writer puts 50 values a second through a direct
// client, each key of cfgKeys in turn with a rising sequence number, and a
// reader reads every mirrored file again and again. Every period one etcd
// member (in turn, so the leader too) is SIGKILLed and restarted half a
// period later. Full form: 2 minutes, a kill every 10 s; short: 15 s, a
// kill every 5 s. Each value is self-checking (key, sequence number,
// padding, SHA-256).
//
// Pass: 0 torn reads (every read is a whole value of its key); 0 files
// vanished once written; 0 duplicated — no read of a key returns an older
// sequence number than one read before (a replayed or reordered write);
// 0 lost — etcd's final value of each key is at least the last
// acknowledged put of it, the reader's last read of each key is etcd's
// final value, and within 30 s of the last put the directory holds exactly
// etcd's keys and values (no file missing, none extra) at etcd's revision.
func TestConfigMemberChurn(t *testing.T) {
	w := newWorld(t)
	p, dir := cfgStartMirror(t, w, "files")
	p.cfgWaitRevision(t, 1, 30*time.Second)
	keys := make([]string, cfgKeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("svc/k%02d.conf", i)
	}
	wr := &cfgWriter{w: w, keys: keys, acked: map[cfgVersion]time.Time{}, last: map[string]int{}}
	rd := &cfgReader{dir: dir, keys: keys, last: map[string]int{}, seen: map[cfgVersion]time.Time{}}
	period := trials(5, 10)
	length := time.Duration(trials(15, 120)) * time.Second
	stopW, stopR := make(chan struct{}), make(chan struct{})
	var writer, reader sync.WaitGroup
	writer.Go(func() { wr.run(stopW) })
	reader.Go(func() { rd.run(stopR) })
	start := time.Now()
	kills := cfgChurnMembers(t, w, start.Add(length), time.Duration(period)*time.Second)
	close(stopW)
	writer.Wait()
	wrote := time.Now()
	conv := p.cfgConverge(t, w, dir, "files", 30*time.Second)
	close(stopR)
	reader.Wait()
	t.Logf("FIGURE scenario=config_member_churn form=%s seconds=%.0f kills=%d puts=%d puts_per_s=%.1f put_errors=%d reads=%d versions_seen=%d torn=%d vanished=%d regressions=%d converged_ms=%s",
		form(), wrote.Sub(start).Seconds(), kills, len(wr.acked), float64(len(wr.acked))/wrote.Sub(start).Seconds(), wr.failed, rd.reads, len(rd.seen), rd.tornN, rd.vanished, rd.regressions, ms(conv))
	lag := sample{name: "config_member_churn_put_to_file"}
	for v, at := range wr.acked {
		if seen, ok := rd.seen[v]; ok {
			lag.add(max(0, seen.Sub(at)))
		}
	}
	lag.figure(t)
	cfgCheckChurn(t, w, wr, rd)
}

// cfgChurnMembers kills a member every period, in turn, and restarts it
// half a period later, until end; it returns the number of kills.
func cfgChurnMembers(t *testing.T, w *world, end time.Time, period time.Duration) int {
	t.Helper()
	kills := 0
	for next := time.Now().Add(period); next.Before(end); next = next.Add(period) {
		time.Sleep(time.Until(next))
		m := w.cluster.Members[kills%len(w.cluster.Members)]
		m.Kill()
		kills++
		time.Sleep(period / 2)
		m.Restart()
	}
	time.Sleep(time.Until(end))
	return kills
}

// cfgCheckChurn fails the test for each torn read, vanished file,
// regression, and each key whose final value in etcd is older than its
// last acknowledged put or not what the reader last read.
func cfgCheckChurn(t *testing.T, w *world, wr *cfgWriter, rd *cfgReader) {
	t.Helper()
	if rd.tornN != 0 {
		t.Errorf("%d torn reads, the first: %q", rd.tornN, rd.torn)
	}
	if rd.vanished != 0 || rd.regressions != 0 {
		t.Errorf("%d reads found a written file gone, %d went back to an older value", rd.vanished, rd.regressions)
	}
	kvs, _, err := w.cfgEtcd(t, cfgPrefix)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range wr.keys {
		seq, err := cfgOpen(k, kvs[k])
		switch {
		case err != nil:
			t.Errorf("etcd's value: %v", err)
		case seq < wr.last[k]:
			t.Errorf("%s: etcd holds seq %d, the last acknowledged put was %d", k, seq, wr.last[k])
		case rd.last[k] != seq:
			t.Errorf("%s: the reader last read seq %d, etcd holds %d", k, rd.last[k], seq)
		}
	}
	if len(wr.acked) == 0 || rd.reads == 0 {
		t.Errorf("%d puts acknowledged, %d reads: the scenario did nothing", len(wr.acked), rd.reads)
	}
}

// cfgVersion is one value of one key.
type cfgVersion struct {
	key string
	seq int
}

// cfgWriters is how many writers put at once, each to its own keys, so
// that one slow put does not slow the others and each key's puts stay in
// order.
const cfgWriters = 10

// cfgWriter puts cfgSeal values, 50 a second in all, from cfgWriters
// goroutines; each owns every cfgWriters-th key and puts one value at a
// time, its keys in turn, with a sequence number per key. Its fields are
// read once run has returned.
type cfgWriter struct {
	w    *world
	keys []string

	mu     sync.Mutex
	acked  map[cfgVersion]time.Time // when each acknowledged put returned
	last   map[string]int           // key → its last acknowledged sequence number
	failed int                      // puts that returned an error (outcome unknown)
}

// run puts until stop is closed.
func (wr *cfgWriter) run(stop <-chan struct{}) {
	var wg sync.WaitGroup
	for g := range cfgWriters {
		wg.Go(func() { wr.loop(stop, g) })
	}
	wg.Wait()
}

// loop is writer g: it puts to keys g, g+cfgWriters, ... in turn, on a
// fixed schedule of 50/cfgWriters a second; after a stalled put it
// catches up, so that the rate over the run stays 50 a second in all.
func (wr *cfgWriter) loop(stop <-chan struct{}, g int) {
	every := cfgWriters * time.Second / 50
	next := time.Now()
	seq := map[string]int{}
	for i := g; ; i += cfgWriters {
		next = next.Add(every)
		select {
		case <-stop:
			return
		case <-time.After(time.Until(next)):
		}
		k := wr.keys[i%len(wr.keys)]
		seq[k]++
		c, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err := wr.w.cli.Put(c, cfgPrefix+k, string(cfgSeal(k, seq[k], cfgValueBytes)))
		cancel()
		wr.mu.Lock()
		if err != nil {
			wr.failed++
		} else {
			wr.acked[cfgVersion{k, seq[k]}] = time.Now()
			wr.last[k] = seq[k]
		}
		wr.mu.Unlock()
	}
}

// cfgReader reads the mirrored files of keys again and again. Its fields
// are read once run has returned.
type cfgReader struct {
	dir         string
	keys        []string
	reads       int
	tornN       int                      // reads that were not one whole value of the key
	torn        []string                 // what the first torn reads were
	vanished    int                      // reads of a file once seen that found none
	regressions int                      // reads that found an older value than one read before
	last        map[string]int           // key → the highest sequence number read
	seen        map[cfgVersion]time.Time // when each value was first read
}

// run reads every file in turn, a pass every 2 ms (one core is left to
// the writer, etcd and the sidecar), until stop is closed, then once more.
func (rd *cfgReader) run(stop <-chan struct{}) {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			rd.pass()
			return
		case <-tick.C:
		}
		rd.pass()
	}
}

// pass reads each file once.
func (rd *cfgReader) pass() {
	for _, k := range rd.keys {
		b, err := os.ReadFile(filepath.Join(rd.dir, k))
		rd.reads++
		if errors.Is(err, fs.ErrNotExist) {
			if _, ok := rd.last[k]; ok {
				rd.vanished++
			}
			continue
		}
		seq, err := cfgOpen(k, b)
		switch {
		case err != nil:
			rd.tornN++
			if len(rd.torn) < 10 {
				rd.torn = append(rd.torn, err.Error())
			}
		case seq < rd.last[k]:
			rd.regressions++
		case seq > rd.last[k]:
			rd.last[k] = seq
			rd.seen[cfgVersion{k, seq}] = time.Now()
		}
	}
}
