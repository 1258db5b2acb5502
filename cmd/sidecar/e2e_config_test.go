package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// End-to-end tests of config mirroring: the built binary in join mode
// against the real etcd program, faults through SIGKILL and SIGSTOP of the
// daemon, a compaction, a killed etcd and a blackholing proxy.

const mirrorPrefix = "/config/app/"

// TestE2EConfigSigkillMidWrite: SIGKILL while the daemon writes a burst of
// large values leaves every file whole (the old value or the new one,
// never empty, cut short or mixed); the next daemon removes the temporary
// files the crash left, brings the directory to etcd's state and leaves
// alone the files that hold it already.
func TestE2EConfigSigkillMidWrite(t *testing.T) {
	const (
		keys     = 200
		baseSize = 224 << 10 // values of 224 to 288 KiB
	)
	srv := etcdtest.StartServer(t, etcdtest.ServerOptions{})
	cli := srv.Client(t)
	noise := rand.NewChaCha8([32]byte{7})
	rels := make([]string, keys)
	for i := range rels {
		rels[i] = fmt.Sprintf("s%02d/k%03d.bin", i%10, i)
	}
	values := func(round int) map[string][]byte {
		kvs := map[string][]byte{}
		for i, rel := range rels {
			kvs[rel] = sealedFile(noise, rel, round, baseSize+(i*7919+round*104729)%(64<<10))
		}
		return kvs
	}
	rev := putConfig(t, cli, values(1))
	m := startMirror(t, srv.ClientURL, cli, "    max_file_bytes: 512KiB # values are up to 288 KiB")
	m.waitRevision(t, rev, 60*time.Second)
	m.inSync(t)

	burstDone := burst(t, cli, rels, values(2))
	m.killWhileWriting(t, rels, 2)
	newer := checkWhole(t, m.dir, rels)
	crashed := fileStamps(t, m.dir)

	// Meanwhile etcd moves on: the burst ends, keys it reaches last change
	// again or go. A temporary file is planted deep down besides whatever
	// the crash left, so that their removal is always checked.
	burstDone()
	round3 := map[string][]byte{}
	for i, rel := range rels[keys-40:] {
		if i%2 == 0 {
			round3[rel] = sealedFile(noise, rel, 3, baseSize/2+i)
		} else if _, err := cli.Delete(t.Context(), mirrorPrefix+rel); err != nil {
			t.Fatal(err)
		}
	}
	putConfig(t, cli, round3)
	planted := filepath.Join(m.dir, "s03", "..sidecar-tmp-0123456789abcdef01234567")
	if err := os.WriteFile(planted, []byte("half a val"), 0o644); err != nil {
		t.Fatal(err)
	}

	m.restart(t)
	resp, err := cli.Get(t.Context(), "/", clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	m.waitRevision(t, resp.Header.Revision, 60*time.Second)
	m.inSync(t) // no temporary file either
	// The new values written before the crash are etcd's still: the
	// restart leaves those files alone.
	var kept int
	for rel, now := range fileStamps(t, m.dir) {
		if was, ok := crashed[rel]; ok && was.sum == now.sum {
			kept++
			if !was.same(now) {
				t.Errorf("%s rewritten by the restart with the bytes it had: %v → %v", rel, was, now)
			}
		}
	}
	t.Logf("%d files kept their bytes and mtime across the restart", kept)
	if kept == 0 {
		t.Errorf("no file kept its value across the restart; %d were new at the crash", newer)
	}
}

// burst puts the value of each of rels from two writers, in the
// background; the function it returns waits until all are in etcd.
func burst(t *testing.T, cli *clientv3.Client, rels []string, vals map[string][]byte) (wait func()) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for w := range 2 {
		wg.Go(func() {
			for i := w; i < len(rels); i += 2 {
				if _, err := cli.Put(t.Context(), mirrorPrefix+rels[i], string(vals[rels[i]])); err != nil {
					errs <- fmt.Errorf("put %s: %w", rels[i], err)
					return
				}
			}
		})
	}
	t.Cleanup(wg.Wait)
	return func() {
		t.Helper()
		wg.Wait()
		select {
		case err := <-errs:
			t.Fatalf("burst: %v", err)
		default:
		}
	}
}

