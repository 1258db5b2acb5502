package configsync_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/configsync"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// visible reads the snapshot layout as an app does, through the
// top-level links, and checks that "..data" links to a payload and each
// top-level name links to "..data/<name>".
func visible(dir string) (map[string]string, error) {
	payload, err := os.Readlink(filepath.Join(dir, "..data"))
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, "..") {
			continue // the layout's own; see layoutClean
		}
		if t, err := os.Readlink(filepath.Join(dir, name)); err != nil || t != "..data/"+name {
			return nil, fmt.Errorf("%s is not a link to ..data/%s (%q, %v)", name, name, t, err)
		}
	}
	out := map[string]string{}
	err = filepath.WalkDir(filepath.Join(dir, payload), func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(filepath.Join(dir, payload), p)
		b, err := os.ReadFile(filepath.Join(dir, rel)) // through the visible link
		out[filepath.ToSlash(rel)] = string(b)
		return err
	})
	return out, err
}

// layoutClean waits until the only names of the layout's own are
// "..data" and the payload it points to: a replaced payload goes a second
// after the swap.
func layoutClean(t *testing.T, dir string) {
	t.Helper()
	etcdtest.Eventually(t, 5*time.Second, "no stray payloads", func() error {
		payload, err := os.Readlink(filepath.Join(dir, "..data"))
		if err != nil {
			return err
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if name := e.Name(); strings.HasPrefix(name, "..") && name != "..data" && name != payload {
				return fmt.Errorf("stray %s", name)
			}
		}
		return nil
	})
}

func visibleIs(t *testing.T, dir string, want map[string]string, what string) {
	t.Helper()
	etcdtest.Eventually(t, 5*time.Second, what, func() error {
		got, err := visible(dir)
		if err == nil && fmt.Sprint(got) != fmt.Sprint(want) {
			err = fmt.Errorf("files %v, want %v", got, want)
		}
		return err
	})
}

func TestSnapshotLayout(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	put(t, cli, prefix+"a.conf", "A1")
	put(t, cli, prefix+"sub/b.yaml", "B1")
	dir := filepath.Join(t.TempDir(), "app")
	m, _ := run(t, cli, configsync.Config{Prefix: prefix, Dir: dir, Layout: configsync.LayoutSnapshot, FileMode: 0o640})
	visibleIs(t, dir, map[string]string{"a.conf": "A1", "sub/b.yaml": "B1"}, "initial sync")
	if fi, err := os.Stat(filepath.Join(dir, "a.conf")); err != nil || fi.Mode() != 0o640 {
		t.Errorf("a.conf: %v, %v; want mode 0640", fi, err)
	}
	first, _ := os.Readlink(filepath.Join(dir, "..data"))

	rev := put(t, cli, prefix+"a.conf", "A1") // the same bytes: no new snapshot
	etcdtest.Eventually(t, 2*time.Second, "unchanged put seen", atRevision(m, rev))
	if now, _ := os.Readlink(filepath.Join(dir, "..data")); now != first {
		t.Errorf("an unchanged value made a new snapshot: ..data %s, was %s", now, first)
	}

	put(t, cli, prefix+"sub/deeper/c", "C1")
	put(t, cli, prefix+"new", "N")
	visibleIs(t, dir, map[string]string{"a.conf": "A1", "sub/b.yaml": "B1", "sub/deeper/c": "C1", "new": "N"}, "adds")
	if _, err := cli.Delete(t.Context(), prefix+"sub/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	visibleIs(t, dir, map[string]string{"a.conf": "A1", "new": "N"}, "deletes")
	// The names that are gone are removed just after the swap (readers
	// through ..data already see the new snapshot), replaced payloads a
	// second later.
	etcdtest.Eventually(t, 5*time.Second, "the link of the deleted directory and the first payload removed", func() error {
		if _, err := os.Lstat(filepath.Join(dir, "sub")); !os.IsNotExist(err) {
			return fmt.Errorf("the link of a deleted directory is still there: %v", err)
		}
		if _, err := os.Stat(filepath.Join(dir, first)); !os.IsNotExist(err) {
			return fmt.Errorf("the first payload %s is still there: %v", first, err)
		}
		return nil
	})
	etcdtest.Eventually(t, 2*time.Second, "status", func() error {
		if st := m.Status(); st.Files != 2 || st.LastError != "" {
			return fmt.Errorf("status %+v, want 2 files", st)
		}
		return nil
	})
	layoutClean(t, dir)
}

// TestSnapshotNeverMixesRevisions: each transaction writes the same value
// into every file; a reader that resolves "..data" once must never find
// two values, through 300 transactions.
func TestSnapshotNeverMixesRevisions(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	const files, txns = 6, 300
	dir := filepath.Join(t.TempDir(), "app")
	txn := func(v int) {
		var ops []clientv3.Op
		for f := range files {
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("%sd%d/f%d", prefix, f%2, f), fmt.Sprint(v)))
		}
		if _, err := cli.Txn(t.Context()).Then(ops...).Commit(); err != nil {
			t.Error(err)
		}
	}
	txn(0)
	run(t, cli, configsync.Config{Prefix: prefix, Dir: dir, Layout: configsync.LayoutSnapshot})
	etcdtest.Eventually(t, 5*time.Second, "initial sync", func() error {
		_, err := os.Readlink(filepath.Join(dir, "..data"))
		return err
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for v := 1; v <= txns; v++ {
			txn(v)
		}
	}()
	reads, seen := 0, map[string]bool{}
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		values, ok := readOneSnapshot(t, dir)
		if !ok {
			t.Fatal("a payload was removed within a second of being replaced")
		}
		reads++
		if len(values) != files {
			t.Fatalf("a snapshot with %d files, want %d: %v", len(values), files, values)
		}
		for _, v := range values {
			if v != values[0] {
				t.Fatalf("one snapshot holds two revisions: %v", values)
			}
		}
		seen[values[0]] = true
	}
	last := fmt.Sprint(txns)
	visibleIs(t, dir, map[string]string{"d0/f0": last, "d1/f1": last, "d0/f2": last, "d1/f3": last, "d0/f4": last, "d1/f5": last}, "last transaction")
	layoutClean(t, dir)
	if reads < 50 || len(seen) < 5 {
		t.Errorf("%d reads saw %d versions: the reader did not race the writer", reads, len(seen))
	}
	t.Logf("%d whole reads, %d versions seen", reads, len(seen))
}

