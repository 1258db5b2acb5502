package sidecar

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/sidecar-dev/sidecar/api"
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

// The classic three-node layout as three sidecars: each serves, a fourth
// sidecar joins the running cluster as a new member, and the cluster keeps
// serving with one member stopped.
func TestDaemonStaticClusterAndJoin(t *testing.T) {
	cfgs := clusterNodes(t, 3)
	nodes := startCluster(t, cfgs)
	cl, err := nodes[0].cli.Cluster(t.Context())
	if err != nil || len(cl.Members) != 3 {
		t.Fatalf("cluster = %+v, %v", cl, err)
	}
	leaders := 0
	for _, m := range cl.Members {
		if m.Endpoints[0].IsLeader {
			leaders++
		}
	}
	if leaders != 1 {
		t.Fatalf("%d leaders in %+v", leaders, cl)
	}

	j := embeddedConfig(t)
	j.Name = "etcd04"
	j.Embedded.HeartbeatInterval, j.Embedded.ElectionTimeout = 50*time.Millisecond, 500*time.Millisecond
	j.Embedded.Join = append(cfgs[0].Embedded.ListenClientURLs, cfgs[1].Embedded.ListenClientURLs...)
	n4 := startDaemon(t, j)
	cl, err = n4.cli.Cluster(t.Context())
	if err != nil || len(cl.Members) != 4 {
		t.Fatalf("after join = %+v, %v", cl, err)
	}
	for _, m := range cl.Members {
		if m.Name == "etcd04" && (m.IsLearner || m.Endpoints[0].Error != "") {
			t.Fatalf("joined member not a serving voter: %+v", m)
		}
	}
	if err := nodes[2].stop(); err != nil {
		t.Fatalf("stop node 3: %v", err)
	}
	waitHealthy(t, nodes[0])
	waitHealthy(t, nodes[1])
	cl, err = nodes[1].cli.Cluster(t.Context())
	if err != nil || len(cl.Members) != 4 {
		t.Fatalf("cluster with one down = %+v, %v", cl, err)
	}
	down := 0
	for _, m := range cl.Members {
		if m.Endpoints[0].Error != "" {
			down++
		}
	}
	if down != 1 {
		t.Fatalf("want exactly the stopped member unreachable: %+v", cl)
	}
	waitHealthy(t, n4)

	// The stopped sidecar comes back on its data dir as the same member.
	back := startDaemon(t, cfgs[2])
	st, err := back.cli.Status(t.Context())
	if err != nil || st.Etcd.Member == nil || st.Etcd.Member.ID != memberID(cl, "etcd03") {
		t.Fatalf("restarted member = %+v, %v; want id %s", st.Etcd.Member, err, memberID(cl, "etcd03"))
	}
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
