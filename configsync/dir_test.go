package configsync

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func openDir(t *testing.T, path string, mode fs.FileMode, uid, gid int) *Dir {
	t.Helper()
	d, err := OpenDir(path, mode, uid, gid)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func mustWrite(t *testing.T, d *Dir, rel, data string, wantChanged bool) {
	t.Helper()
	changed, err := d.Write(rel, []byte(data))
	if err != nil || changed != wantChanged {
		t.Fatalf("Write(%q) = %v, %v; want %v, nil", rel, changed, err, wantChanged)
	}
}

func assertFile(t *testing.T, path, want string, mode fs.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != mode {
		t.Errorf("%s: mode %v, want %v", path, fi.Mode(), mode)
	}
	if got, err := os.ReadFile(path); err != nil || string(got) != want {
		t.Errorf("%s holds %q, %v; want %q", path, got, err, want)
	}
}

// assertNoTemps fails if a temporary file is left beneath dir.
func assertNoTemps(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(e.Name(), tmpPrefix) {
			t.Errorf("temporary file left: %s", p)
		}
		return nil
	})
}

func TestWriteRewriteUnchanged(t *testing.T) {
	dir := t.TempDir()
	d := openDir(t, dir, 0o640, -1, -1)
	p := filepath.Join(dir, "app.yaml")

	mustWrite(t, d, "app.yaml", "v: 1\n", true)
	assertFile(t, p, "v: 1\n", 0o640)

	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(p)
	mustWrite(t, d, "app.yaml", "v: 1\n", false)
	after, _ := os.Stat(p)
	if !after.ModTime().Equal(old) || !os.SameFile(before, after) {
		t.Errorf("unchanged write touched the file: mtime %v (was %v), same inode %v",
			after.ModTime(), old, os.SameFile(before, after))
	}

	mustWrite(t, d, "app.yaml", "v: 2\n", true)
	assertFile(t, p, "v: 2\n", 0o640)
	if after2, _ := os.Stat(p); os.SameFile(before, after2) {
		t.Error("a changed file was rewritten in place, not renamed over")
	}
	mustWrite(t, d, "app.yaml", "", true)
	assertFile(t, p, "", 0o640)
	mustWrite(t, d, "app.yaml", "", false)
	assertNoTemps(t, dir)
}

func TestWriteModeDespiteUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	t.Cleanup(func() { syscall.Umask(old) })
	dir := t.TempDir()

	d := openDir(t, dir, 0o664, -1, -1)
	mustWrite(t, d, "a/f", "x", true)
	assertFile(t, filepath.Join(dir, "a/f"), "x", 0o664)

	// Same bytes, another mode: rewritten with the new mode.
	d2 := openDir(t, dir, 0o600, -1, -1)
	mustWrite(t, d2, "a/f", "x", true)
	assertFile(t, filepath.Join(dir, "a/f"), "x", 0o600)
	mustWrite(t, d2, "a/f", "x", false)
}

func TestWriteOwner(t *testing.T) {
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		uid, gid = 65534, 65534 // only root can give files away
	}
	dir := t.TempDir()
	d := openDir(t, dir, 0o644, uid, gid)
	mustWrite(t, d, "f", "x", true)
	fi, err := os.Stat(filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != uid || int(st.Gid) != gid {
		t.Errorf("owner %d:%d, want %d:%d", st.Uid, st.Gid, uid, gid)
	}
	mustWrite(t, d, "f", "x", false)
}

