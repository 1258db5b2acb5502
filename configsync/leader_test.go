package configsync_test

import (
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/configsync"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// TestLeaderChangeIsNoFailure: a mapping whose client talks to the two
// followers of a three-member cluster goes on through the loss of the
// leader, twice. A require-leader watch on a follower ends when the
// leader goes; that is etcd electing a new leader, not the mapping failing,
// so the mapping must not report an error (an error turns the daemon's
// health 503 and could get the service restarted). Puts made meanwhile
// still reach the directory.
func TestLeaderChangeIsNoFailure(t *testing.T) {
	c := etcdtest.StartCluster(t, 3, etcdtest.ServerOptions{})
	writer := c.Client(t)
	leader := c.Leader(t)
	var followers []string
	for i, u := range c.ClientURLs() {
		if i != leader {
			followers = append(followers, u)
		}
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: followers, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	dir := filepath.Join(t.TempDir(), "app")
	m, _ := run(t, cli, configsync.Config{Prefix: prefix, Dir: dir})
	etcdtest.Eventually(t, 5*time.Second, "synced", atRevision(m, put(t, writer, prefix+"k", "0")))

	var seen atomic.Value // the first error the mapping reported
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if e := m.Status().LastError; e != "" && seen.Load() == nil {
				seen.Store(e)
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	for i := 1; i <= 2; i++ {
		l := c.Leader(t)
		c.Members[l].Kill()
		var rev int64
		etcdtest.Eventually(t, 15*time.Second, "a put after the leader was killed", func() error {
			resp, err := writer.Put(t.Context(), prefix+"k", fmt.Sprint(i))
			if err == nil {
				rev = resp.Header.Revision
			}
			return err
		})
		etcdtest.Eventually(t, 15*time.Second, "mirrored after the leader change", atRevision(m, rev))
		c.Members[l].Restart()
	}
	close(stop)
	<-done
	if e := seen.Load(); e != nil {
		t.Errorf("the mapping reported an error during a leader change: %s", e)
	}
	treeIs(t, dir, map[string]string{"k": "2"}, "after two leader changes")
}
