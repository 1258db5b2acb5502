package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sidecar-dev/sidecar/internal/etcdclient"
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
			if err = configError(lerr, err); err != nil {
				return &exitError{code: 2, err: fmt.Errorf("sidecar: bad configuration:\n%w", indent(err))}
			}
			// cmd.Context() is cancelled by SIGTERM or SIGINT (see
			// signalContext): the daemon then deregisters, releases and
			// stops, and Run returns nil.
			return startFailure(d.Run(cmd.Context()))
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

// configError joins the problems of loading (lerr) and of validating
// (verr) the configuration, one per mistake: a field whose value did not
// parse (a *badValue) is not reported again for the zero value it was
// left with (port: 80a is not also "service.port: 0").
func configError(lerr, verr error) error {
	failed := map[string]bool{}
	for _, err := range sidecar.Problems(lerr) {
		var bv *badValue
		if errors.As(err, &bv) {
			failed[bv.key] = true
		}
	}
	errs := sidecar.Problems(lerr)
	for _, err := range sidecar.Problems(verr) {
		var fe *sidecar.FieldError
		if errors.As(err, &fe) && failed[fe.Field] {
			continue
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// devPrefixes are the package prefixes that errors carry inside the code;
// startFailure takes them off the front of a message meant for people.
var devPrefixes = []string{"sidecar: ", "embedded: ", "etcdclient: ", "registry: ", "configsync: "}

// startFailure words what ended the daemon for the person who started it:
// each etcd endpoint that could not be used, a configuration problem found
// only at start-up in the field's words, otherwise the message without the
// package prefixes meant for developers. The error chain is kept (a
// cancellation still counts as one, see exitCode).
func startFailure(err error) error {
	if err == nil {
		return nil
	}
	switch lines := etcdclient.Reasons(err); {
	case len(lines) == 1:
		return &userError{"sidecar: cannot use etcd: " + lines[0], err}
	case len(lines) > 1:
		return &userError{"sidecar: cannot use etcd:\n  - " + strings.Join(lines, "\n  - "), err}
	}
	msg := err.Error()
	for trimmed := true; trimmed; {
		trimmed = false
		for _, p := range devPrefixes {
			if strings.HasPrefix(msg, p) {
				msg, trimmed = msg[len(p):], true
			}
		}
	}
	return &userError{"sidecar: " + msg, err}
}

// userError is err worded for people.
type userError struct {
	msg string
	err error
}

func (e *userError) Error() string { return e.msg }
func (e *userError) Unwrap() error { return e.err }
