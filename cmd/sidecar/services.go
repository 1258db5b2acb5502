package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/client"
)

func newServicesCmd() *cobra.Command {
	var asJSON, watch, pick bool
	cmd := &cobra.Command{
		Use:   "services [NAME] [--watch | --pick] [--json]",
		Short: "List service names, or one service's instances with weights (--pick: one instance, chosen by weight)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, out := newClient(cmd), cmd.Context(), cmd.OutOrStdout()
			switch {
			case len(args) == 0 && (watch || pick):
				return &exitError{code: 2, err: errors.New("sidecar: --watch and --pick need a service NAME")}
			case watch && pick:
				return &exitError{code: 2, err: errors.New("sidecar: --watch and --pick do not go together: pick once, or watch the instances")}
			case len(args) == 0:
				return listServices(ctx, c, out, asJSON)
			case watch:
				return watchService(ctx, c, out, args[0], asJSON)
			case pick:
				return pickInstance(ctx, c, out, args[0], asJSON)
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
	cmd.Flags().BoolVar(&pick, "pick", false, "print one instance's host:port, chosen by smooth weighted round robin as the daemon's pick does (weight 0 never)")
	return cmd
}

// pickInstance prints the address of one instance of name chosen by the
// daemon (GET /v1/services/{name}/pick), or the instance as JSON. No
// instance with a weight above 0 is a failure that says so.
func pickInstance(ctx context.Context, c *client.Client, out io.Writer, name string, asJSON bool) error {
	in, err := c.Pick(ctx, name)
	var ae *client.APIError
	if errors.As(err, &ae) && ae.StatusCode == http.StatusNotFound {
		return fmt.Errorf("sidecar: service %s has no instance to pick: none is registered with a weight above 0 (see `sidecar services %s`)", name, name)
	}
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSONOut(out, in)
	}
	_, err = fmt.Fprintln(out, in.Addr)
	return err
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
	fmt.Fprintf(out, "%s: %s at revision %d%s\n", s.Service, plural(len(s.Instances), "instance"), s.Revision, stale)
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

// plural returns "1 instance", "2 instances": n and noun, with an s unless
// n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
