// Command sidecar is a service-registry and config-center sidecar built on
// etcd: `sidecar run` is the daemon; the other commands are thin clients of
// its local API on a unix socket.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/sidecar-dev/sidecar/client"
	"github.com/sidecar-dev/sidecar/sidecar"
)

// exitError carries a specific exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	root := newRoot()
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "sidecar",
		Short:         "Service registry, config mirror and locks on etcd, beside each service",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().String("socket", "", "unix socket of the daemon's local API (env SIDECAR_SOCKET; default "+sidecar.DefaultSocketPath()+")")
	root.AddCommand(newRunCmd(), newStatusCmd(), newServicesCmd(), newWeightCmd(), newClusterCmd(), newVersionCmd())
	return root
}

// socketPath resolves the socket for client commands: --socket, then
// SIDECAR_SOCKET, then the daemon's default.
func socketPath(cmd *cobra.Command) string {
	if s, _ := cmd.Flags().GetString("socket"); s != "" {
		return s
	}
	if s := os.Getenv("SIDECAR_SOCKET"); s != "" {
		return s
	}
	return sidecar.DefaultSocketPath()
}

func newClient(cmd *cobra.Command) *client.Client {
	return client.New(socketPath(cmd))
}
