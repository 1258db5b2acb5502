package sidecar

import (
	"path/filepath"
	"testing"
)

// TestCompleteMakesDataDirsAbsolute: a relative data_dir, and a relative
// embedded.data_dir such as an etcd.conf's ETCD_DATA_DIR, are made
// absolute, so that status shows where the data is and a later chdir
// cannot move it.
func TestCompleteMakesDataDirsAbsolute(t *testing.T) {
	t.Chdir(t.TempDir())
	wd, _ := filepath.Abs(".")
	cfg := Defaults()
	cfg.Name, cfg.DataDir = "n1", "data"
	cfg.Embedded.DataDir = "./etcd-data/n1"
	if err := cfg.Complete(); err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(wd, "data"); cfg.DataDir != want {
		t.Errorf("data_dir = %q, want %q", cfg.DataDir, want)
	}
	if want := filepath.Join(wd, "etcd-data", "n1"); cfg.Embedded.DataDir != want {
		t.Errorf("embedded.data_dir = %q, want %q", cfg.Embedded.DataDir, want)
	}
}
