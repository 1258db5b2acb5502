package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/client"
)

func newConfigCmd() *cobra.Command {
	var asJSON, watch bool
	cmd := &cobra.Command{
		Use:   "config [--watch] [--json]",
		Short: "Show the config mappings: prefix, directory, applied revision, files, rejected keys, last error (--watch: each batch as it lands); `config example` prints a full configuration file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if watch {
				return watchConfig(cmd.Context(), newClient(cmd), cmd.OutOrStdout(), asJSON)
			}
			cm, err := newClient(cmd).Config(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONOut(cmd.OutOrStdout(), cm)
			}
			printMappings(cmd.OutOrStdout(), cm.Mappings)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (one object per line with --watch)")
	cmd.Flags().BoolVar(&watch, "watch", false, "print each batch of changes once it is on disk")
	cmd.AddCommand(newConfigExampleCmd())
	return cmd
}

// watchConfig prints each batch until ctx is cancelled (nil) or the daemon
// goes away (an error matching client.ErrDaemonGone).
func watchConfig(ctx context.Context, c *client.Client, out io.Writer, asJSON bool) error {
	st, err := c.WatchConfig(ctx)
	if err != nil {
		return endOfWatch(ctx, err)
	}
	defer st.Close()
	for {
		b, err := st.Next()
		if err != nil {
			return endOfWatch(ctx, err)
		}
		if asJSON {
			err = writeJSONLine(out, b)
		} else {
			_, err = fmt.Fprintf(out, "%s rev %d: changed %v deleted %v\n", b.Prefix, b.Revision, b.Changed, b.Deleted)
		}
		if err != nil {
			return err
		}
	}
}

func printMappings(out io.Writer, ms []api.ConfigMapping) {
	if len(ms) == 0 {
		fmt.Fprintln(out, "no config mappings (config: in the configuration file)")
		return
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	defer w.Flush()
	fmt.Fprintln(w, "PREFIX\tDIR\tLAYOUT\tREVISION\tFILES\tREJECTED\tLAG\tLAST ERROR")
	for _, m := range ms {
		lag := "0s"
		if m.LagS > 0 {
			lag = (time.Duration(m.LagS * float64(time.Second))).Round(100 * time.Millisecond).String()
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", m.Prefix, m.Dir, m.Layout, m.Revision, m.Files, m.Rejected, lag, m.LastError)
	}
}
