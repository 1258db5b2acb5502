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
)

func newClusterCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "cluster [--json]",
		Short: "etcd members and endpoint status, like `etcdctl endpoint status --cluster -w table`",
		Args:  cobra.NoArgs,
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
	cmd.Flags().BoolVar(&asJSON, "json", false, "print members and endpoint status as JSON (stable)")
	return cmd
}

func printCluster(out io.Writer, cl api.Cluster) error {
	table := tablewriter.NewTable(out, tablewriter.WithConfig(
		tablewriter.NewConfigBuilder().WithRowAlignment(tw.AlignRight).Build()))
	table.Header([]string{"ID", "NAME", "ENDPOINT", "VERSION", "DB SIZE", "IN USE", "IS LEADER", "IS LEARNER", "RAFT TERM", "RAFT INDEX", "RAFT APPLIED INDEX", "ERRORS"})
	for _, m := range cl.Members {
		if len(m.Endpoints) == 0 { // a member added but not started yet
			table.Append([]string{m.ID, m.Name, "(not started)", "", "", "", "", fmt.Sprint(m.IsLearner), "", "", "", ""})
		}
		for _, ep := range m.Endpoints {
			row := []string{m.ID, m.Name, ep.Endpoint, ep.Version, humanize.Bytes(uint64(ep.DBSize)), humanize.Bytes(uint64(ep.DBSizeInUse)),
				fmt.Sprint(ep.IsLeader), fmt.Sprint(m.IsLearner), fmt.Sprint(ep.RaftTerm), fmt.Sprint(ep.RaftIndex), fmt.Sprint(ep.RaftApplied),
				strings.Join(ep.Errors, ", ")}
			if ep.Error != "" {
				row = []string{m.ID, m.Name, ep.Endpoint, "", "", "", "", fmt.Sprint(m.IsLearner), "", "", "", "unreachable: " + ep.Error}
			}
			table.Append(row)
		}
	}
	if err := table.Render(); err != nil {
		return fmt.Errorf("render table: %w", err)
	}
	fmt.Fprintf(out, "cluster id %s, %s\n", cl.ClusterID, plural(len(cl.Members), "member"))
	return nil
}
