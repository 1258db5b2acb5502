package sidecar

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// testQuota is the quota_backend_bytes of the static cluster test's members:
// small, so that a few puts of large values raise a real NOSPACE alarm.
const testQuota = 4 << 20

// checkClusterView checks what GET /v1/cluster tells an operator, asked of
// r, a member of a cluster whose members have testQuota: the leader is the
// one endpoint that says it leads, whose lag is 0; every answering endpoint has
// a lag and its quota, an unreachable one (down) has neither; no alarms.
func checkClusterView(t *testing.T, r *running, down string) api.Cluster {
	t.Helper()
	cl, err := r.cli.Cluster(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if cl.AlarmsError != "" || len(cl.Alarms) != 0 {
		t.Errorf("alarms = %+v, error %q; want none", cl.Alarms, cl.AlarmsError)
	}
	leaders := 0
	for _, m := range cl.Members {
		ep := m.Endpoints[0]
		if ep.IsLeader {
			leaders++
		}
		if ep.IsLeader && (m.Name != cl.Leader || m.ID != cl.LeaderID || ep.RaftIndexLag == nil || *ep.RaftIndexLag != 0) {
			t.Errorf("leader endpoint %+v of %s; cluster leader %q (%s), want it with lag 0", ep, m.Name, cl.Leader, cl.LeaderID)
		}
		if (ep.RaftIndexLag == nil) != (m.Name == down) {
			t.Errorf("member %s: raft_index_lag %v; want one unless it is down (%q)", m.Name, ep.RaftIndexLag, down)
		}
		if m.Name != down && ep.DBSizeQuota != testQuota {
			t.Errorf("member %s: db_size_quota %d; want its quota_backend_bytes %d", m.Name, ep.DBSizeQuota, testQuota)
		}
	}
	if leaders != 1 || cl.Leader == "" || cl.Leader == down {
		t.Errorf("%d endpoints say they lead; leader = %q; want one member that answers", leaders, cl.Leader)
	}
	return cl
}

// checkNoSpace fills the cluster through r's member until etcd refuses a
// put for want of space, then checks that GET /v1/cluster shows the NOSPACE
// alarms, each on a member it names, and disarms them.
func checkNoSpace(t *testing.T, r *running) {
	t.Helper()
	cli := r.d.etcd.client()
	value := strings.Repeat("x", 1<<20)
	var err error
	for i := 0; i < 2*testQuota>>20 && err == nil; i++ {
		_, err = cli.Put(t.Context(), "/fill/"+strings.Repeat("k", i+1), value)
	}
	if !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Fatalf("filling a %d-byte quota: %v; want %v", testQuota, err, rpctypes.ErrNoSpace)
	}
	wait := time.Duration(0)
	_, err = r.cli.Lock(t.Context(), "nospace", &wait) // a hold needs a lease grant: refused
	if err == nil || !strings.Contains(err.Error(), "etcd unavailable: etcd is out of space (NOSPACE alarm)") ||
		strings.Contains(err.Error(), "lease:") || strings.Contains(err.Error(), "lock:") {
		t.Errorf("lock under NOSPACE: %v; want etcd unavailable: etcd is out of space…, without package prefixes", err)
	}
	cl := checkStatusAlarms(t, r)
	for _, a := range cl.Alarms { // raised by whichever members' db reached the quota
		if a.Alarm != "NOSPACE" || a.Member == "" || a.MemberID != memberID(cl, a.Member) {
			t.Errorf("alarm %+v; want NOSPACE naming a member", a)
		}
	}
	if _, err := cli.AlarmDisarm(t.Context(), &clientv3.AlarmMember{}); err != nil {
		t.Fatalf("disarm: %v", err)
	}
}

// checkStatusAlarms checks that the alarms status learns from a member's
// status (no raft request) are those of GET /v1/cluster, and that status
// and the metric show them once recorded; it returns the cluster. Each
// member raises its own alarm when its db reaches the quota, so the two
// are read until they agree.
func checkStatusAlarms(t *testing.T, r *running) api.Cluster {
	t.Helper()
	ids := func(as []api.Alarm) (out []string) {
		for _, a := range as {
			out = append(out, a.MemberID+" "+a.Alarm)
		}
		slices.Sort(out)
		return out
	}
	var cl api.Cluster
	var got []api.Alarm
	etcdtest.Eventually(t, 10*time.Second, "the same alarms in a member's status and GET /v1/cluster", func() error {
		var err error
		if cl, err = r.cli.Cluster(t.Context()); err != nil {
			return err
		}
		if len(cl.Alarms) == 0 || cl.AlarmsError != "" {
			return fmt.Errorf("cluster alarms = %+v, error %q; want NOSPACE", cl.Alarms, cl.AlarmsError)
		}
		if got, err = statusAlarms(t.Context(), r.d.etcd.client()); err != nil {
			return fmt.Errorf("alarms from a member's status: %w", err)
		}
		if !slices.Equal(ids(got), ids(cl.Alarms)) {
			return fmt.Errorf("alarms from a member's status %v, GET /v1/cluster %v", ids(got), ids(cl.Alarms))
		}
		return nil
	})
	want := cl.Alarms
	r.d.setAlarms(got)
	if st := r.d.etcdStatus(); !slices.Equal(ids(st.Alarms), ids(want)) {
		t.Errorf("status alarms %+v, want %v", st.Alarms, ids(want))
	}
	m := get(t, r.cli, "/metrics", http.StatusOK)
	if n := metricValue(m, `sidecar_etcd_alarms{alarm="NOSPACE"}`); n != float64(len(want)) {
		t.Errorf("sidecar_etcd_alarms{alarm=NOSPACE} = %v, want %d", n, len(want))
	}
	return cl
}
