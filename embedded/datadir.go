package embedded

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"
)

// ErrDataDirInUse is wrapped by Run's error when another process, or
// another Member of this process, uses the data dir.
var ErrDataDirInUse = errors.New("embedded: data dir in use")

// LockFileName is the file in the data dir that a running Member holds an
// exclusive lock on.
const LockFileName = "sidecar.lock"

// lockDataDir creates dir if needed, takes the sidecar lock in it without
// waiting, and checks that no plain etcd process holds the files etcd locks
// (a WAL file or the bbolt database), on which etcd would wait for ever.
func lockDataDir(dir string) (*fileutil.LockedFile, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded: create data dir: %w", err)
	}
	path := filepath.Join(dir, LockFileName)
	lf, err := fileutil.TryLockFile(path, os.O_WRONLY|os.O_CREATE, fileutil.PrivateFileMode)
	if errors.Is(err, fileutil.ErrLocked) {
		return nil, fmt.Errorf("%w: %s is used by another sidecar (%s is locked)", ErrDataDirInUse, dir, path)
	}
	if err != nil {
		return nil, fmt.Errorf("embedded: lock data dir %s: %w", dir, err)
	}
	if err := checkEtcdLocks(dir); err != nil {
		lf.Close()
		return nil, err
	}
	return lf, nil
}

// checkEtcdLocks tries, without waiting, the locks etcd holds while it runs:
// a lock on each WAL file (taken with etcd's own fileutil, so of the same
// kind) and bbolt's flock on member/snap/db. Each lock taken is released at
// once.
func checkEtcdLocks(dir string) error {
	inUse := func(path string) error {
		return fmt.Errorf("%w: %s is used by another etcd process (%s is locked)", ErrDataDirInUse, dir, path)
	}
	wals, err := filepath.Glob(filepath.Join(dir, "member", "wal", "*.wal"))
	if err != nil {
		return fmt.Errorf("embedded: check data dir %s: %w", dir, err)
	}
	for _, p := range wals {
		lf, err := fileutil.TryLockFile(p, os.O_RDWR, fileutil.PrivateFileMode)
		if errors.Is(err, fileutil.ErrLocked) {
			return inUse(p)
		}
		if err != nil {
			return fmt.Errorf("embedded: check data dir %s: %w", dir, err)
		}
		lf.Close()
	}
	db := filepath.Join(dir, "member", "snap", "db")
	switch free, err := flockFree(db); {
	case err != nil:
		return fmt.Errorf("embedded: check data dir %s: %w", dir, err)
	case !free:
		return inUse(db)
	}
	return nil
}

// hasMember reports whether dir already holds a member: etcd then ignores the
// initial cluster settings and restarts the member from its WAL.
func hasMember(dir string) bool {
	wals, err := filepath.Glob(filepath.Join(dir, "member", "wal", "*.wal"))
	return err == nil && len(wals) > 0
}

// dirExists reports whether path exists (as anything: lockDataDir reports
// what it cannot use).
func dirExists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
