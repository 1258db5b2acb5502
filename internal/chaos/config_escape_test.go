package chaos

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/api"
)

// cfgEscapes returns key paths (under a mapping's prefix) that try to
// leave the mapping's directory or take a name the mirror reserves; abs is
// an absolute directory that must not come to exist.
func cfgEscapes(abs string) []string {
	return []string{
		"", ".", "..", "...", "../escaped-1", "a/../../escaped-2", "../../../escaped-3",
		"a/./b", "a//b", "a/", abs + "/x", "nul\x00/x", "..\\escaped-4", "back\\..\\..\\escaped-5",
		strings.Repeat("l", 256), strings.Repeat(strings.Repeat("d", 200)+"/", 21) + "x",
		"..data", "..data/x", "..2026_11_30_00_00_00.000000000/x", "..sidecar-tmp-x", "ok/..data_tmp",
		"bad-utf8-\xff\xfe",
	}
}

// cfgLegit are key paths around the escapes that must be mirrored.
var cfgLegit = []string{"ok.conf", "a/b/c.yaml", "x..y", ".hidden", "dir/.also-hidden", "a/b/.d"}

// TestConfigEscapingKeys: one sidecar mirrors two prefixes, one in each
// layout (files, snapshot), into directories three levels below the
// test's root, beside a sentinel directory "outside". Once the first
// legitimate keys are mirrored, a symlink "evil" → outside is planted in
// each mapped directory; then the keys of cfgEscapes (parent elements,
// absolute paths, "." and empty elements, NUL, backslashes, over-long
// names and paths, the reserved "..data" and ".." names, invalid UTF-8),
// the other legitimate keys and "evil/x" (a path through the planted
// symlink) are put under both prefixes.
//
// Pass: nothing outside the two directories changes (a recursive listing
// of the root with each entry's type, size and mtime is the same before
// and after, and the absolute path does not exist); each mapping counts
// exactly the refused keys in `rejected`; every legitimate key is a file
// of its directory with its value. The files layout refuses to write
// through the planted link: its `last_error` names evil/x and /v1/health
// is 503, and once the link is removed it writes evil/x inside by itself;
// the snapshot layout replaces the planted top-level link with its own.
// The daemon stays up throughout.
func TestConfigEscapingKeys(t *testing.T) {
	w := newWorld(t)
	root, nest, outside := cfgEscapeTree(t)
	abs := filepath.Join(os.TempDir(), fmt.Sprintf("cfg-escape-%d", os.Getpid()))
	files := cfgMapping{"/cfg/files/", filepath.Join(nest, "files"), "files"}
	snap := cfgMapping{"/cfg/snap/", filepath.Join(nest, "snap"), "snapshot"}
	p := startSidecar(t, cfgYAML(t, "escape", w.endpoints(false), files, snap))
	for _, m := range []cfgMapping{files, snap} {
		for _, k := range cfgLegit[:2] {
			w.cfgPutAt(t, m.prefix+k, "legit "+k)
		}
	}
	p.cfgWaitRevision(t, w.cfgRev(t), 30*time.Second)
	bad := cfgEscapes(abs)
	for _, m := range []cfgMapping{files, snap} {
		if err := os.Symlink(outside, filepath.Join(m.dir, "evil")); err != nil {
			t.Fatal(err)
		}
	}
	before := cfgListing(t, root, files, snap)
	for _, m := range []cfgMapping{files, snap} {
		for _, k := range bad {
			w.cfgPutAt(t, m.prefix+k, "escape "+k)
		}
		for _, k := range append(cfgLegit[2:], "evil/x") {
			w.cfgPutAt(t, m.prefix+k, "legit "+k)
		}
	}
	rev := w.cfgRev(t)
	took := cfgWaitMapping(t, p, snap.prefix, "snapshot: refused and in sync", func(m api.ConfigMapping) bool {
		return m.Rejected == int64(len(bad)) && m.Revision >= rev && m.LastError == ""
	})
	cfgSameOutside(t, root, before, abs, files, snap)
	cfgWaitMapping(t, p, files.prefix, "files: refused and failing on evil/x", func(m api.ConfigMapping) bool {
		return m.Rejected == int64(len(bad)) && strings.Contains(m.LastError, `"evil/x"`)
	})
	cfgCheckLegit(t, snap, "evil/x")
	cfgCheckLegit(t, files)
	if code, err := p.get("/v1/health", nil); code != 503 {
		t.Errorf("/v1/health while the files mapping cannot write evil/x: %d %v, want 503", code, err)
	}
	if err := os.Remove(filepath.Join(files.dir, "evil")); err != nil {
		t.Fatal(err)
	}
	fixed := cfgWaitMapping(t, p, files.prefix, "files: in sync once the link is gone", func(m api.ConfigMapping) bool {
		return m.Rejected == int64(len(bad)) && m.Revision >= rev && m.LastError == ""
	})
	cfgCheckLegit(t, files, "evil/x")
	cfgSameOutside(t, root, before, abs, files, snap)
	if code, err := p.get("/v1/health", nil); code != 200 {
		t.Errorf("/v1/health after the escapes: %d %v; want 200", code, err)
	}
	t.Logf("FIGURE scenario=config_escaping_keys form=%s refused_per_mapping=%d legit_per_mapping=%d outside_changes=0 snapshot_settled_ms=%s files_recovered_ms=%s",
		form(), len(bad), len(cfgLegit)+1, ms(took), ms(fixed))
}