// readOneSnapshot resolves "..data" once and reads every file of that
// payload; ok is false when the payload was removed meanwhile (a
// replaced payload stays for a second).
func readOneSnapshot(t *testing.T, dir string) (values []string, ok bool) {
	payload, err := os.Readlink(filepath.Join(dir, "..data"))
	if err != nil {
		t.Fatal(err)
	}
	for f := range 6 {
		b, err := os.ReadFile(filepath.Join(dir, payload, fmt.Sprintf("d%d/f%d", f%2, f)))
		if os.IsNotExist(err) {
			return nil, false
		}
		if err != nil {
			t.Fatal(err)
		}
		values = append(values, string(b))
	}
	return values, true
}

// TestSnapshotCrashLeftovers: what a crash at each step of a swap leaves
// (a payload being built, a ..data_tmp, temporary files) is removed at
// start, the previous snapshot is what readers see meanwhile, and the
// mapping converges.
func TestSnapshotCrashLeftovers(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	put(t, cli, prefix+"a", "A1")
	dir := filepath.Join(t.TempDir(), "app")
	_, stop := run(t, cli, configsync.Config{Prefix: prefix, Dir: dir, Layout: configsync.LayoutSnapshot})
	visibleIs(t, dir, map[string]string{"a": "A1"}, "initial sync")
	stop()

	// A crash after the next payload was written and linked, before the swap.
	half := filepath.Join(dir, "..2026_01_01_00_00_00.000000000000")
	must(t, os.MkdirAll(filepath.Join(half, "b"), 0o755))
	must(t, os.WriteFile(filepath.Join(half, "a"), []byte("A-half"), 0o644))
	must(t, os.WriteFile(filepath.Join(half, "..sidecar-tmp-0123"), []byte("A-ha"), 0o644))
	must(t, os.Symlink("..data/b", filepath.Join(dir, "b")))
	must(t, os.Symlink(filepath.Base(half), filepath.Join(dir, "..data_tmp")))
	if got, _ := os.ReadFile(filepath.Join(dir, "a")); string(got) != "A1" {
		t.Fatalf("a = %q before the swap, want the previous snapshot's A1", got)
	}

	put(t, cli, prefix+"c", "C1")
	run(t, cli, configsync.Config{Prefix: prefix, Dir: dir, Layout: configsync.LayoutSnapshot})
	visibleIs(t, dir, map[string]string{"a": "A1", "c": "C1"}, "converged after the crash")
	layoutClean(t, dir)
}

// TestLayoutSwitch: a directory mirrored in one layout is taken over by
// the other, with nothing of the first left behind.
func TestLayoutSwitch(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	put(t, cli, prefix+"a", "A1")
	put(t, cli, prefix+"sub/b", "B1")
	dir := filepath.Join(t.TempDir(), "app")
	want := map[string]string{"a": "A1", "sub/b": "B1"}

	_, stop := run(t, cli, configsync.Config{Prefix: prefix, Dir: dir})
	treeIs(t, dir, want, "files layout")
	stop()
	_, stop = run(t, cli, configsync.Config{Prefix: prefix, Dir: dir, Layout: configsync.LayoutSnapshot})
	visibleIs(t, dir, want, "files → snapshot")
	layoutClean(t, dir)
	stop()
	run(t, cli, configsync.Config{Prefix: prefix, Dir: dir})
	treeIs(t, dir, want, "snapshot → files")
	etcdtest.Eventually(t, 2*time.Second, "nothing of the snapshot layout left", func() error {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "..") || e.Type()&os.ModeSymlink != 0 {
				return fmt.Errorf("snapshot layout left %s", e.Name())
			}
		}
		return nil
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
