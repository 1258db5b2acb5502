//go:build unix

package embedded

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"
)

func TestCheckEtcdLocks(t *testing.T) {
	for _, file := range []string{"member/wal/0000000000000000-0000000000000000.wal", "member/snap/db"} {
		t.Run(file, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, filepath.FromSlash(file))
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := checkEtcdLocks(dir); err != nil {
				t.Fatalf("checkEtcdLocks with %s unlocked: %v", file, err)
			}
			release := lockLikeEtcd(t, path)
			err := checkEtcdLocks(dir)
			if !errors.Is(err, ErrDataDirInUse) || !strings.Contains(err.Error(), path) {
				t.Fatalf("checkEtcdLocks with %s locked = %v, want ErrDataDirInUse naming it", file, err)
			}
			release()
			if err := checkEtcdLocks(dir); err != nil {
				t.Fatalf("checkEtcdLocks after release: %v", err)
			}
		})
	}
}

// lockLikeEtcd locks path the way etcd does: WAL files with etcd's fileutil,
// the bbolt database with flock.
func lockLikeEtcd(t *testing.T, path string) (release func()) {
	t.Helper()
	if filepath.Ext(path) == ".wal" {
		lf, err := fileutil.TryLockFile(path, os.O_RDWR, fileutil.PrivateFileMode)
		if err != nil {
			t.Fatal(err)
		}
		return func() { lf.Close() }
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	return func() { f.Close() }
}
