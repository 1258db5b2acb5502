package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sidecar-dev/sidecar/api"
)

func newStatusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [--json]",
		Short: "Show the daemon, etcd connection, registration, config mappings, locks and leaderships",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := newClient(cmd).Status(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONOut(cmd.OutOrStdout(), st)
			}
			printStatus(cmd.OutOrStdout(), st)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON (stable)")
	return cmd
}

func writeJSONOut(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// writeJSONLine writes v as one line of JSON (for streams).
func writeJSONLine(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func printStatus(out io.Writer, st api.Status) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	defer w.Flush()
	fmt.Fprintf(w, "node:\t%s (pid %d, up %.0fs, version %s)\n", st.Node, st.PID, st.UptimeS, st.Version)
	conn := "connected"
	if !st.Etcd.Connected {
		conn = "NOT connected"
	}
	fmt.Fprintf(w, "etcd:\t%s mode, %s (%s) to %s\n", st.Etcd.Mode, conn, st.Etcd.ConnState, strings.Join(st.Etcd.Endpoints, ", "))
	if st.Etcd.Waiting != "" {
		fmt.Fprintf(w, "  waiting:\t%s\n", st.Etcd.Waiting)
	}
	if st.Etcd.LastError != "" {
		fmt.Fprintf(w, "  last error:\t%s\n", st.Etcd.LastError)
	}
	for _, a := range st.Etcd.Alarms {
		fmt.Fprintf(w, "  alarm:\t%s (see `sidecar cluster`)\n", a)
	}
	if m := st.Etcd.Member; m != nil {
		id := m.ID
		if id == "" {
			id = "not known yet"
		}
		fmt.Fprintf(w, "  member:\t%s (id %s) peers %s, data %s\n", m.Name, id, strings.Join(m.PeerURLs, ","), m.DataDir)
	}
	if r := st.Registration; r != nil {
		fmt.Fprintf(w, "registration:\t%s %s at %s weight %d: %s (lease %s, ttl %.1fs left, re-registered %d times)\n",
			r.Service, r.ID, r.Addr, r.Weight, r.State, r.LeaseID, r.TTLRemainingS, r.Reregistrations)
		if r.Check != "" && r.Check != "none" {
			fmt.Fprintf(w, "  check:\t%s %s\n", r.Check, r.CheckError)
		}
		if r.LastError != "" {
			fmt.Fprintf(w, "  last error:\t%s\n", r.LastError)
		}
	} else {
		fmt.Fprintf(w, "registration:\tnone (no service configured)\n")
	}
	if len(st.Config) == 0 {
		fmt.Fprintf(w, "config:\tnone\n")
	}
	for _, m := range st.Config {
		fmt.Fprintf(w, "config:\t%s -> %s: rev %d, %d files, %d rejected %s\n", m.Prefix, m.Dir, m.Revision, m.Files, m.Rejected, m.LastError)
	}
	printHolds(w, "locks", st.Locks)
	printHolds(w, "elections", st.Elections)
}

func printHolds(w io.Writer, what string, hs []api.Hold) {
	if len(hs) == 0 {
		fmt.Fprintf(w, "%s:\tnone\n", what)
	}
	for _, h := range hs {
		if h.Waiting {
			fmt.Fprintf(w, "%s:\t%s waiting since %s (pid %d)\n", what, h.Name, h.WaitingSince, h.PID)
			continue
		}
		fmt.Fprintf(w, "%s:\t%s fence %d (pid %d)\n", what, h.Name, h.Fence, h.PID)
	}
}