// killWhileWriting SIGKILLs the daemon while it writes the values of round:
// once some of rels hold it on disk and a temporary file shows that
// another is being written (or, failing that, once half of them do). It
// returns when the daemon is gone.
func (m *e2eMirror) killWhileWriting(t *testing.T, rels []string, round int) {
	t.Helper()
	var written int
	var caught bool
	etcdtest.Eventually(t, 60*time.Second, "the daemon writing the burst", func() error {
		written = 0
		for _, rel := range rels {
			if roundOf(filepath.Join(m.dir, rel)) == round {
				written++
			}
		}
		caught = hasMirrorTemp(m.dir)
		if written < 10 || !caught && written < len(rels)/2 {
			return fmt.Errorf("%d of %d new values on disk", written, len(rels))
		}
		return nil
	})
	m.signal(t, syscall.SIGKILL)
	waitExit(t, m.p.done, "daemon alive after SIGKILL")
	t.Logf("killed with %d of %d new values on disk; a write under way: %v", written, len(rels), caught)
}

// checkWhole asserts that the directory holds a file for each of rels and
// nothing else, each a whole value of its key, of round 1 or 2, and some
// of round 2; it returns how many.
func checkWhole(t *testing.T, dir string, rels []string) (newer int) {
	t.Helper()
	files, temps := scanMirror(t, dir)
	t.Logf("temporary files left by the crash: %v", temps)
	for _, rel := range rels {
		b, ok := files[rel]
		if !ok {
			t.Errorf("%s: missing after the crash", rel)
			continue
		}
		switch round, err := openSealedFile(rel, b); {
		case err != nil:
			t.Errorf("after the crash: %v", err)
		case round == 2:
			newer++
		case round != 1:
			t.Errorf("%s: round %d, want 1 or 2", rel, round)
		}
	}
	if len(files) != len(rels) || newer == 0 {
		t.Errorf("%d files after the crash, %d new: want %d, some new", len(files), newer, len(rels))
	}
	if t.Failed() {
		t.FailNow()
	}
	return newer
}

