package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/sidecar-dev/sidecar/sidecar"
)

func newRunCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "run [--config FILE] [flags]",
		Short: "Run the daemon (no config at all: embedded single-node etcd on 127.0.0.1:2379/2380)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, lerr := loadConfig(file, cmd.Flags(), os.Environ())
			d, err := sidecar.New(cfg, nil) // completes and validates
			if err = errors.Join(lerr, err); err != nil {
				return &exitError{code: 2, err: fmt.Errorf("sidecar: bad configuration:\n%w", indent(err))}
			}
			// cmd.Context() is cancelled by SIGTERM or SIGINT (see
			// signalContext): the daemon then deregisters, releases and
			// stops, and Run returns nil.
			return d.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "config", "c", "", "YAML configuration file")
	f.String("name", "", "node name (default: hostname)")
	f.String("data-dir", "", "data directory (default ./sidecar-data)")
	f.StringSlice("etcd-endpoints", nil, "join an existing etcd cluster at these client URLs instead of embedding a member")
	f.String("namespace", "", "root of every key this sidecar writes (default /sidecar)")
	f.String("http", "", "TCP address serving only GET /metrics and GET /v1/health")
	f.String("log-level", "", "debug | info | warn | error")
	f.String("log-format", "", "text | json")
	return cmd
}

// indent puts each of the joined errors on its own indented line.
func indent(err error) error {
	type joined interface{ Unwrap() []error }
	var lines []any
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(joined); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		lines = append(lines, e)
	}
	walk(err)
	format := ""
	for range lines {
		format += "  - %v\n"
	}
	return fmt.Errorf(format[:len(format)-1], lines...)
}
