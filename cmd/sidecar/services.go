package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/client"
	"github.com/sidecar-dev/sidecar/registry"
)

func newServicesCmd() *cobra.Command {
	var asJSON, watch bool
	cmd := &cobra.Command{
		Use:   "services [NAME] [--watch] [--json]",
		Short: "List service names, or one service's instances with weights",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, out := newClient(cmd), cmd.Context(), cmd.OutOrStdout()
			switch {
			case len(args) == 0 && watch:
				return &exitError{code: 2, err: errors.New("sidecar: --watch needs a service NAME")}
			case len(args) == 0:
				return listServices(ctx, c, out, asJSON)
			case watch:
				return watchService(ctx, c, out, args[0], asJSON)
			}
			s, err := c.Service(ctx, args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONOut(out, s)
			}
			return printService(out, s, false)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (one object per line with --watch)")
	cmd.Flags().BoolVar(&watch, "watch", false, "print the instances again after every change")
	return cmd
}

// listServices prints the names of the registered services.
func listServices(ctx context.Context, c *client.Client, out io.Writer, asJSON bool) error {
	names, err := c.Services(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSONOut(out, api.Services{Services: names})
	}
	for _, n := range names {
		fmt.Fprintln(out, n)
	}
	return nil
}

// watchService prints the service now and after every change until ctx is
// cancelled (nil) or the daemon goes away (an error matching
// client.ErrDaemonGone, whose one line names the socket).
func watchService(ctx context.Context, c *client.Client, out io.Writer, name string, asJSON bool) error {
	st, err := c.WatchService(ctx, name)
	if err != nil {
		return endOfWatch(ctx, err)
	}
	defer st.Close()
	for {
		s, err := st.Next()
		if err != nil {
			return endOfWatch(ctx, err)
		}
		if err := printService(out, s, asJSON); err != nil {
			return err
		}
	}
}

func printService(out io.Writer, s api.Service, asJSON bool) error {
	if asJSON {
		return writeJSONLine(out, s)
	}
	stale := ""
	if s.Stale {
		stale = " (STALE: etcd unreachable, answer from cache)"
	}
	fmt.Fprintf(out, "%s: %d instances at revision %d%s\n", s.Service, len(s.Instances), s.Revision, stale)
	if len(s.Instances) == 0 {
		return nil
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tADDR\tWEIGHT\tNODE\tMETADATA")
	for _, in := range s.Instances {
		var md []string
		for _, k := range slices.Sorted(maps.Keys(in.Metadata)) {
			md = append(md, k+"="+in.Metadata[k])
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", in.ID, in.Addr, in.Weight, in.Node, strings.Join(md, ","))
	}
	return w.Flush()
}

func newWeightCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "weight N",
		Short: fmt.Sprintf("Set this sidecar's registered weight (0..%d; 0 = drain: listed, never picked)", registry.MaxWeight),
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.Atoi(args[0])
			if err != nil || n < 0 || n > registry.MaxWeight {
				return &exitError{code: 2, err: fmt.Errorf("sidecar: weight %q: want a whole number in 0..%d", args[0], registry.MaxWeight)}
			}
			if err := newClient(cmd).SetWeight(cmd.Context(), n); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "weight %d\n", n)
			return nil
		},
	}
}
