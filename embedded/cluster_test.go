package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// clientURLs gathers the client URLs of members.
func clientURLs(ms ...*running) []string {
	var urls []string
	for _, m := range ms {
		urls = append(urls, m.ClientURLs()...)
	}
	return urls
}

// checkMembers fails unless the cluster lists exactly want (names), all
// started voting members.
func checkMembers(cli *clientv3.Client, want ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.MemberList(ctx)
	if err != nil {
		return err
	}
	var names []string
	for _, mb := range resp.Members {
		if mb.IsLearner {
			return fmt.Errorf("member %q (%x) is a learner", mb.Name, mb.ID)
		}
		names = append(names, mb.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, want) {
		return fmt.Errorf("members %q, want %q", names, want)
	}
	return nil
}

func TestStaticCluster(t *testing.T) {
	cfgs := clusterConfigs(t, 3)
	ms := startCluster(t, cfgs)
	cli := newClient(t, clientURLs(ms...)...)
	if err := checkMembers(cli, "n1", "n2", "n3"); err != nil {
		t.Fatal(err)
	}
	put(t, cli, "before", "1")

	if err := ms[2].stop(); err != nil {
		t.Fatalf("Run(n3): %v", err)
	}
	rest := newClient(t, clientURLs(ms[0], ms[1])...)
	put(t, rest, "during", "2")
	if got := get(t, newClient(t, ms[1].ClientURLs()...), "during"); got != "2" {
		t.Fatalf("get during from n2 = %q, want 2", got)
	}
	checkJoinRefused(t, ms[0], "n3")

	// The stopped member comes back from its data dir and catches up.
	ms[2] = mustRun(t, cfgs[2])
	if got := get(t, newClient(t, ms[2].ClientURLs()...), "during"); got != "2" {
		t.Fatalf("get during from restarted n3 = %q, want 2", got)
	}
	checkStopTogether(t, ms...)
}

// checkJoinRefused starts a member that joins via m while member down is
// down: Waiting says why, the log says it once, and when start_timeout
// ends the error says why and the data dir it created is gone.
func checkJoinRefused(t *testing.T, m *running, down string) {
	t.Helper()
	var logs etcdtest.LogBuffer
	cfg := testConfig(t, "n4")
	cfg.Join = m.ClientURLs()
	cfg.StartTimeout = 3 * time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	want := "joining via " + cfg.Join[0] + ": etcd refuses to add a member while " + down + " is down"
	j, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- j.Run(t.Context()) }()
	etcdtest.Eventually(t, 3*time.Second, "Waiting names the member down", func() error {
		if got := j.Waiting(); got != want {
			return fmt.Errorf("Waiting() = %q, want %q", got, want)
		}
		return nil
	})
	if err := <-done; err == nil || !strings.Contains(err.Error(), "start_timeout 3s: "+want) {
		t.Fatalf("Run = %v, want it to say %q", err, want)
	}
	if n := strings.Count(logs.String(), down+" is down"); n != 1 || strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("the wait logged %d times (want once), or an error:\n%s", n, logs.String())
	}
	if _, err := os.Stat(cfg.DataDir); !os.IsNotExist(err) {
		t.Errorf("data dir %s left by a refused join: %v", cfg.DataDir, err)
	}
	if j.Waiting() != "" {
		t.Errorf("Waiting() after a failed start = %q", j.Waiting())
	}
}

// checkStopTogether stops the members at once, as a cluster-wide shutdown
// does: the leader loses its quorum while it hands over its leadership, and
// still stops promptly, not after etcd's leadership transfer timeout (5s
// plus two election timeouts).
func checkStopTogether(t *testing.T, ms ...*running) {
	t.Helper()
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Go(func() {
			begin := time.Now()
			err := m.stop()
			if took := time.Since(begin); err != nil || took > 3*time.Second {
				t.Errorf("stop %s together with the others: %v after %s", m.Name(), err, took)
			}
		})
	}
	wg.Wait()
}

