package configsync

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"
)

// tmpPrefix starts the name of every temporary file a Dir creates. It
// starts with "..", so no key maps to it (see RelPath).
const tmpPrefix = reserved + "sidecar-tmp-"

// Dir is a mapping's directory. Every operation goes through an os.Root
// opened on it, so none creates, replaces or removes anything outside it,
// even through symbolic links planted inside it.
//
// The rel paths its methods take and return are those RelPath returns;
// others are refused with an error wrapping ErrRefused.
//
// A Dir is not safe for concurrent use.
type Dir struct {
	root     *os.Root
	mode     fs.FileMode
	uid, gid int
	batch    *dirBatch // between Begin and Commit; nil otherwise
}

// OpenDir opens the directory at path for the files layout, creating it
// (and its parents, mode 0o755) if missing, then removes the temporary
// files a crash may have left anywhere beneath it, and what the snapshot
// layout left there (its "..data", payloads and links into them). Files it
// writes get exactly mode (permission bits only), and the owner uid and
// group gid; -1 leaves either as the process creates them.
func OpenDir(path string, mode fs.FileMode, uid, gid int) (*Dir, error) {
	d, err := openRoot(path, mode, uid, gid)
	if err != nil {
		return nil, err
	}
	if err := d.removeSnapshot(); err != nil {
		d.Close()
		return nil, fmt.Errorf("configsync: open %q: %w", path, err)
	}
	return d, nil
}

// openRoot opens (creating) the directory and removes temporary files.
func openRoot(path string, mode fs.FileMode, uid, gid int) (*Dir, error) {
	if mode&^fs.ModePerm != 0 {
		return nil, fmt.Errorf("configsync: open %q: file mode %v has bits other than permissions", path, mode)
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		return nil, fmt.Errorf("configsync: open %q: %w", path, err)
	}
	root, err := os.OpenRoot(path)
	if err != nil {
		return nil, fmt.Errorf("configsync: open %q: %w", path, err)
	}
	d := &Dir{root: root, mode: mode, uid: uid, gid: gid}
	if err := d.removeTemps(); err != nil {
		root.Close()
		return nil, fmt.Errorf("configsync: open %q: %w", path, err)
	}
	return d, nil
}

// removeSnapshot removes the snapshot layout's links, "..data" and
// payloads, so that the files layout can take the directory over.
func (d *Dir) removeSnapshot() error {
	entries, err := fs.ReadDir(d.root.FS(), ".")
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case e.Type()&fs.ModeSymlink != 0:
			t, err := d.root.Readlink(name)
			if err == nil && (name == dataLink || name == dataTmp || strings.HasPrefix(t, dataLink+"/")) {
				err = d.root.Remove(name)
			}
			if err != nil {
				return err
			}
		case e.IsDir() && isPayload(name):
			if err := d.root.RemoveAll(name); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeTemps removes every temporary file beneath the root.
func (d *Dir) removeTemps() error {
	return fs.WalkDir(d.root.FS(), ".", func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() && strings.HasPrefix(e.Name(), tmpPrefix) {
			return d.root.Remove(p)
		}
		return nil
	})
}

// Close closes the directory.
func (d *Dir) Close() error {
	return d.root.Close()
}

// Write makes the file at rel hold data, with the Dir's mode and owner.
// When the file already holds exactly that, Write leaves it alone (mtime
// included) and reports changed=false. Otherwise it writes a temporary file
// in the same directory, syncs it and renames it over rel (replacing a
// symbolic link at rel, never following it), then syncs the directory;
// readers see the old file or the new one, never a partial one. Missing
// parent directories are created with mode 0o755.
//
// On error the old file is left as it was, except when only the final sync
// of the directory failed: then changed is true and the new file is in
// place, perhaps not yet durable.
func (d *Dir) Write(rel string, data []byte) (changed bool, err error) {
	if err := checkRel(rel); err != nil {
		return false, fmt.Errorf("configsync: write %q: %w: %w", rel, ErrRefused, err)
	}
	same, err := d.holds(rel, data)
	if err != nil || same {
		return false, wrap("write", rel, err)
	}
	parent := path.Dir(rel)
	if err := d.root.MkdirAll(parent, 0o755); err != nil {
		return false, wrap("write", rel, err)
	}
	tmp, err := d.writeTemp(parent, data, d.batch == nil)
	if err != nil {
		return false, wrap("write", rel, err)
	}
	if d.batch != nil {
		d.batch.renames = append(d.batch.renames, staged{tmp: tmp, rel: rel})
		if len(d.batch.renames) >= maxStaged {
			return true, d.flush() // bounded: a batch of the files layout need not appear at once
		}
		return true, nil
	}
	if err := d.root.Rename(tmp, rel); err != nil {
		d.root.Remove(tmp)
		return false, wrap("write", rel, err)
	}
	return true, wrap("write", rel, d.syncDir(parent))
}

