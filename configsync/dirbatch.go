package configsync

import (
	"cmp"
	"path"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// dirBatch is what a Dir defers to Commit between Begin and Commit: the
// renames of written temporary files, not yet synced, and the directories
// to sync.
type dirBatch struct {
	renames []staged
	dirs    map[string]struct{}
}

// staged is a written temporary file and the name it takes.
type staged struct{ tmp, rel string }

// Begin starts a batch: until Commit, Write leaves its temporary file
// unsynced and unrenamed, and Remove defers its directory sync, so that
// Commit syncs the whole batch at once. Outside a batch each Write and
// Remove is on disk, and visible, when it returns.
func (d *Dir) Begin() error {
	d.Abort()
	d.batch = &dirBatch{dirs: map[string]struct{}{}}
	return nil
}

// Commit ends the batch: it fsyncs the written temporary files
// concurrently (the file system commits concurrent fsyncs together), or
// syncs the file system once for a big batch, renames each over its file
// in order, and then makes every directory a rename or removal changed
// durable the same way. Each file is replaced
// atomically and durably as Write does on its own; a file whose sync or
// rename fails keeps its old content, the others are still written, and
// the first failure is returned.
func (d *Dir) Commit() error {
	err := d.flush()
	d.batch = nil
	return err
}

// flush puts the batch's staged writes in place (see Commit), leaving the
// batch open.
func (d *Dir) flush() error {
	b := d.batch
	if b == nil {
		return nil
	}
	defer func() { b.renames, b.dirs = b.renames[:0], map[string]struct{}{} }()
	synced := make([]error, len(b.renames))
	if big := len(b.renames) > syncfsAbove; big {
		err := d.syncFS()
		for i := range synced {
			synced[i] = err
		}
	} else {
		parallel(len(b.renames), func(i int) error {
			synced[i] = d.syncDir(b.renames[i].tmp)
			return nil
		})
	}
	var first error
	for i, s := range b.renames {
		err := synced[i]
		if err == nil {
			err = d.root.Rename(s.tmp, s.rel)
		}
		if err != nil {
			d.root.Remove(s.tmp)
			first = cmp.Or(first, wrap("write", s.rel, err))
			continue
		}
		b.dirs[path.Dir(s.rel)] = struct{}{}
	}
	return cmp.Or(first, wrap("sync", ".", d.syncDirs(b.dirs)))
}

// syncDirs makes the entries of dirs durable: an fsync of each,
// concurrently, or one syncfs(2) when they are many.
func (d *Dir) syncDirs(set map[string]struct{}) error {
	if len(set) > syncfsAbove {
		return d.syncFS()
	}
	dirs := make([]string, 0, len(set))
	for dir := range set {
		dirs = append(dirs, dir)
	}
	return parallel(len(dirs), func(i int) error { return d.syncDir(dirs[i]) })
}

// syncFS makes everything written to the directory's file system durable
// with one syncfs(2).
func (d *Dir) syncFS() error {
	f, err := d.root.Open(".")
	if err != nil {
		return err
	}
	err = unix.Syncfs(int(f.Fd()))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Abort drops the writes of the batch not yet renamed; removals stay done.
func (d *Dir) Abort() {
	if b := d.batch; b != nil {
		for _, s := range b.renames {
			d.root.Remove(s.tmp)
		}
		d.batch = nil
	}
}

const (
	// maxStaged bounds the writes a batch stages: at that many, Write puts
	// them in place at once, so that memory and the temporary files of a
	// big list stay bounded.
	maxStaged = 1024
	// syncParallel bounds the fsyncs run at once by a Commit.
	syncParallel = 16
	// syncfsAbove: a batch of more files than this is made durable by one
	// syncfs(2) of the file system rather than an fsync per file, which
	// costs a journal commit each even when run concurrently. syncfs also
	// flushes what other programs wrote to that file system, so small
	// batches, whose latency matters most, keep to their own fsyncs.
	syncfsAbove = 16
)

// parallel runs f(0) … f(n-1), syncParallel at a time, and returns the
// first error.
func parallel(n int, f func(i int) error) error {
	if n == 1 {
		return f(0)
	}
	var g errgroup.Group
	g.SetLimit(syncParallel)
	for i := range n {
		g.Go(func() error { return f(i) })
	}
	return g.Wait()
}
