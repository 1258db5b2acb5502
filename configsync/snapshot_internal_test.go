package configsync

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSnapshotFailedBatchDropped: a batch in which a write failed is
// dropped whole; the previous snapshot stays, and no payload is left.
func TestSnapshotFailedBatchDropped(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenSnapshot(dir, 0o644, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Begin()
	s.Write("a", []byte("A1"))
	s.Write("f", []byte("a file"))
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Readlink(filepath.Join(dir, "..data"))

	s.Begin()
	if _, err := s.Write("a", []byte("A2")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write("f/under", []byte("x")); err == nil {
		t.Fatal("a write under a file succeeded")
	}
	if err := s.Commit(); err == nil || !strings.Contains(err.Error(), "batch dropped") {
		t.Fatalf("Commit = %v, want the batch dropped", err)
	}
	if now, _ := os.Readlink(filepath.Join(dir, "..data")); now != before {
		t.Errorf("..data → %s, want the previous snapshot %s", now, before)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "a")); string(b) != "A1" {
		t.Errorf("a = %q, want the previous A1", b)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if isPayload(e.Name()) && e.Name() != before {
			t.Errorf("payload %s left", e.Name())
		}
	}
}