func TestJoin(t *testing.T) {
	ms := startCluster(t, clusterConfigs(t, 3))
	cli := newClient(t, clientURLs(ms...)...)

	cfg := testConfig(t, "n4")
	cfg.Join = clientURLs(ms...)
	m4 := mustRun(t, cfg)
	if err := checkMembers(cli, "n1", "n2", "n3", "n4"); err != nil {
		t.Fatal(err)
	}
	put(t, newClient(t, m4.ClientURLs()...), "via-n4", "4")
	if got := get(t, cli, "via-n4"); got != "4" {
		t.Fatalf("get via-n4 from the cluster = %q, want 4", got)
	}

	// A restart on the existing data dir does not add the member again.
	id := m4.ID()
	if err := m4.stop(); err != nil {
		t.Fatalf("Run(n4): %v", err)
	}
	m4 = mustRun(t, cfg)
	if m4.ID() != id {
		t.Errorf("ID after restart = %x, want %x", m4.ID(), id)
	}
	if err := checkMembers(cli, "n1", "n2", "n3", "n4"); err != nil {
		t.Fatal(err)
	}
	if got := get(t, newClient(t, m4.ClientURLs()...), "via-n4"); got != "4" {
		t.Fatalf("get via-n4 from restarted n4 = %q, want 4", got)
	}

	checkRemoved(t, cli, m4, cfg)
}

// checkRemoved removes the joined member m: its Run returns ErrRemoved, it
// cannot restart on its old data dir, and joins again with a fresh one.
func checkRemoved(t *testing.T, cli *clientv3.Client, m *running, cfg Config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := cli.MemberRemove(ctx, m.ID()); err != nil {
		t.Fatalf("member remove: %v", err)
	}
	if err := m.wait(t, 15*time.Second); !errors.Is(err, ErrRemoved) || !strings.Contains(err.Error(), cfg.DataDir) {
		t.Fatalf("Run of the removed member = %v, want ErrRemoved naming %s", err, cfg.DataDir)
	}
	portsFree(t, append(cfg.ListenClientURLs, cfg.ListenPeerURLs...)...)

	var logs etcdtest.LogBuffer
	again := cfg
	again.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	if err := runFails(t, again); !errors.Is(err, ErrRemoved) {
		t.Fatalf("Run of the removed member on its old data dir: %v, want ErrRemoved", err)
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("the refused restart logged errors before its own:\n%s", logs.String())
	}

	fresh := cfg
	fresh.DataDir = t.TempDir()
	rejoined := mustRun(t, fresh)
	if err := checkMembers(cli, "n1", "n2", "n3", "n4"); err != nil {
		t.Fatal(err)
	}
	if got := get(t, newClient(t, rejoined.ClientURLs()...), "via-n4"); got != "4" {
		t.Fatalf("get via-n4 from re-joined n4 = %q, want 4", got)
	}
}

func TestJoinReusesUnstartedMember(t *testing.T) {
	first := mustRun(t, testConfig(t, "n1"))
	cli := newClient(t, first.ClientURLs()...)

	cfg := testConfig(t, "n2")
	cfg.Join = first.ClientURLs()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	added, err := cli.MemberAddAsLearner(ctx, cfg.ListenPeerURLs) // an earlier attempt that never started
	if err != nil {
		t.Fatal(err)
	}

	m := mustRun(t, cfg)
	if m.ID() != added.Member.ID {
		t.Errorf("ID = %x, want the unstarted member's %x", m.ID(), added.Member.ID)
	}
	if err := checkMembers(cli, "n1", "n2"); err != nil {
		t.Fatal(err)
	}
	put(t, newClient(t, m.ClientURLs()...), "k", "v")
}

func TestJoinPeerURLOfStartedMember(t *testing.T) {
	first := mustRun(t, testConfig(t, "n1"))
	cfg := testConfig(t, "n2")
	cfg.Join = first.ClientURLs()
	cfg.ListenPeerURLs = []string{freeURL(t)}
	cfg.InitialAdvertisePeerURLs = first.PeerURLs() // says it is n1

	err := runFails(t, cfg)
	if msg := err.Error(); !strings.Contains(msg, `started member "n1"`) || !strings.Contains(msg, "member remove") {
		t.Fatalf("Run: %v; want it to name started member n1 and how to remove it", err)
	}
}

func TestJoinUnreachable(t *testing.T) {
	cfg := testConfig(t, "n2")
	cfg.Join = []string{freeURL(t)} // nothing listens there
	begin := time.Now()
	err := runFails(t, cfg)
	t.Logf("after %s", time.Since(begin))
	if msg := err.Error(); !strings.Contains(msg, cfg.Join[0]) || !strings.Contains(msg, "connection refused") || time.Since(begin) > 5*time.Second {
		t.Fatalf("Run: %v; want it to fail fast, naming %s and why", err, cfg.Join[0])
	}
}
