package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sidecar-dev/sidecar/api"
)

func newConfigCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "config [--json]",
		Short: "Show the config mappings: prefix, directory, applied revision, files, rejected keys, last error",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the mappings as JSON (stable)")
	return cmd
}

func printMappings(out io.Writer, ms []api.ConfigMapping) {
	if len(ms) == 0 {
		fmt.Fprintln(out, "no config mappings (config: in the configuration file)")
		return
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	defer w.Flush()
	fmt.Fprintln(w, "PREFIX\tDIR\tREVISION\tFILES\tREJECTED\tLAST ERROR")
	for _, m := range ms {
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%s\n", m.Prefix, m.Dir, m.Revision, m.Files, m.Rejected, m.LastError)
	}
}
