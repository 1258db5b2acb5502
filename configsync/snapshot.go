package configsync

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"time"
)

// Names of the snapshot layout, all starting with reserved.
const (
	dataLink = reserved + "data"     // → the current payload directory
	dataTmp  = reserved + "data_tmp" // the next ..data, renamed over it
)

// Snapshot is a mapping's directory in the snapshot layout, the scheme of
// Kubernetes' ConfigMap volumes: the files live in a payload directory
// named after the time it was made ("..2026_11_30_03_38_11.<random>"),
// "..data" is a symbolic link to the current payload, and each top-level
// name is a link into "..data" ("db" → "..data/db"). A batch is built in a
// new payload and made visible by renaming a new "..data" over the old one,
// so all files of one revision appear at once. A reader that resolves
// "..data" once (or opens a directory through it) sees one revision only.
//
// Unchanged files are hard links to the previous payload's, so a batch
// costs one link per file plus the files it changes. A crash at any step
// leaves the previous snapshot whole; OpenSnapshot removes what it left.
//
// Write, Remove and Files work on the batch begun by Begin (see Dir for
// their rules); Commit makes it visible, Abort drops it. A Snapshot is not
// safe for concurrent use.
type Snapshot struct {
	d     *Dir
	cur   string   // the payload ..data points to; "" before the first
	next  string   // the payload of the batch being built; "" outside one
	dirty bool     // the batch changed a file
	wrote []string // files the batch wrote, to be synced by Commit
	fault error    // the first Write or Remove of the batch that failed

	mu      sync.Mutex // guards the fields below, shared with reap
	retired []retiredPayload
	reaper  *time.Timer    // runs reap when the first retired payload is due
	reapErr error          // why reap could not remove a payload, for Commit
	closed  bool           // no more reaps: Close removes what is retired
	reaping sync.WaitGroup // a reap removing payloads, for Close to wait for
}

// OpenSnapshot opens the directory at path for the snapshot layout, as
// OpenDir does for the files layout, and removes what a crash may have
// left: temporary files, a "..data_tmp", and payloads "..data" does not
// point to. Files and directories of the files layout stay until the
// first Commit replaces them.
func OpenSnapshot(path string, mode fs.FileMode, uid, gid int) (*Snapshot, error) {
	d, err := openRoot(path, mode, uid, gid)
	if err != nil {
		return nil, err
	}
	s := &Snapshot{d: d}
	if err := s.recover(); err != nil {
		d.Close()
		return nil, fmt.Errorf("configsync: open %q: %w", path, err)
	}
	return s, nil
}

// recover finds the current payload and removes every other one.
func (s *Snapshot) recover() error {
	target, err := s.d.root.Readlink(dataLink)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return err
	case isPayload(target):
		s.cur = target
	default:
		return fmt.Errorf("%s points to %q, not a payload of this layout", dataLink, target)
	}
	if err := removeIfExists(s.d.root, dataTmp); err != nil {
		return err
	}
	return s.removePayloads(s.cur)
}

// removePayloads removes the payload directories other than keep.
func (s *Snapshot) removePayloads(keep string) error {
	entries, err := fs.ReadDir(s.d.root.FS(), ".")
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() && isPayload(e.Name()) && e.Name() != keep {
			if err := s.d.root.RemoveAll(e.Name()); err != nil {
				return err
			}
		}
	}
	return nil
}

// isPayload reports whether name is one of the payload directory names
// newPayload makes.
func isPayload(name string) bool {
	return len(name) > len(reserved) && strings.HasPrefix(name, reserved) &&
		name[len(reserved)] >= '0' && name[len(reserved)] <= '9' && !strings.Contains(name, "/")
}

// Close closes the directory, dropping a batch not committed and
// removing the payloads replaced within payloadGrace.
func (s *Snapshot) Close() error {
	s.Abort()
	return cmp.Or(s.dropRetired(), s.d.Close())
}