// cfgEscapeTree makes root/p1/p2/p3 (nest) with a sentinel directory
// "outside" holding a file x.
func cfgEscapeTree(t *testing.T) (root, nest, outside string) {
	t.Helper()
	root = t.TempDir()
	nest = filepath.Join(root, "p1", "p2", "p3")
	outside = filepath.Join(nest, "outside")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "x"), []byte("sentinel"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root, nest, outside
}

// cfgPutAt puts value at key, failing the test on an error.
func (w *world) cfgPutAt(t *testing.T, key, value string) {
	t.Helper()
	c, cancel := ctx(t)
	defer cancel()
	if _, err := w.cli.Put(c, key, value); err != nil {
		t.Fatalf("put %q: %v", key, err)
	}
}

// cfgRev returns etcd's current revision.
func (w *world) cfgRev(t *testing.T) int64 {
	t.Helper()
	c, cancel := ctx(t)
	defer cancel()
	resp, err := w.cli.Get(c, "/cfg/rev-probe")
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// cfgWaitMapping waits until the sidecar's mapping of prefix passes ok,
// and returns how long that took.
func cfgWaitMapping(t *testing.T, p *sidecarProc, prefix, what string, ok func(api.ConfigMapping) bool) time.Duration {
	t.Helper()
	return p.cfgWait(t, 30*time.Second, what, func(mm []api.ConfigMapping) error {
		for _, m := range mm {
			if m.Prefix == prefix && ok(m) {
				return nil
			}
		}
		return fmt.Errorf("%+v", mm)
	})
}

// cfgCheckLegit checks that each legitimate key of m, and each of more,
// is a file inside m's directory (no symlink on its way out of it) with
// its value.
func cfgCheckLegit(t *testing.T, m cfgMapping, more ...string) {
	t.Helper()
	dir, err := filepath.EvalSymlinks(m.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range append(slices.Clone(cfgLegit), more...) {
		path := filepath.Join(m.dir, k)
		real, err := filepath.EvalSymlinks(path)
		if err == nil && !strings.HasPrefix(real, dir+string(filepath.Separator)) {
			err = fmt.Errorf("resolves to %s, outside", real)
		}
		b, rerr := os.ReadFile(path)
		if err != nil || rerr != nil || string(b) != "legit "+k {
			t.Errorf("%s: %s: %q %v %v, want %q", m.layout, k, b, err, rerr, "legit "+k)
		}
	}
}

// cfgSameOutside fails the test if the listing of root outside the
// mapped directories is not before, or if abs exists.
func cfgSameOutside(t *testing.T, root, before, abs string, maps ...cfgMapping) {
	t.Helper()
	if now := cfgListing(t, root, maps...); now != before {
		t.Errorf("outside the mapped directories:\nbefore %s\nnow    %s", before, now)
	}
	if _, err := os.Lstat(abs); err == nil {
		t.Errorf("%s exists", abs)
	}
}

// cfgListing describes every entry under root but inside the mapped
// directories: path, type, size and mtime, one line each.
func cfgListing(t *testing.T, root string, maps ...cfgMapping) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		for _, m := range maps {
			if p == m.dir {
				return fs.SkipDir
			}
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "\n  %s %v %d %d", p, fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		t.Fatalf("list %s: %v", root, err)
	}
	return b.String()
}