// TestE2EConfigCompactionWhileStopped: while the daemon is SIGSTOPped keys
// are added, changed and deleted, enough to put its watch behind, and etcd
// compacts past its revision; after SIGCONT the daemon lists again and
// diffs, deletes included, without rewriting the files of unchanged keys,
// and reports the new revision without an error.
func TestE2EConfigCompactionWhileStopped(t *testing.T) {
	srv := etcdtest.StartServer(t, etcdtest.ServerOptions{})
	cli := srv.Client(t)
	initial := map[string][]byte{}
	for i := range 20 {
		initial[fmt.Sprintf("k%02d", i)] = fmt.Appendf(nil, "v1 of k%02d", i)
	}
	rev := putConfig(t, cli, initial)
	m := startMirror(t, srv.ClientURL, cli, "")
	m.waitRevision(t, rev, 60*time.Second)
	m.inSync(t)
	before := fileStamps(t, m.dir)

	m.signal(t, syscall.SIGSTOP)
	for i := range 20 {
		k := fmt.Sprintf("k%02d", i)
		switch {
		case i < 5:
			if _, err := cli.Delete(t.Context(), mirrorPrefix+k); err != nil {
				t.Fatal(err)
			}
		case i < 10:
			putConfig(t, cli, map[string][]byte{k: fmt.Appendf(nil, "v2 of %s", k)})
		}
	}
	putConfig(t, cli, map[string][]byte{"new/a": []byte("A"), "new/b/c": []byte("C"), "empty": nil})
	// A stopped reader's watch stream fills up (gRPC's window, etcd's
	// buffer of responses) and etcd stops sending to it: many updates put
	// the watch behind, so that the compaction below catches it.
	churn := bytes.Repeat([]byte("x"), 4<<10)
	for i := range 1000 {
		putConfig(t, cli, map[string][]byte{"churn": fmt.Appendf(churn[:len(churn):len(churn)], "%d", i)})
	}
	del, err := cli.Delete(t.Context(), mirrorPrefix+"k05") // changed above, gone now
	if err != nil {
		t.Fatal(err)
	}
	final := del.Header.Revision
	if _, err := cli.Compact(t.Context(), final, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	m.signal(t, syscall.SIGCONT)

	cm := m.waitRevision(t, final, 30*time.Second)
	m.inSync(t)
	// 20 keys, 6 deleted, 4 added, and the churning one.
	if cm.Files != 18 || cm.Rejected != 0 {
		t.Errorf("sidecar config: %+v, want 18 files", cm)
	}
	after := fileStamps(t, m.dir)
	for i := 10; i < 20; i++ { // the keys nobody touched: the new list and diff leaves their files alone
		k := fmt.Sprintf("k%02d", i)
		if !after[k].same(before[k]) {
			t.Errorf("%s rewritten, unchanged in etcd: %v → %v", k, before[k], after[k])
		}
	}
	if code := m.p.terminate(t); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
	log := m.p.stderr.String() // read once the daemon is gone
	if !strings.Contains(log, "compacted") {
		t.Errorf("the daemon's log does not mention the compaction: the watch was not behind it\n%s", log)
	}
	if strings.Contains(log, "etcd does not answer") { // the daemon's own pause is not etcd's silence
		t.Errorf("the liveness monitor counted the daemon's SIGSTOP as etcd's silence\n%s", log)
	}
}

// TestE2EConfigEtcdDown: while etcd is down (its process killed) or
// silent behind a blackholing proxy, the files stay exactly as they were
// (bytes and mtime) and `sidecar config` answers at once; when etcd is
// back the directory follows it again, rewriting only what changed.
func TestE2EConfigEtcdDown(t *testing.T) {
	for _, tc := range []struct {
		name string
		// cut starts etcd and returns the URL the daemon is to use, a
		// function that cuts it off from etcd, and one that ends that.
		cut func(t *testing.T, srv *etcdtest.Server) (url string, down, up func())
		// changesDuring: etcd itself is up during the outage and takes
		// changes the daemon cannot see yet.
		changesDuring bool
	}{
		{name: "killed", cut: func(t *testing.T, srv *etcdtest.Server) (string, func(), func()) {
			return srv.ClientURL, srv.Kill, srv.Restart // the same ports and data
		}},
		{name: "blackholed", changesDuring: true, cut: func(t *testing.T, srv *etcdtest.Server) (string, func(), func()) {
			proxy := etcdtest.StartProxy(t, srv.ClientURL)
			return proxy.URL(), proxy.Blackhole, proxy.Heal
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := etcdtest.StartServer(t, etcdtest.ServerOptions{})
			cli := srv.Client(t)
			url, down, up := tc.cut(t, srv)
			initial := map[string][]byte{}
			for i := range 10 {
				initial[fmt.Sprintf("d%d/k%d", i%3, i)] = fmt.Appendf(nil, "v1 of %d", i)
			}
			rev := putConfig(t, cli, initial)
			m := startMirror(t, url, cli, "")
			m.waitRevision(t, rev, 60*time.Second)
			m.inSync(t)
			before := fileStamps(t, m.dir)

			down()
			m.p.waitStatus(t, "etcd seen as down", 30*time.Second, func(st api.Status) bool { return !st.Etcd.Connected })
			if tc.changesDuring {
				putConfig(t, cli, map[string][]byte{"d0/k0": []byte("v2 during the outage"), "d9/new": []byte("new")})
				if _, err := cli.Delete(t.Context(), mirrorPrefix+"d1/k1"); err != nil {
					t.Fatal(err)
				}
			}
			m.unchangedFor(t, 3*time.Second, before, rev)

			up()
			putConfig(t, cli, map[string][]byte{"d2/k2": []byte("v2 after"), "d9/later": []byte("later")})
			if _, err := cli.Delete(t.Context(), mirrorPrefix+"d1/k4"); err != nil {
				t.Fatal(err)
			}
			resp, err := cli.Get(t.Context(), "/", clientv3.WithCountOnly())
			if err != nil {
				t.Fatal(err)
			}
			if cm := m.waitRevision(t, resp.Header.Revision, 60*time.Second); cm.LagS != 0 {
				t.Errorf("lag %v s once in step again, want 0", cm.LagS)
			}
			m.inSync(t)
			changed := []string{"d0/k0", "d1/k1", "d1/k4", "d2/k2"}
			after := fileStamps(t, m.dir)
			for rel, st := range before {
				if now, ok := after[rel]; !slices.Contains(changed, rel) && (!ok || !now.same(st)) {
					t.Errorf("%s rewritten, unchanged in etcd: %v → %v", rel, st, after[rel])
				}
			}
		})
	}
}
