package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/sidecar-dev/sidecar/api"
)

// The table and the summary line say what an operator decides on: the
// leader, learners, unreachable members, quota use, lag and alarms, in
// words; etcd's raw alarm strings are left out of ERRORS once the summary
// names the alarms.
func TestPrintCluster(t *testing.T) {
	lag := uint64(3)
	ep := api.EndpointStatus{Endpoint: "http://127.0.0.1:2379", Version: "3.7.3", DBSize: 12 << 20, DBSizeQuota: 16 << 20,
		RaftIndex: 40, RaftIndexLag: &lag, Errors: []string{"memberID:11999028835536592115  alarm:NOSPACE"}}
	members := []api.Member{
		{ID: "a1", Name: "etcd01", Endpoints: []api.EndpointStatus{ep}},
		{ID: "b2", Name: "etcd02", Endpoints: []api.EndpointStatus{{Endpoint: "http://127.0.0.1:2479", Error: "connection refused"}}},
		{ID: "c3", IsLearner: true},
	}
	cases := []struct {
		name    string
		cl      api.Cluster
		want    []string
		notWant []string
	}{
		{"alarm", api.Cluster{ClusterID: "f00", Members: members, Leader: "etcd01", Alarms: []api.Alarm{{MemberID: "a1", Member: "etcd01", Alarm: "NOSPACE"}}},
			[]string{"cluster id f00, 3 members (1 learner, 1 unreachable), leader etcd01, alarms: NOSPACE on etcd01\n",
				"16 MiB (75% used)", "12 MiB", "│        3 │", "unreachable: connection refused", "(not started)", "NOSPACE: a member's db reached its quota"},
			[]string{"memberID:"}},
		{"alarms unknown", api.Cluster{ClusterID: "f00", Members: members[1:2], AlarmsError: "no answer within 1s"},
			[]string{"cluster id f00, 1 member (1 unreachable), no leader, alarms: unknown (no answer within 1s)\n"},
			[]string{"NOSPACE"}},
		{"healthy, old etcd", api.Cluster{ClusterID: "f00", Members: []api.Member{{ID: "a1", Name: "etcd01",
			Endpoints: []api.EndpointStatus{{Endpoint: "http://127.0.0.1:2379", IsLeader: true}}}}, Leader: "etcd01", Alarms: []api.Alarm{}},
			[]string{"cluster id f00, 1 member, leader etcd01, alarms: none\n", "unknown"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := printCluster(&out, c.cl); err != nil {
				t.Fatal(err)
			}
			for _, w := range c.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			for _, w := range c.notWant {
				if strings.Contains(out.String(), w) {
					t.Errorf("output has %q:\n%s", w, out.String())
				}
			}
		})
	}
}

// Status names each active alarm of etcd, and where to look further.
func TestPrintStatusAlarms(t *testing.T) {
	var out bytes.Buffer
	st := api.Status{Node: "n1", Etcd: api.EtcdStatus{Mode: "join", Connected: true, ConnState: "READY",
		Alarms: []api.Alarm{{MemberID: "a6849a46b4a7d7f3", Alarm: "NOSPACE"}}}}
	printStatus(&out, st)
	if want := "NOSPACE on member a6849a46b4a7d7f3 (see `sidecar cluster`)"; !strings.Contains(out.String(), "  alarm:") || !strings.Contains(out.String(), want) {
		t.Errorf("status:\n%s\nwant a line %q", out.String(), want)
	}
}