// Begin starts a batch: a new payload holding the current files, as hard
// links.
func (s *Snapshot) Begin() error {
	s.Abort()
	var rnd [6]byte
	rand.Read(rnd[:])
	name := reserved + time.Now().UTC().Format("2006_01_02_15_04_05.") + hex.EncodeToString(rnd[:])
	if err := s.mkdir(name); err != nil {
		return fmt.Errorf("configsync: snapshot: %w", err)
	}
	s.next, s.dirty, s.wrote, s.fault = name, false, s.wrote[:0], nil
	if s.cur == "" {
		return nil
	}
	err := fs.WalkDir(s.d.root.FS(), s.cur, func(p string, e fs.DirEntry, err error) error {
		if err != nil || p == s.cur {
			return err
		}
		to := path.Join(name, strings.TrimPrefix(p, s.cur+"/"))
		if e.IsDir() {
			return s.mkdir(to)
		}
		return s.d.root.Link(p, to)
	})
	if err != nil {
		s.Abort()
		return fmt.Errorf("configsync: snapshot: copy %s: %w", s.cur, err)
	}
	return nil
}

// mkdir makes a directory of mode 0o755, whatever the umask.
func (s *Snapshot) mkdir(name string) error {
	if err := s.d.root.Mkdir(name, 0o755); err != nil {
		return err
	}
	return s.d.root.Chmod(name, 0o755)
}

// Abort drops the batch being built, if any.
func (s *Snapshot) Abort() {
	if s.next != "" {
		s.d.root.RemoveAll(s.next)
		s.next = ""
	}
}

// Write makes rel hold data in the batch; see Dir.Write. Only a Commit
// makes it visible.
func (s *Snapshot) Write(rel string, data []byte) (changed bool, err error) {
	if err := s.inBatch("write", rel); err != nil {
		return false, err
	}
	changed, err = s.write(path.Join(s.next, rel), data)
	if err != nil {
		err = wrap("write", rel, err)
		s.fault = cmp.Or(s.fault, err)
	}
	return changed, err
}

// write makes the file p of the payload hold data: a new file, never the
// old one, which may be a hard link into the visible snapshot.
func (s *Snapshot) write(p string, data []byte) (changed bool, err error) {
	same, err := s.d.holds(p, data)
	if err != nil || same {
		return false, err
	}
	parent := path.Dir(p)
	if err := s.d.root.MkdirAll(parent, 0o755); err != nil {
		return false, err
	}
	tmp, err := s.d.writeTemp(parent, data, false) // Commit syncs the batch
	if err != nil {
		return false, err
	}
	if err := s.d.root.Rename(tmp, p); err != nil {
		s.d.root.Remove(tmp)
		return false, err
	}
	s.dirty = true
	s.wrote = append(s.wrote, p)
	return true, nil
}

// Remove removes rel from the batch, and the directories that leaves
// empty; see Dir.Remove.
func (s *Snapshot) Remove(rel string) (removed bool, err error) {
	if err := s.inBatch("remove", rel); err != nil {
		return false, err
	}
	removed, _, err = s.d.remove(rel, s.next) // Commit syncs the batch
	s.dirty = s.dirty || removed
	s.fault = cmp.Or(s.fault, err)
	return removed, err
}

// inBatch refuses a rel path RelPath would not return, and a change
// outside a batch.
func (s *Snapshot) inBatch(op, rel string) error {
	if err := checkRel(rel); err != nil {
		return fmt.Errorf("configsync: %s %q: %w: %w", op, rel, ErrRefused, err)
	}
	if s.next == "" {
		return fmt.Errorf("configsync: %s %q: no batch begun", op, rel)
	}
	return nil
}

// Files returns the rel paths of the batch's files, or of the current
// snapshot outside a batch; see Dir.Files.
func (s *Snapshot) Files() ([]string, error) {
	p := s.next
	if p == "" {
		p = s.cur
	}
	if p == "" {
		return nil, nil
	}
	return s.d.files(p)
}

// Commit makes the batch visible at once: it syncs the payload, links
// its new top-level names into "..data", renames a new "..data" over the
// old, syncs the directory, and then removes the names the batch no
// longer has; the previous payload goes payloadGrace later (an error in
// removing it is returned by the next Commit). A batch that changed nothing is
// dropped; the top-level names are still checked. A batch in which a
// Write or Remove failed is dropped whole, and Commit returns that
// failure: the snapshot stays as it was.
func (s *Snapshot) Commit() error {
	if s.next == "" {
		return errors.New("configsync: snapshot: commit: no batch begun")
	}
	if err := s.fault; err != nil {
		s.Abort()
		return fmt.Errorf("configsync: snapshot: batch dropped: %w", err)
	}
	if !s.dirty && s.cur != "" {
		s.Abort()
		return s.wrapCommit(cmp.Or(s.link(s.cur), s.takeReapErr()))
	}
	if err := s.swap(); err != nil {
		s.Abort()
		return s.wrapCommit(err)
	}
	old := s.cur
	s.cur, s.next = s.next, ""
	if old != "" {
		s.retire(old)
	}
	return s.wrapCommit(cmp.Or(s.link(s.cur), s.takeReapErr()))
}

