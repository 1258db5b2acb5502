package configsync

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// MakeReadOnly (exported to the package's external tests) makes dir refuse new, renamed and removed entries, for
// root too: root ignores permissions, so as root the directory gets the
// immutable attribute (FS_IMMUTABLE_FL, as chattr +i). It returns the
// undo, also run at cleanup.
func MakeReadOnly(t *testing.T, dir string) (undo func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		undo = func() { os.Chmod(dir, 0o755) }
	} else {
		if err := setImmutable(dir, true); err != nil {
			t.Skipf("cannot make %s immutable on this file system: %v", dir, err)
		}
		undo = func() { setImmutable(dir, false) }
	}
	t.Cleanup(undo)
	return undo
}

// fsImmutableFL is FS_IMMUTABLE_FL of linux/fs.h, which x/sys/unix lacks.
const fsImmutableFL = 0x10

func setImmutable(dir string, on bool) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err != nil {
		return err
	}
	if on {
		flags |= fsImmutableFL
	} else {
		flags &^= fsImmutableFL
	}
	v := int(flags)
	return unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, v)
}
