package main

import (
	_ "embed"
	"io"

	"github.com/spf13/cobra"
)

// exampleConfig is the commented configuration `sidecar config example`
// prints: every field at its default. TestConfigExampleIsDefaults loads it
// with loadConfig and compares it with sidecar.Defaults, so a default that
// changes without it fails the tests.
//
//go:embed example.yaml
var exampleConfig string

func newConfigExampleCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "example",
		Short: "Print a commented configuration file with every field at its default (the reference is docs/configuration.md)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := io.WriteString(cmd.OutOrStdout(), exampleConfig)
			return err
		},
	}
}