func (s *Snapshot) wrapCommit(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("configsync: snapshot: commit: %w", err)
}

// swap makes the payload being built durable, creates the links of its
// top-level names, and points "..data" at it, durably.
func (s *Snapshot) swap() error {
	if err := s.syncPayload(); err != nil {
		return err
	}
	names, err := topNames(s.d.root, s.next)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := s.ensureLink(n); err != nil {
			return err
		}
	}
	if err := removeIfExists(s.d.root, dataTmp); err != nil {
		return err
	}
	if err := s.d.root.Symlink(s.next, dataTmp); err != nil {
		return err
	}
	if err := s.d.root.Rename(dataTmp, dataLink); err != nil {
		return err
	}
	return s.d.syncDir(".")
}

// syncPayload fsyncs the files the batch wrote and every directory of its
// payload (which hold the new names and the hard links), concurrently —
// or, when they are many, syncs the file system once (see syncfsAbove).
func (s *Snapshot) syncPayload() error {
	names := slices.Clone(s.wrote)
	err := fs.WalkDir(s.d.root.FS(), s.next, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			names = append(names, p)
		}
		return err
	})
	if err != nil {
		return err
	}
	if len(names) > syncfsAbove {
		return s.d.syncFS()
	}
	return parallel(len(names), func(i int) error { return s.d.syncDir(names[i]) })
}

// link makes the top-level names of the directory the links of payload's
// names, and nothing else: it creates the missing links and removes every
// other name that is not the layout's own.
func (s *Snapshot) link(payload string) error {
	names, err := topNames(s.d.root, payload)
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
		if err := s.ensureLink(n); err != nil {
			return err
		}
	}
	have, err := topNames(s.d.root, ".")
	if err != nil {
		return err
	}
	removed := false
	for _, n := range have {
		if !want[n] {
			if err := s.d.root.RemoveAll(n); err != nil {
				return err
			}
			removed = true
		}
	}
	if removed {
		return s.d.syncDir(".")
	}
	return nil
}

// ensureLink makes the top-level name a link to "..data/name", replacing
// whatever else is there (a file or directory of the files layout).
func (s *Snapshot) ensureLink(name string) error {
	target := dataLink + "/" + name
	fi, err := s.d.root.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return s.d.root.Symlink(target, name)
	case err != nil:
		return err
	case fi.Mode()&fs.ModeSymlink != 0:
		if t, err := s.d.root.Readlink(name); err != nil || t == target {
			return err
		}
	case fi.IsDir():
		if err := s.d.root.RemoveAll(name); err != nil {
			return err
		}
		return s.d.root.Symlink(target, name)
	}
	var rnd [12]byte
	rand.Read(rnd[:])
	tmp := tmpPrefix + hex.EncodeToString(rnd[:])
	if err := s.d.root.Symlink(target, tmp); err != nil {
		return err
	}
	if err := s.d.root.Rename(tmp, name); err != nil {
		s.d.root.Remove(tmp)
		return err
	}
	return nil
}

// topNames returns the names in dir that a key can produce (not the
// layout's own, which start with "..").
func topNames(root *os.Root, dir string) ([]string, error) {
	entries, err := fs.ReadDir(root.FS(), dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), reserved) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// removeIfExists removes name; a missing name is not an error.
func removeIfExists(root *os.Root, name string) error {
	if err := root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// store is a mapping's directory in its layout: a Dir or a Snapshot.
// Changes are made in batches, Begin to Commit (or Abort).
type store interface {
	Write(rel string, data []byte) (changed bool, err error)
	Remove(rel string) (removed bool, err error)
	Files() ([]string, error)
	Begin() error
	Commit() error
	Abort()
	Close() error
}

// openStore opens dir in the layout.
func openStore(layout Layout, dir string, mode fs.FileMode, uid, gid int) (store, error) {
	if layout == LayoutSnapshot {
		return OpenSnapshot(dir, mode, uid, gid)
	}
	return OpenDir(dir, mode, uid, gid)
}
