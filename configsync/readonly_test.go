package configsync_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/configsync"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// TestReadOnlyDirReportedAndRecovered: a mapping whose directory cannot
// be written reports why, keeps the files it has, and catches up by
// itself once the directory can be written again.
func TestReadOnlyDirReportedAndRecovered(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	put(t, cli, prefix+"a", "A1")
	dir := filepath.Join(t.TempDir(), "app")
	m, _ := run(t, cli, configsync.Config{Prefix: prefix, Dir: dir})
	treeIs(t, dir, map[string]string{"a": "A1"}, "initial sync")

	undo := configsync.MakeReadOnly(t, dir)
	put(t, cli, prefix+"a", "A2")
	rev := put(t, cli, prefix+"b", "B1")
	etcdtest.Eventually(t, 5*time.Second, "the failure reported", func() error {
		if st := m.Status(); st.LastError == "" || st.Behind.IsZero() {
			return fmt.Errorf("status %+v, want a last error and Behind set", st)
		}
		return nil
	})
	if got := tree(t, dir); fmt.Sprint(got) != fmt.Sprint(map[string]string{"a": "A1"}) {
		t.Errorf("files while read-only: %v, want the last good a=A1", got)
	}

	undo()
	treeIs(t, dir, map[string]string{"a": "A2", "b": "B1"}, "caught up once writable")
	etcdtest.Eventually(t, 15*time.Second, "recovered", func() error {
		if st := m.Status(); st.LastError != "" || st.Revision < rev || !st.Behind.IsZero() {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
}
