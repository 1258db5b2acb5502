package configsync_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/configsync"
)

// TestSnapshotPayloadOutlivesSwap: a reader that resolved "..data" to a
// payload just before a batch replaced it (as the kernel does half way
// through resolving "sub/b") still reads that payload's files for a
// while; the payload is removed about a second later, and at once by
// Close.
func TestSnapshotPayloadOutlivesSwap(t *testing.T) {
	dir := t.TempDir()
	s, err := configsync.OpenSnapshot(dir, 0o644, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	commit := func(v int) string {
		t.Helper()
		if err := s.Begin(); err != nil {
			t.Fatal(err)
		}
		for _, rel := range []string{"a", "sub/b"} {
			if _, err := s.Write(rel, fmt.Appendf(nil, "%s %d", rel, v)); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Commit(); err != nil {
			t.Fatal(err)
		}
		payload, err := os.Readlink(filepath.Join(dir, "..data"))
		if err != nil {
			t.Fatal(err)
		}
		return payload
	}
	first := commit(0)
	swapped := time.Now()
	for v := 1; v <= 5; v++ {
		commit(v)
	}
	for _, rel := range []string{"a", "sub/b"} {
		b, err := os.ReadFile(filepath.Join(dir, first, rel))
		if time.Since(swapped) < 500*time.Millisecond && (err != nil || string(b) != rel+" 0") {
			t.Errorf("%s through the replaced payload: %q, %v", rel, b, err)
		}
	}
	layoutClean(t, dir)
	t.Logf("replaced payloads gone %s after the first swap", time.Since(swapped).Round(time.Millisecond))

	replaced := commit(6)
	current := commit(7)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{first, replaced} {
		if _, err := os.Stat(filepath.Join(dir, p)); !os.IsNotExist(err) {
			t.Errorf("payload %s still there after Close: %v", p, err)
		}
	}
	if now, _ := os.Readlink(filepath.Join(dir, "..data")); now != current {
		t.Errorf("..data → %s after Close, want %s", now, current)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "sub/b")); err != nil || string(b) != "sub/b 7" {
		t.Errorf("after Close: sub/b = %q, %v", b, err)
	}
}
