package sidecar

import (
	"cmp"
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/internal/etcdclient"
)

// alarmPoll is how often the daemon asks etcd for its active alarms
// (NOSPACE, CORRUPT), so that status, the log and the sidecar_etcd_alarms
// metric say so without a request waiting on etcd; GET /v1/cluster asks
// afresh.
const alarmPoll = 10 * time.Second

// alarmPattern reads an alarm from a member's status errors, where etcd
// writes each active alarm of the cluster as "memberID:N alarm:NAME".
var alarmPattern = regexp.MustCompile(`memberID:(\d+)\s+alarm:([A-Z_]+)`)

// alarmTypes are the alarms the metric has a series for, each 0 or the
// number of members with it.
var alarmTypes = []pb.AlarmType{pb.AlarmType_NOSPACE, pb.AlarmType_CORRUPT}

// watchAlarms asks etcd for its alarms now and every alarmPoll until ctx
// ends. An unanswered request keeps what was known: the liveness monitor
// reports a silent etcd.
func (d *Daemon) watchAlarms(ctx context.Context, cli *clientv3.Client) {
	t := time.NewTicker(alarmPoll)
	defer t.Stop()
	for {
		if alarms, err := statusAlarms(ctx, cli); err == nil {
			d.setAlarms(alarms)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// statusAlarms asks the member the client talks to for its status, on
// the client's connection, and returns the alarms it lists. Unlike the
// alarm list of GET /v1/cluster it is no raft request: a member answers
// from what it has applied, which a fleet of sidecars asking every few
// seconds must not turn into proposals.
func statusAlarms(ctx context.Context, cli *clientv3.Client) ([]api.Alarm, error) {
	ctx, cancel := context.WithTimeout(ctx, alarmTimeout)
	defer cancel()
	resp, err := pb.NewMaintenanceClient(cli.ActiveConnection()).Status(ctx, &pb.StatusRequest{})
	if err != nil {
		return nil, err
	}
	var out []api.Alarm
	for _, e := range resp.Errors {
		if m := alarmPattern.FindStringSubmatch(e); m != nil {
			id, err := strconv.ParseUint(m[1], 10, 64)
			if err != nil {
				continue
			}
			out = append(out, api.Alarm{MemberID: fmt.Sprintf("%x", id), Alarm: m[2]})
		}
	}
	// etcd lists them in no set order; sorted, an unchanged set compares equal.
	slices.SortFunc(out, func(a, b api.Alarm) int {
		return cmp.Or(cmp.Compare(a.MemberID, b.MemberID), cmp.Compare(a.Alarm, b.Alarm))
	})
	return out, nil
}

// setAlarms records etcd's active alarms, and logs and counts a change.
func (d *Daemon) setAlarms(now []api.Alarm) {
	d.etcd.mu.Lock()
	before := d.etcd.alarms
	d.etcd.alarms = now
	d.etcd.mu.Unlock()
	if slices.Equal(before, now) {
		return
	}
	for _, t := range alarmTypes {
		n := 0
		for _, a := range now {
			if a.Alarm == t.String() {
				n++
			}
		}
		d.metrics.alarms.WithLabelValues(t.String()).Set(float64(n))
	}
	switch {
	case len(now) == 0:
		d.log.Info("etcd alarms cleared")
	case hasNoSpace(now):
		d.log.Warn("etcd raised an alarm", "alarms", alarmWords(now), "means", etcdclient.NoSpaceAdvice)
	default:
		d.log.Warn("etcd raised an alarm", "alarms", alarmWords(now))
	}
}

// alarmWords is alarms as people read them: "NOSPACE on member 8e9e…".
func alarmWords(alarms []api.Alarm) []string {
	var out []string
	for _, a := range alarms {
		out = append(out, a.String())
	}
	return out
}

func hasNoSpace(alarms []api.Alarm) bool {
	return slices.ContainsFunc(alarms, func(a api.Alarm) bool { return a.Alarm == pb.AlarmType_NOSPACE.String() })
}
