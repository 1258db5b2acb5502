package chaos

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestConfigLeaderKilledDuringBurst: a sidecar mirrors cfgPrefix in the
// snapshot layout through the proxies; a writer sends a burst of puts (200
// in the short form, 1,000 in the full form, 5 trials) through a direct
// client, one at a time: self-checking values of 20 keys in turn, and a
// put or a delete of 5 other keys every 5 operations. Half way through,
// the etcd leader is SIGKILLed; each operation is retried until etcd
// accepts it. The killed member is restarted once the directory has
// converged. A reader reads the 20 files again and again meanwhile.
//
// Pass: within 30 s of the burst's end the directory holds exactly etcd's
// keys and values at etcd's revision (the deleted keys gone, no extra
// file), and again after the restart; 0 torn reads; no read returns an
// older value of a key than one read before, or finds a file missing once
// it was read.
func TestConfigLeaderKilledDuringBurst(t *testing.T) {
	w := newWorld(t)
	p, dir := cfgStartMirror(t, w, "snapshot")
	p.cfgWaitRevision(t, 1, 30*time.Second)
	keys := make([]string, cfgKeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("burst/k%02d", i)
	}
	rd := &cfgReader{dir: dir, keys: keys, last: map[string]int{}, seen: map[cfgVersion]time.Time{}}
	stop := make(chan struct{})
	var reader sync.WaitGroup
	reader.Go(func() { rd.run(stop) })
	conv := sample{name: "config_leader_killed_converged"}
	outage := sample{name: "config_leader_killed_put_outage"}
	size := trials(200, 1000)
	seq := map[string]int{} // each key's last sequence number, across trials
	for trial := range trials(1, 5) {
		killed, out := cfgBurst(t, w, keys, seq, size)
		outage.add(out)
		conv.add(p.cfgConverge(t, w, dir, "snapshot", 30*time.Second))
		w.cluster.Members[killed].Restart()
		p.cfgConverge(t, w, dir, "snapshot", 30*time.Second)
		t.Logf("trial %d: leader m%d killed, puts stalled %s", trial, killed, outage.ds[trial])
	}
	close(stop)
	reader.Wait()
	conv.figure(t, fmt.Sprintf("burst=%d", size))
	outage.figure(t)
	t.Logf("FIGURE scenario=config_leader_killed form=%s reads=%d versions_seen=%d torn=%d regressions=%d vanished=%d",
		form(), rd.reads, len(rd.seen), rd.tornN, rd.regressions, rd.vanished)
	if rd.tornN != 0 || rd.regressions != 0 || rd.vanished != 0 {
		t.Errorf("%d torn reads (first %q), %d older values, %d vanished files", rd.tornN, rd.torn, rd.regressions, rd.vanished)
	}
}

// cfgBurst sends size operations one at a time, retrying each until etcd
// takes it, and kills the leader half way; it returns the killed member's
// index and how long after the kill the first operation succeeded. seq
// holds each key's last sequence number and is updated.
func cfgBurst(t *testing.T, w *world, keys []string, seq map[string]int, size int) (int, time.Duration) {
	t.Helper()
	killed, outage := -1, time.Duration(0)
	var killAt time.Time
	for i := range size {
		if i == size/2 {
			if killed = w.cluster.Leader(t); killed < 0 {
				t.Fatal("no leader to kill")
			}
			killAt = time.Now()
			w.cluster.Members[killed].Kill()
		}
		op := func(c context.Context) error {
			g := fmt.Sprintf("gone/g%d", i/5%5)
			switch {
			case i%10 == 0:
				_, err := w.cli.Put(c, cfgPrefix+g, "doomed")
				return err
			case i%10 == 5:
				_, err := w.cli.Delete(c, cfgPrefix+g)
				return err
			}
			k := keys[i%len(keys)]
			_, err := w.cli.Put(c, cfgPrefix+k, string(cfgSeal(k, seq[k]+1, cfgValueBytes)))
			if err == nil {
				seq[k]++
			}
			return err
		}
		cfgRetry(t, op)
		if i == size/2 {
			outage = time.Since(killAt)
		}
	}
	return killed, outage
}

// cfgRetry calls op with a 1 s deadline (about etcd's election timeout)
// until it succeeds, for up to 20 s.
func cfgRetry(t *testing.T, op func(context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, cancel := context.WithTimeout(t.Context(), time.Second)
		err := op(c)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd did not take an operation within 20s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