func TestNestedDirsCreatedAndRemoved(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing", "config")
	d := openDir(t, dir, 0o644, -1, -1)
	mustWrite(t, d, "a/b/c/deep.conf", "1", true)
	mustWrite(t, d, "a/keep.conf", "2", true)
	assertFile(t, filepath.Join(dir, "a/b/c/deep.conf"), "1", 0o644)
	if fi, err := os.Stat(filepath.Join(dir, "a/b")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("parent dir: %v, %v", fi, err)
	}

	if removed, err := d.Remove("a/b/c/deep.conf"); !removed || err != nil {
		t.Fatalf("Remove = %v, %v", removed, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "a/b")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("emptied a/b still there: %v", err)
	}
	assertFile(t, filepath.Join(dir, "a/keep.conf"), "2", 0o644)

	if removed, err := d.Remove("a/keep.conf"); !removed || err != nil {
		t.Fatalf("Remove = %v, %v", removed, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 0 {
		t.Errorf("root after removing everything: %v, %v; want it kept and empty", entries, err)
	}
	if removed, err := d.Remove("a/keep.conf"); removed || err != nil {
		t.Errorf("Remove of a missing file = %v, %v; want false, nil", removed, err)
	}
}

func TestRemoveRefusesDirectory(t *testing.T) {
	dir := t.TempDir()
	d := openDir(t, dir, 0o644, -1, -1)
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if removed, err := d.Remove("sub"); removed || err == nil {
		t.Errorf("Remove(dir) = %v, %v; want an error", removed, err)
	}
	if changed, err := d.Write("sub", []byte("x")); changed || err == nil {
		t.Errorf("Write over a dir = %v, %v; want an error", changed, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "sub")); err != nil {
		t.Error(err)
	}
}

func TestRefusedPaths(t *testing.T) {
	dir := t.TempDir()
	d := openDir(t, dir, 0o644, -1, -1)
	for _, rel := range []string{"", "/etc/passwd", "../x", "a/../../x", "..data", "a/..sidecar-tmp-1", "a//b", `a\b`} {
		if changed, err := d.Write(rel, []byte("x")); changed || !errors.Is(err, ErrRefused) {
			t.Errorf("Write(%q) = %v, %v; want ErrRefused", rel, changed, err)
		}
		if removed, err := d.Remove(rel); removed || !errors.Is(err, ErrRefused) {
			t.Errorf("Remove(%q) = %v, %v; want ErrRefused", rel, removed, err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("refused writes left %v", entries)
	}
}

func TestOpenDirRemovesLeftoverTemps(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"..sidecar-tmp-0123abcd", "a/b/..sidecar-tmp-ffff", "a/b/keep", "..data/..sidecar-tmp-1", "keep"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte("half"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d := openDir(t, dir, 0o644, -1, -1)
	assertNoTemps(t, dir)
	assertFile(t, filepath.Join(dir, "a/b/keep"), "half", 0o644)
	files, err := d.Files()
	if want := []string{"a/b/keep", "keep"}; err != nil || !slices.Equal(files, want) {
		t.Errorf("Files() = %q, %v; want %q", files, err, want)
	}
}

func TestOpenDirRefusesBadMode(t *testing.T) {
	if d, err := OpenDir(t.TempDir(), 0o4755, -1, -1); err == nil {
		d.Close()
		t.Error("OpenDir accepted a setuid mode")
	}
}

func TestSymlinksDoNotEscape(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	outFile := filepath.Join(outside, "file")
	if err := os.WriteFile(outFile, []byte("outside"), 0o644); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"evil": outside, "up": "../" + filepath.Base(outside), "f": outFile} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	d := openDir(t, dir, 0o644, -1, -1)

	for _, rel := range []string{"evil/x", "evil/file", "evil/new/x", "up/x", "up/file"} {
		if changed, err := d.Write(rel, []byte("pwned")); changed || err == nil {
			t.Errorf("Write(%q) through a link out = %v, %v; want an error", rel, changed, err)
		}
		if removed, err := d.Remove(rel); removed {
			t.Errorf("Remove(%q) through a link out = %v, %v", rel, removed, err)
		} else if testing.Verbose() {
			t.Logf("Write/Remove(%q): %v", rel, err)
		}
	}
	entries, _ := os.ReadDir(outside)
	if len(entries) != 1 {
		t.Errorf("outside dir now holds %v", entries)
	}

	// A link at the file's own name is replaced, not followed.
	mustWrite(t, d, "f", "inside", true)
	assertFile(t, outFile, "outside", 0o644)
	assertFile(t, filepath.Join(dir, "f"), "inside", 0o644)
	assertNoTemps(t, dir)

	// Removing a link removes the link, never its target.
	if err := os.Symlink(outFile, filepath.Join(dir, "g")); err != nil {
		t.Fatal(err)
	}
	if removed, err := d.Remove("g"); !removed || err != nil {
		t.Fatalf("Remove(link) = %v, %v", removed, err)
	}
	assertFile(t, outFile, "outside", 0o644)
}

func TestReadOnlyDirKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	d := openDir(t, dir, 0o644, -1, -1)
	mustWrite(t, d, "sub/f", "old", true)
	sub := filepath.Join(dir, "sub")
	MakeReadOnly(t, sub)

	if changed, err := d.Write("sub/f", []byte("new")); changed || err == nil {
		t.Fatalf("Write in a read-only dir = %v, %v; want an error", changed, err)
	}
	assertFile(t, filepath.Join(sub, "f"), "old", 0o644)
	assertNoTemps(t, dir)
	if removed, err := d.Remove("sub/f"); removed || err == nil {
		t.Fatalf("Remove in a read-only dir = %v, %v; want an error", removed, err)
	}
	assertFile(t, filepath.Join(sub, "f"), "old", 0o644)
}

func TestFiles(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := openDir(t, dir, 0o644, -1, -1)
	for _, rel := range []string{"z z", "a-c", "a/b", "a/d/e", "ünï"} {
		mustWrite(t, d, rel, rel, true)
	}
	plant := map[string]func(string) error{
		"a/..sidecar-tmp-99": func(p string) error { return os.WriteFile(p, nil, 0o644) },
		"..data/x":           func(p string) error { return os.WriteFile(p, nil, 0o644) },
		`back\slash`:         func(p string) error { return os.WriteFile(p, nil, 0o644) },
		"emptydir":           func(p string) error { return os.Mkdir(p, 0o755) },
		"out":                func(p string) error { return os.Symlink(outside, p) },
		"link":               func(p string) error { return os.Symlink("a/b", p) },
	}
	for rel, mk := range plant {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, rel)), 0o755)
		if err := mk(filepath.Join(dir, rel)); err != nil {
			t.Fatal(err)
		}
	}
	files, err := d.Files()
	want := []string{"a-c", "a/b", "a/d/e", "z z", "ünï"}
	if err != nil || !slices.Equal(files, want) {
		t.Errorf("Files() = %q, %v; want %q", files, err, want)
	}
}

