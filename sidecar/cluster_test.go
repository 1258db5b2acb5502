package sidecar

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/client"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// clusterNode is the config of one sidecar of a static cluster on loopback.
func clusterNodes(t *testing.T, n int) []Config {
	t.Helper()
	cfgs := make([]Config, n)
	var peers []string
	for i := range cfgs {
		c := embeddedConfig(t)
		c.Name = fmt.Sprintf("etcd%02d", i+1)
		c.Embedded.HeartbeatInterval, c.Embedded.ElectionTimeout = 50*time.Millisecond, 500*time.Millisecond
		c.Embedded.InitialClusterToken = "test-cluster"
		peers = append(peers, c.Name+"="+c.Embedded.ListenPeerURLs[0])
		cfgs[i] = c
	}
	for i := range cfgs {
		cfgs[i].Embedded.InitialCluster = strings.Join(peers, ",")
	}
	return cfgs
}

// startCluster starts the sidecars of a new static cluster together (each
// waits for a quorum) and returns them once all are ready.
func startCluster(t *testing.T, cfgs []Config) []*running {
	t.Helper()
	nodes, errs := make([]*running, len(cfgs)), make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i := range cfgs {
		wg.Go(func() { nodes[i], errs[i] = launch(t, cfgs[i]) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i+1, err)
		}
	}
	return nodes
}

// The classic three-node layout as three sidecars: each serves; with
// etcd02 down, `cluster` answers at once naming it, and a fourth sidecar
// that joins says in status, health, cluster and its log (once) that it
// waits for etcd02; etcd02 comes back on its data dir as the same member,
// the fourth joins as a voter without an error line, and stops cleanly
// without a warning; `cluster` names the leader, each member's raft lag and
// quota and, once the cluster is filled, the NOSPACE alarm;
// the three stopped together stop promptly.
func TestDaemonStaticClusterAndJoin(t *testing.T) {
	cfgs := clusterNodes(t, 3)
	for i := range cfgs {
		cfgs[i].Embedded.QuotaBackendBytes = testQuota
	}
	nodes := startCluster(t, cfgs)
	cl := checkClusterView(t, nodes[0], "")
	if len(cl.Members) != 3 {
		t.Fatalf("cluster = %+v", cl)
	}
	id2 := memberID(cl, "etcd02")
	if err := nodes[1].stop(); err != nil {
		t.Fatalf("stop etcd02: %v", err)
	}
	checkOneDown(t, nodes[0], "etcd02")
	checkClusterView(t, nodes[0], "etcd02")

	j := embeddedConfig(t)
	j.Name = "etcd04"
	j.Embedded.HeartbeatInterval, j.Embedded.ElectionTimeout = 50*time.Millisecond, 500*time.Millisecond
	j.Embedded.Join = cfgs[0].Embedded.ListenClientURLs
	n4 := startLogged(t, j)
	want := "joining via " + j.Embedded.Join[0] + ": etcd refuses to add a member while etcd02 is down"
	checkWaiting(t, n4, want)

	back := startDaemon(t, cfgs[1]) // etcd02 comes back on its data dir as the same member
	st, err := back.cli.Status(t.Context())
	if err != nil || st.Etcd.Member == nil || st.Etcd.Member.ID != id2 {
		t.Fatalf("restarted member = %+v, %v; want id %s", st.Etcd.Member, err, id2)
	}
	select {
	case <-n4.d.Ready():
	case <-time.After(30 * time.Second):
		t.Fatalf("etcd04 not ready 30s after etcd02 came back; log:\n%s", n4.log)
	}
	cl, err = n4.cli.Cluster(t.Context())
	if err != nil || len(cl.Members) != 4 {
		t.Fatalf("after join = %+v, %v", cl, err)
	}
	for _, m := range cl.Members {
		if m.Name == "etcd04" && (m.IsLearner || m.Endpoints[0].Error != "") {
			t.Fatalf("joined member not a serving voter: %+v", m)
		}
	}
	if lines := logLines(n4.log.String(), "level=ERROR"); len(lines) > 0 {
		t.Errorf("a successful join logged errors:\n%s", strings.Join(lines, "\n"))
	}
	if lines := logLines(n4.log.String(), "etcd02 is down"); len(lines) != 1 {
		t.Errorf("the wait for etcd02 logged %d times, want once:\n%s", len(lines), n4.log)
	}

	mark := len(n4.log.String())
	if err := n4.stop(); err != nil {
		t.Fatalf("stop etcd04: %v", err)
	}
	if lines := logLines(n4.log.String()[mark:], "level=WARN", "level=ERROR"); len(lines) > 0 {
		t.Errorf("a clean stop logged warnings or errors:\n%s", strings.Join(lines, "\n"))
	}
	checkNoSpace(t, nodes[0])
	checkStopTogether(t, nodes[0], back, nodes[2])
}

