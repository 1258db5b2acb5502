package configsync_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/configsync"
	"github.com/sidecar-dev/sidecar/internal/etcdclient"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

const prefix = "/config/app/"

// run runs a mapping of prefix into dir until the test ends (or stop).
func run(t *testing.T, cli *clientv3.Client, cfg configsync.Config) (m *configsync.Mapping, stop func()) {
	t.Helper()
	m, err := configsync.New(cli, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}
	t.Cleanup(stop)
	return m, stop
}

func put(t *testing.T, cli *clientv3.Client, key, value string) int64 {
	t.Helper()
	resp, err := cli.Put(t.Context(), key, value)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// tree reads every regular file under dir as rel path → content.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		b, _ := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	return out
}

// treeIs waits until dir holds exactly want.
func treeIs(t *testing.T, dir string, want map[string]string, what string) {
	t.Helper()
	etcdtest.Eventually(t, 5*time.Second, what, func() error {
		if got := tree(t, dir); fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("files %v, want %v", got, want)
		}
		return nil
	})
}

func atRevision(m *configsync.Mapping, rev int64) func() error {
	return func() error {
		if st := m.Status(); st.Revision < rev {
			return fmt.Errorf("status %+v, want revision %d", st, rev)
		}
		return nil
	}
}

func TestMirror(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	put(t, cli, prefix+"a.conf", "A1")
	put(t, cli, prefix+"sub/b.yaml", "B1")
	put(t, cli, "/config/app2/x", "not mine") // shares the prefix's string, not its path
	put(t, cli, prefix+"empty", "")
	dir := filepath.Join(t.TempDir(), "app")
	m, _ := run(t, cli, configsync.Config{Prefix: prefix, Dir: dir})
	treeIs(t, dir, map[string]string{"a.conf": "A1", "sub/b.yaml": "B1", "empty": ""}, "initial sync")

	put(t, cli, prefix+"a.conf", "A2")
	put(t, cli, prefix+"sub/deeper/c", "C1")
	treeIs(t, dir, map[string]string{"a.conf": "A2", "sub/b.yaml": "B1", "sub/deeper/c": "C1", "empty": ""}, "updates")
	if _, err := cli.Delete(t.Context(), prefix+"sub/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	rev := put(t, cli, prefix+"a.conf", "A3")
	treeIs(t, dir, map[string]string{"a.conf": "A3", "empty": ""}, "deletes")
	if _, err := os.Stat(filepath.Join(dir, "sub")); !os.IsNotExist(err) {
		t.Errorf("directory emptied by deletes still there: %v", err)
	}
	etcdtest.Eventually(t, 2*time.Second, "status", atRevision(m, rev))
	if st := m.Status(); st.Files != 2 || st.Rejected != 0 || st.LastError != "" {
		t.Errorf("status %+v", st)
	}
}

func TestRefusedKeys(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	outside := t.TempDir()
	for _, k := range []string{"../escape", "a//b", "..data", "x/../../y", "back\\slash", "trailing/"} {
		put(t, cli, prefix+k, "bad")
	}
	put(t, cli, prefix+"big", strings.Repeat("x", 2048))
	rev := put(t, cli, prefix+"ok", "fine")
	dir := filepath.Join(outside, "app")
	m, _ := run(t, cli, configsync.Config{Prefix: prefix, Dir: dir, MaxFileBytes: 1024})
	etcdtest.Eventually(t, 5*time.Second, "synced", atRevision(m, rev))
	if st := m.Status(); st.Rejected != 7 || st.Files != 1 {
		t.Errorf("status %+v, want 7 rejected, 1 file", st)
	}
	if got := tree(t, outside); fmt.Sprint(got) != fmt.Sprint(map[string]string{"app/ok": "fine"}) {
		t.Errorf("files written: %v", got)
	}
	if _, err := cli.Delete(t.Context(), prefix+"big"); err != nil {
		t.Fatal(err)
	}
	rev = put(t, cli, prefix+"ok", "fine2")
	etcdtest.Eventually(t, 5*time.Second, "delete of a refused key", func() error {
		if st := m.Status(); st.Revision < rev || st.Rejected != 6 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
}

// TestRefusedKeyLoggedOnce: a refused key is logged once, cut to a short
// form, however often it is put; deleted and put again, it is logged again
// (what is remembered of logged keys goes with the keys).
func TestRefusedKeyLoggedOnce(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	logs := &etcdtest.LogBuffer{}
	bad := prefix + "../" + strings.Repeat("x", 4000)
	m, _ := run(t, cli, configsync.Config{Prefix: prefix, Dir: filepath.Join(t.TempDir(), "app"), Logger: logs.Logger()})
	count := func() int { return strings.Count(logs.String(), "config key refused") }
	for i := range 3 {
		put(t, cli, bad, fmt.Sprint(i))
	}
	rev := put(t, cli, prefix+"ok", "1")
	etcdtest.Eventually(t, 5*time.Second, "synced", atRevision(m, rev))
	if n := count(); n != 1 {
		t.Fatalf("refused key logged %d times, want 1:\n%s", n, logs)
	}
	if strings.Contains(logs.String(), strings.Repeat("x", 100)) {
		t.Errorf("the log carries the whole 4,000-byte key:\n%s", logs)
	}
	if _, err := cli.Delete(t.Context(), bad); err != nil {
		t.Fatal(err)
	}
	put(t, cli, bad, "again")
	rev = put(t, cli, prefix+"ok", "2")
	etcdtest.Eventually(t, 5*time.Second, "synced", atRevision(m, rev))
	if n := count(); n != 2 {
		t.Errorf("refused key put again after its delete logged %d times in all, want 2:\n%s", n, logs)
	}
}

// TestRestartConverges: a new run over a directory left by an earlier one
// rewrites nothing unchanged, removes what etcd no longer has (a stray file
// too), and writes what changed meanwhile.
func TestRestartConverges(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	put(t, cli, prefix+"keep", "same")
	put(t, cli, prefix+"change", "v1")
	put(t, cli, prefix+"gone", "x")
	dir := filepath.Join(t.TempDir(), "app")
	_, stop := run(t, cli, configsync.Config{Prefix: prefix, Dir: dir})
	treeIs(t, dir, map[string]string{"keep": "same", "change": "v1", "gone": "x"}, "first run")
	stop()
	old, _ := os.Stat(filepath.Join(dir, "keep"))
	time.Sleep(20 * time.Millisecond)
	put(t, cli, prefix+"change", "v2")
	cli.Delete(t.Context(), prefix+"gone")
	os.WriteFile(filepath.Join(dir, "stray"), []byte("?"), 0o644)

	run(t, cli, configsync.Config{Prefix: prefix, Dir: dir})
	treeIs(t, dir, map[string]string{"keep": "same", "change": "v2"}, "second run")
	if now, _ := os.Stat(filepath.Join(dir, "keep")); !now.ModTime().Equal(old.ModTime()) {
		t.Errorf("unchanged file rewritten: mtime %v → %v", old.ModTime(), now.ModTime())
	}
}

// TestOutageAndCompaction: while the link is down the files stay as they
// are; meanwhile keys change and etcd compacts past the mapping's
// revision; on return the mapping lists again and diffs, deletes included.
func TestOutageAndCompaction(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	admin := e.Client(t)
	p := etcdtest.StartProxy(t, e.ClientURL)
	cli, err := etcdclient.New(t.Context(), etcdclient.Config{Endpoints: []string{p.URL()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	put(t, admin, prefix+"a", "1")
	put(t, admin, prefix+"b", "1")
	dir := filepath.Join(t.TempDir(), "app")
	m, _ := run(t, cli, configsync.Config{Prefix: prefix, Dir: dir})
	treeIs(t, dir, map[string]string{"a": "1", "b": "1"}, "before the outage")

	p.Drop()
	put(t, admin, prefix+"a", "2")
	admin.Delete(t.Context(), prefix+"b")
	rev := put(t, admin, prefix+"c", "3")
	if _, err := admin.Compact(t.Context(), rev); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if got := tree(t, dir); fmt.Sprint(got) != fmt.Sprint(map[string]string{"a": "1", "b": "1"}) {
		t.Errorf("files changed during the outage: %v", got)
	}
	p.Heal()
	treeIs(t, dir, map[string]string{"a": "2", "c": "3"}, "after the outage and compaction")
	etcdtest.Eventually(t, 5*time.Second, "status", atRevision(m, rev))
}

// TestSymlinkInsideDir: a link planted inside the directory that points
// outside it is never followed.
func TestSymlinkInsideDir(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	outside := t.TempDir()
	dir := filepath.Join(t.TempDir(), "app")
	os.MkdirAll(dir, 0o755)
	if err := os.Symlink(outside, filepath.Join(dir, "evil")); err != nil {
		t.Fatal(err)
	}
	put(t, cli, prefix+"evil/x", "pwned")
	put(t, cli, prefix+"fine", "ok")
	m, _ := run(t, cli, configsync.Config{Prefix: prefix, Dir: dir})
	// The key behind the link is an error reported, not a write; the
	// other keys are still mirrored.
	etcdtest.Eventually(t, 5*time.Second, "an error reported for the key behind the link", func() error {
		if st := m.Status(); st.LastError == "" || !strings.Contains(st.LastError, "evil/x") {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	treeIs(t, dir, map[string]string{"fine": "ok"}, "the other key mirrored")
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("written outside the directory: %v", entries)
	}
}

// TestPrefixWithoutSlash: a prefix written without its trailing slash
// covers the keys below it, not its string siblings.
func TestPrefixWithoutSlash(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	put(t, cli, "/config/app/a", "1")
	rev := put(t, cli, "/config/app2/b", "sibling")
	dir := filepath.Join(t.TempDir(), "app")
	m, _ := run(t, cli, configsync.Config{Prefix: "/config/app", Dir: dir})
	treeIs(t, dir, map[string]string{"a": "1"}, "sync")
	etcdtest.Eventually(t, 5*time.Second, "status", atRevision(m, rev))
	if st := m.Status(); st.Rejected != 0 || st.Files != 1 {
		t.Errorf("status %+v: a sibling prefix's key counted", st)
	}
}

// TestBatches: the initial sync is one batch when it wrote anything, then
// each watch response is one batch, after its files are on disk.
func TestBatches(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	put(t, cli, prefix+"a", "1")
	dir := filepath.Join(t.TempDir(), "app")
	batches := make(chan configsync.Batch, 16)
	run(t, cli, configsync.Config{Prefix: prefix, Dir: dir, OnBatch: func(b configsync.Batch) {
		if _, err := os.Stat(filepath.Join(dir, "a")); err != nil {
			t.Errorf("batch %+v before its files are on disk: %v", b, err)
		}
		batches <- b
	}})
	next := func(what string) configsync.Batch {
		t.Helper()
		select {
		case b := <-batches:
			return b
		case <-time.After(5 * time.Second):
			t.Fatalf("no batch: %s", what)
		}
		return configsync.Batch{}
	}
	if b := next("initial sync"); fmt.Sprint(b.Changed, b.Deleted) != "[a] []" || b.Prefix != prefix {
		t.Errorf("initial batch %+v", b)
	}
	resp, err := cli.Txn(t.Context()).Then(
		clientv3.OpPut(prefix+"b", "2"), clientv3.OpPut(prefix+"c/d", "3"), clientv3.OpPut(prefix+"a", "1"),
	).Commit()
	if err != nil {
		t.Fatal(err)
	}
	if b := next("txn"); fmt.Sprint(b.Changed, b.Deleted) != "[b c/d] []" || b.Revision != resp.Header.Revision {
		t.Errorf("txn batch %+v (an unchanged value is not a change), want revision %d", b, resp.Header.Revision)
	}
	cli.Delete(t.Context(), prefix+"b")
	if b := next("delete"); fmt.Sprint(b.Changed, b.Deleted) != "[] [b]" {
		t.Errorf("delete batch %+v", b)
	}
}