// TestDirBatch: between Begin and Commit writes are staged, unseen; Commit
// puts them all in place, and a write that fails does not hold back the
// others; Abort drops what is staged.
func TestDirBatch(t *testing.T) {
	dir := t.TempDir()
	d := openDir(t, dir, 0o644, -1, -1)
	mustWrite(t, d, "blocker", "a file", true)
	if err := d.Begin(); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, d, "a", "A", true)
	mustWrite(t, d, "sub/b", "B", true)
	if _, err := d.Write("blocker/c", []byte("C")); err == nil {
		t.Error("a write under a file succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "a")); !os.IsNotExist(err) {
		t.Errorf("a staged write is visible before Commit: %v", err)
	}
	if err := d.Commit(); err != nil {
		t.Fatal(err)
	}
	assertFile(t, filepath.Join(dir, "a"), "A", 0o644)
	assertFile(t, filepath.Join(dir, "sub", "b"), "B", 0o644)
	assertNoTemps(t, dir)

	d.Begin()
	mustWrite(t, d, "a", "A2", true)
	mustWrite(t, d, "d", "D", true)
	d.Abort()
	assertFile(t, filepath.Join(dir, "a"), "A", 0o644)
	if _, err := os.Stat(filepath.Join(dir, "d")); !os.IsNotExist(err) {
		t.Errorf("an aborted write is there: %v", err)
	}
	assertNoTemps(t, dir)
}
