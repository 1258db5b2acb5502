package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/dustin/go-humanize"
	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/tw"
	"github.com/spf13/cobra"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/internal/etcdclient"
)

func newClusterCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "cluster [--json]",
		Short: "etcd members and endpoint status, like `etcdctl endpoint status --cluster -w table`, with the leader, raft lag, quota and alarms",
		Long: `Lists the etcd members and asks each client endpoint for its status, like
` + "`etcdctl endpoint status --cluster -w table`" + `, adding what an operator decides on:
the leader, each endpoint's raft index lag behind the leader, the db size
against the member's quota (reported by etcd 3.6 and later) and the
cluster's active alarms (NOSPACE, CORRUPT).
An endpoint that does not answer within a short bound is shown as unreachable.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := newClient(cmd).Cluster(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONOut(cmd.OutOrStdout(), cl)
			}
			return printCluster(cmd.OutOrStdout(), cl)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print members, endpoint status, leader and alarms as JSON (stable)")
	return cmd
}

// printCluster writes the members as a table, then a summary line and, with
// a NOSPACE alarm active, what to do.
func printCluster(out io.Writer, cl api.Cluster) error {
	table := tablewriter.NewTable(out, tablewriter.WithConfig(
		tablewriter.NewConfigBuilder().WithRowAlignment(tw.AlignRight).Build()))
	table.Header([]string{"ID", "NAME", "ENDPOINT", "VERSION", "DB SIZE", "IN USE", "QUOTA", "IS LEADER", "IS LEARNER",
		"RAFT TERM", "RAFT INDEX", "RAFT LAG", "RAFT APPLIED INDEX", "ERRORS"})
	for _, m := range cl.Members {
		if len(m.Endpoints) == 0 { // a member added but not started yet
			table.Append([]string{m.ID, m.Name, "(not started)", "", "", "", "", "", fmt.Sprint(m.IsLearner), "", "", "", "", ""})
		}
		for _, ep := range m.Endpoints {
			table.Append(endpointRow(m, ep, cl.AlarmsError == ""))
		}
	}
	if err := table.Render(); err != nil {
		return fmt.Errorf("render table: %w", err)
	}
	fmt.Fprintln(out, clusterSummary(cl))
	for _, a := range cl.Alarms {
		if a.Alarm == "NOSPACE" {
			fmt.Fprintln(out, "NOSPACE: a member's db reached its quota; "+etcdclient.NoSpaceAdvice)
			break
		}
	}
	return nil
}

// endpointRow is the table row of one endpoint of m. With alarmsShown (the
// summary line names them), etcd's alarm errors ("memberID:… alarm:NOSPACE")
// are left out of ERRORS.
func endpointRow(m api.Member, ep api.EndpointStatus, alarmsShown bool) []string {
	if ep.Error != "" {
		return []string{m.ID, m.Name, ep.Endpoint, "", "", "", "", "", fmt.Sprint(m.IsLearner), "", "", "", "", "unreachable: " + ep.Error}
	}
	quota := "unknown"
	if ep.DBSizeQuota > 0 {
		quota = fmt.Sprintf("%s (%d%% used)", humanize.IBytes(uint64(ep.DBSizeQuota)), ep.DBSize*100/ep.DBSizeQuota)
	}
	var errs []string
	for _, e := range ep.Errors {
		if !alarmsShown || !strings.Contains(e, "alarm:") {
			errs = append(errs, e)
		}
	}
	lag := ""
	if ep.RaftIndexLag != nil {
		lag = fmt.Sprint(*ep.RaftIndexLag)
	}
	return []string{m.ID, m.Name, ep.Endpoint, ep.Version, humanize.IBytes(uint64(ep.DBSize)), humanize.IBytes(uint64(ep.DBSizeInUse)),
		quota, fmt.Sprint(ep.IsLeader), fmt.Sprint(m.IsLearner), fmt.Sprint(ep.RaftTerm), fmt.Sprint(ep.RaftIndex), lag,
		fmt.Sprint(ep.RaftApplied), strings.Join(errs, ", ")}
}

// clusterSummary is the line under the table: e.g. "cluster id 8e9e05c52164694d,
// 3 members (1 learner, 1 unreachable), leader etcd01, alarms: none".
func clusterSummary(cl api.Cluster) string {
	var learners, unreachable int
	for _, m := range cl.Members {
		if m.IsLearner {
			learners++
		}
		for _, ep := range m.Endpoints {
			if ep.Error != "" {
				unreachable++
				break
			}
		}
	}
	var notes []string
	if learners > 0 {
		notes = append(notes, plural(learners, "learner"))
	}
	if unreachable > 0 {
		notes = append(notes, fmt.Sprintf("%d unreachable", unreachable))
	}
	members := plural(len(cl.Members), "member")
	if len(notes) > 0 {
		members += " (" + strings.Join(notes, ", ") + ")"
	}
	leader := "no leader"
	if cl.Leader != "" {
		leader = "leader " + cl.Leader
	}
	return fmt.Sprintf("cluster id %s, %s, %s, alarms: %s", cl.ClusterID, members, leader, alarmsText(cl))
}

// alarmsText words the cluster's alarms: "none", "NOSPACE on etcd01", or
// why they are unknown.
func alarmsText(cl api.Cluster) string {
	if cl.AlarmsError != "" {
		return "unknown (" + cl.AlarmsError + ")"
	}
	if len(cl.Alarms) == 0 {
		return "none"
	}
	parts := make([]string, len(cl.Alarms))
	for i, a := range cl.Alarms {
		parts[i] = a.String()
	}
	return strings.Join(parts, ", ")
}