// holds reports whether rel is a regular file with exactly data, the Dir's
// mode and, when set, its owner.
func (d *Dir) holds(rel string, data []byte) (bool, error) {
	fi, err := d.root.Lstat(rel)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case fi.IsDir():
		return false, errors.New("a directory is in the way")
	case !fi.Mode().IsRegular() || fi.Mode() != d.mode || fi.Size() != int64(len(data)):
		return false, nil
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok &&
		(d.uid >= 0 && int(st.Uid) != d.uid || d.gid >= 0 && int(st.Gid) != d.gid) {
		return false, nil
	}
	old, err := d.root.ReadFile(rel)
	if err != nil {
		return false, err
	}
	return bytes.Equal(old, data), nil
}

// writeTemp writes data to a new temporary file in dir, with the Dir's
// mode and owner, synced (when sync is set) and closed, and returns its
// name. On error it leaves no file behind.
func (d *Dir) writeTemp(dir string, data []byte, sync bool) (name string, err error) {
	var rnd [12]byte
	rand.Read(rnd[:])
	name = path.Join(dir, tmpPrefix+hex.EncodeToString(rnd[:]))
	f, err := d.root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, d.mode)
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			d.root.Remove(name)
		}
	}()
	_, err = f.Write(data)
	if err == nil {
		err = d.fixMode(f)
	}
	if err == nil && (d.uid >= 0 || d.gid >= 0) {
		err = f.Chown(d.uid, d.gid)
	}
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return name, err
}

// fixMode gives f exactly the Dir's mode, which the umask may have
// narrowed at creation; a stat tells, and costs no journal entry when it
// is right already.
func (d *Dir) fixMode(f *os.File) error {
	if fi, err := f.Stat(); err == nil && fi.Mode().Perm() == d.mode {
		return nil
	}
	return f.Chmod(d.mode)
}

// syncDir fsyncs the directory (or file) name.
func (d *Dir) syncDir(name string) error {
	f, err := d.root.Open(name)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Remove removes the file (or symbolic link) at rel, then each parent
// directory that leaves empty, up to but not including the Dir's own
// directory. A missing file is not an error: removed is false.
func (d *Dir) Remove(rel string) (removed bool, err error) {
	if err := checkRel(rel); err != nil {
		return false, fmt.Errorf("configsync: remove %q: %w: %w", rel, ErrRefused, err)
	}
	removed, kept, err := d.remove(rel, ".")
	switch {
	case err != nil || kept == "":
	case d.batch != nil:
		d.batch.dirs[kept] = struct{}{}
	default:
		err = wrap("remove", rel, d.syncDir(kept)) // durable, as a write is
	}
	return removed, err
}

// remove removes rel beneath the directory base, and the directories of
// base that leaves empty. It returns the directory that held the last
// removal ("" when that is a link), to be synced.
func (d *Dir) remove(rel, base string) (removed bool, kept string, err error) {
	p := path.Join(base, rel)
	fi, err := d.root.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, "", nil
	case err != nil:
		return false, "", wrap("remove", rel, err)
	case fi.IsDir():
		return false, "", wrap("remove", rel, errors.New("it is a directory"))
	}
	if err := d.root.Remove(p); err != nil {
		return false, "", wrap("remove", rel, err)
	}
	kept, err = d.removeEmptyParents(p, base)
	return true, kept, wrap("remove", rel, err)
}

// removeEmptyParents removes the parent directories of p, innermost
// first, while they are empty directories (not links to one), up to but
// not including base, and returns the directory that now holds the last
// removal ("" when that is a link).
func (d *Dir) removeEmptyParents(p, base string) (kept string, err error) {
	for dir := path.Dir(p); dir != base && dir != "."; dir = path.Dir(dir) {
		fi, err := d.root.Lstat(dir)
		if err != nil || !fi.IsDir() {
			return "", err
		}
		entries, err := fs.ReadDir(d.root.FS(), dir)
		if err != nil || len(entries) > 0 {
			return dir, err
		}
		if err := d.root.Remove(dir); err != nil {
			return "", err
		}
	}
	return base, nil
}

// Files returns the rel path of every regular file beneath the directory,
// sorted. It does not follow symbolic links, and leaves out every name
// RelPath cannot return: the package's own temporary and snapshot files
// (any element starting with ".."), and files with names no key maps to.
func (d *Dir) Files() ([]string, error) {
	return d.files(".")
}

// files lists the files beneath base, as Files does, relative to base.
func (d *Dir) files(base string) ([]string, error) {
	var files []string
	err := fs.WalkDir(d.root.FS(), base, func(p string, e fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case p == base:
			return nil
		case strings.HasPrefix(e.Name(), reserved) && e.IsDir():
			return fs.SkipDir
		}
		rel := p
		if base != "." {
			rel = strings.TrimPrefix(p, base+"/")
		}
		if e.Type().IsRegular() && checkRel(rel) == nil {
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("configsync: list files: %w", err)
	}
	slices.Sort(files)
	return files, nil
}

// wrap adds the operation and path to a non-nil err.
func wrap(op, rel string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("configsync: %s %q: %w", op, rel, err)
}