// checkOneDown asks r for the cluster with member down stopped: the answer
// comes well within the 3s it once took, and names down's endpoint and why.
func checkOneDown(t *testing.T, r *running, down string) {
	t.Helper()
	begin := time.Now()
	cl, err := r.cli.Cluster(t.Context())
	took := time.Since(begin)
	if err != nil || len(cl.Members) != 3 || took > 2*time.Second {
		t.Fatalf("cluster with %s down = %+v, %v after %s", down, cl, err, took)
	}
	for _, m := range cl.Members {
		got := m.Endpoints[0].Error
		if (m.Name == down) != (got != "") || (m.Name == down && got != "connection refused") {
			t.Errorf("member %s: endpoint error %q; want \"connection refused\" for %s only", m.Name, got, down)
		}
	}
}

// checkWaiting waits until r's status says it waits for want, then checks
// that health and cluster say so too.
func checkWaiting(t *testing.T, r *loggedDaemon, want string) {
	t.Helper()
	waitFor(t, "status says why the join waits", 15*time.Second, func() bool {
		st, err := r.cli.Status(t.Context())
		return err == nil && st.Etcd.Waiting == want
	})
	st, _ := r.cli.Status(t.Context())
	if st.Etcd.Mode != "embedded" || st.Etcd.Connected || len(st.Etcd.Endpoints) != 1 || st.Etcd.Member == nil {
		t.Errorf("status while waiting = %+v", st.Etcd)
	}
	if ms := st.UptimeS * 1000; math.Abs(ms-math.Round(ms)) > 1e-6 {
		t.Errorf("uptime_s = %v, want it rounded to milliseconds", st.UptimeS)
	}
	h, err := r.cli.Health(t.Context())
	if c := h.Components["etcd"]; err != nil || h.Healthy || c.State != api.StateStarting || c.Error != want {
		t.Errorf("health while waiting = %+v, %v; want etcd starting: %s", h, err, want)
	}
	if _, err := r.cli.Cluster(t.Context()); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("cluster while waiting: %v; want it to say %q", err, want)
	}
}

// checkStopTogether stops the sidecars at once, as a cluster-wide shutdown
// does: the leader loses its quorum while it hands over its leadership, and
// still stops promptly, not after etcd's leadership transfer timeout (7s
// with the default election timeout, 6s with the tests' one).
func checkStopTogether(t *testing.T, rs ...*running) {
	t.Helper()
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Go(func() {
			begin := time.Now()
			err := r.stop()
			if took := time.Since(begin); err != nil || took > 3*time.Second {
				t.Errorf("stop together: %v after %s", err, took)
			}
		})
	}
	wg.Wait()
}

// loggedDaemon is a daemon run by startLogged.
type loggedDaemon struct {
	d    *Daemon
	cli  *client.Client
	log  *etcdtest.LogBuffer
	stop func() error // cancels Run and returns its error
}

// startLogged runs a daemon of cfg, logging at info (the default level) into
// a buffer, until stop or the end of the test; it does not wait until the
// daemon is ready.
func startLogged(t *testing.T, cfg Config) *loggedDaemon {
	t.Helper()
	buf := new(etcdtest.LogBuffer)
	d, err := New(cfg, slog.New(slog.NewTextHandler(buf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var result error
	done := make(chan struct{})
	go func() { result = d.Run(ctx); close(done) }()
	stop := func() error {
		cancel()
		<-done
		return result
	}
	t.Cleanup(func() { stop() })
	return &loggedDaemon{d: d, cli: client.New(cfg.SocketPath()), log: buf, stop: stop}
}

// logLines returns the lines of log that contain any of subs.
func logLines(log string, subs ...string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		for _, s := range subs {
			if strings.Contains(l, s) {
				out = append(out, l)
				break
			}
		}
	}
	return out
}

func memberID(cl api.Cluster, name string) string {
	for _, m := range cl.Members {
		if m.Name == name {
			return m.ID
		}
	}
	return ""
}

func waitHealthy(t *testing.T, r *running) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		h, err := r.cli.Health(t.Context())
		if err == nil && h.Healthy {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not healthy: %+v %v", h, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A leader change in a three-member cluster never leaves the instance
// silently absent: after the move the key is there and the state is
// registered.
func TestRegistrationSurvivesLeaderChange(t *testing.T) {
	cfgs := clusterNodes(t, 3)
	cfgs[0] = withService(cfgs[0], "orders", 8080)
	nodes := startCluster(t, cfgs)
	waitFor(t, "registered", 5*time.Second, func() bool { return registered(t, nodes[0].cli) })
	key := "/sidecar/services/orders/orders-etcd01-8080"
	for round := 0; round < 3; round++ {
		cl, err := nodes[0].cli.Cluster(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var leaderURL string
		var target uint64
		for _, m := range cl.Members {
			id, _ := strconv.ParseUint(m.ID, 16, 64)
			if m.Endpoints[0].IsLeader {
				leaderURL = m.ClientURLs[0]
			} else {
				target = id
			}
		}
		lc, err := clientv3.New(clientv3.Config{Endpoints: []string{leaderURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		_, err = lc.MoveLeader(t.Context(), target)
		lc.Close()
		if err != nil {
			t.Fatalf("move leader: %v", err)
		}
		waitFor(t, "key present after leader change", 5*time.Second, func() bool {
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			c := nodes[1].d.etcd.client()
			resp, err := c.Get(ctx, key)
			return err == nil && len(resp.Kvs) == 1 && registered(t, nodes[0].cli)
		})
	}
}
