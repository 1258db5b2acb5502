package configsync

import (
	"cmp"
	"path"

	"golang.org/x/sync/errgroup"
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
// concurrently (the file system commits concurrent fsyncs together),
// renames each over its file in order, and then fsyncs every directory a
// rename or removal changed, concurrently. Each file is replaced
// atomically and durably as Write does on its own; a file whose sync or
// rename fails keeps its old content, the others are still written, and
// the first failure is returned.
func (d *Dir) Commit() error {
	b := d.batch
	d.batch = nil
	if b == nil {
		return nil
	}
	synced := make([]error, len(b.renames))
	parallel(len(b.renames), func(i int) error {
		synced[i] = d.syncDir(b.renames[i].tmp)
		return nil
	})
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
	dirs := make([]string, 0, len(b.dirs))
	for dir := range b.dirs {
		dirs = append(dirs, dir)
	}
	err := parallel(len(dirs), func(i int) error { return d.syncDir(dirs[i]) })
	return cmp.Or(first, wrap("sync", ".", err))
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

// syncParallel bounds the fsyncs run at once by a Commit.
const syncParallel = 16

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
