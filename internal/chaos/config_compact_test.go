package chaos

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// TestConfigCompactionWhileStopped: a sidecar mirrors 20 keys (layout
// files) through the proxies of the three-member cluster and is then
// SIGSTOPped. Meanwhile 5 keys are deleted, 5 updated, 3 added (one
// empty), and churn puts (12 MiB in all, enough to fill the stopped
// reader's watch stream so that etcd stops sending to it); last, one more
// key is deleted, and etcd is compacted (physically) at exactly that
// delete's revision, so that the delete itself is gone from the history
// that remains. Then SIGCONT. Trials: 1 short, 5 full.
//
// Pass: within 30 s of SIGCONT the directory holds exactly etcd's keys and
// values at etcd's revision (both deleted sets gone); the files of the 10
// keys nobody touched are not rewritten (same bytes and mtime); the
// sidecar's log says it listed again after the compaction ("watch
// compacted; listing again").
func TestConfigCompactionWhileStopped(t *testing.T) {
	w := newWorld(t)
	p, dir := cfgStartMirror(t, w, "files")
	p.cfgWaitRevision(t, 1, 30*time.Second)
	t.Cleanup(func() { _ = p.cmd.Process.Signal(syscall.SIGCONT) })
	conv := sample{name: "config_compaction_while_stopped_converged"}
	relisted := 0
	for trial := range trials(1, 5) {
		base := fmt.Sprintf("t%d/", trial)
		for i := range 20 {
			cfgPut(t, w, base+fmt.Sprintf("k%02d", i), fmt.Sprintf("v1 of k%02d", i))
		}
		p.cfgConverge(t, w, dir, "files", 30*time.Second)
		before := cfgStamps(t, dir, base, 10, 20)
		if err := etcdtest.StopProcess(p.cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
		rev := cfgChangeWhileStopped(t, w, base)
		if _, err := w.cli.Compact(t.Context(), rev, clientv3.WithCompactPhysical()); err != nil {
			t.Fatalf("compact at %d: %v", rev, err)
		}
		if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		conv.add(p.cfgConverge(t, w, dir, "files", 30*time.Second))
		if after := cfgStamps(t, dir, base, 10, 20); after != before {
			t.Errorf("trial %d: files of untouched keys rewritten:\nbefore %s\nafter  %s", trial, before, after)
		}
		n := strings.Count(p.log.String(), "watch compacted; listing again")
		if n <= relisted {
			t.Errorf("trial %d: the sidecar's log does not say it listed again after the compaction:\n%s", trial, p.log)
		}
		relisted = n
	}
	conv.figure(t, fmt.Sprintf("relisted=%d", relisted))
}

// cfgChangeWhileStopped deletes keys 0-4 under base, updates 5-9, adds
// three, puts churn, and deletes key 5 last; it returns the revision of
// that delete.
func cfgChangeWhileStopped(t *testing.T, w *world, base string) int64 {
	t.Helper()
	for i := range 10 {
		k := cfgPrefix + base + fmt.Sprintf("k%02d", i)
		if i < 5 {
			if _, err := w.cli.Delete(t.Context(), k); err != nil {
				t.Fatalf("delete %s: %v", k, err)
			}
			continue
		}
		cfgPut(t, w, base+fmt.Sprintf("k%02d", i), "v2")
	}
	cfgPut(t, w, base+"new/a", "A")
	cfgPut(t, w, base+"new/b/c", "C")
	cfgPut(t, w, base+"empty", "")
	churn := string(bytes.Repeat([]byte("x"), 32<<10))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 48 {
				cfgPut(t, w, fmt.Sprintf("%schurn/c%d", base, g), fmt.Sprintf("%d %s", i, churn))
			}
		})
	}
	wg.Wait()
	del, err := w.cli.Delete(t.Context(), cfgPrefix+base+"k05")
	if err != nil {
		t.Fatalf("delete k05: %v", err)
	}
	return del.Header.Revision
}

// cfgPut puts value at cfgPrefix+rel, failing the test on an error (it
// may be called from other goroutines: it uses Errorf).
func cfgPut(t *testing.T, w *world, rel, value string) {
	c, cancel := ctx(t)
	defer cancel()
	if _, err := w.cli.Put(c, cfgPrefix+rel, value); err != nil {
		t.Errorf("put %s: %v", rel, err)
	}
}

// cfgStamps describes the files base+kNN, from <= N < to, under dir: size
// and mtime of each, in one string.
func cfgStamps(t *testing.T, dir, base string, from, to int) string {
	t.Helper()
	var b strings.Builder
	for i := from; i < to; i++ {
		fi, err := os.Stat(filepath.Join(dir, base, fmt.Sprintf("k%02d", i)))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "k%02d:%d@%d ", i, fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String()
}
