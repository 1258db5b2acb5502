// Command sidecar is a service-registry and config-center sidecar built on
// etcd: `sidecar run` is the daemon; the other commands are thin clients of
// its local API on a unix socket.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/client"
)

// exitError carries a specific exit code out of a command.
type exitError struct {
	code int
	err  error
}

// Error is the one line printed for it; an exitError without err exits
// quietly (the command has said why, or the child's code is passed on).
func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

func main() {
	ctx, stop := signalContext(context.Background())
	err := newRoot().ExecuteContext(ctx)
	stop()
	os.Exit(exitCode(ctx, err, os.Stderr))
}

// signalCause is the cause of the root context's cancellation when SIGINT
// or SIGTERM arrived.
type signalCause struct{ sig syscall.Signal }

func (c signalCause) Error() string { return "sidecar: " + c.sig.String() }

// Is makes the signal count as a cancellation (errors.Is(cause,
// context.Canceled)), as the cause of signal.NotifyContext does.
func (c signalCause) Is(target error) bool { return target == context.Canceled }

// signalContext returns a context cancelled, with a signalCause, by the
// first SIGINT or SIGTERM; stop stops catching them. It is
// signal.NotifyContext that also tells which signal came, for the exit code.
// Every command runs under it: `sidecar run` shuts down cleanly, and the
// requests of client commands are cancelled.
func signalContext(parent context.Context) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case s := <-ch:
			cancel(signalCause{s.(syscall.Signal)})
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		cancel(nil)
		<-done
	}
}

// exitCode reports err on w, in its one line, and returns the exit status:
// 0 without error; the code of an *exitError; 128+N, quietly, when signal N
// cancelled a command before it was done (a watch that the user stops ends
// without error, so with 0); else 1.
func exitCode(ctx context.Context, err error, w io.Writer) int {
	if err == nil {
		return 0
	}
	var sc signalCause
	if errors.Is(err, context.Canceled) && errors.As(context.Cause(ctx), &sc) {
		return 128 + int(sc.sig)
	}
	var ee *exitError
	if errors.As(err, &ee) && ee.err == nil {
		return ee.code
	}
	fmt.Fprintln(w, err)
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "sidecar",
		Short:         "Service registry, config mirror and locks on etcd, beside each service",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().String("socket", "", "unix socket of the daemon's local API (env "+client.SocketEnv+"; default "+api.DefaultSocketPath()+")")
	root.AddCommand(newRunCmd(), newStatusCmd(), newServicesCmd(), newWeightCmd(), newConfigCmd(), newClusterCmd(), newVersionCmd(),
		newLockCmd(), newElectCmd(), newLeaderCmd())
	usageErrors(root)
	return root
}

// usageErrors makes every usage error (unknown command, unknown flag or
// bad flag value, wrong arguments) of root and its subcommands a line that
// starts with "sidecar:" like every other message, says what to run for
// help, and exits with status 2. The root command takes no arguments of
// its own, so an unknown command is reported by its Args (cobra would
// otherwise print its own wording) and, without arguments, it prints help.
func usageErrors(root *cobra.Command) {
	root.SuggestionsMinimumDistance = 2
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return usageError(cmd, err) })
	root.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		msg := fmt.Sprintf("unknown command %q", args[0])
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += "; did you mean " + s[0] + "?"
		}
		return usageError(cmd, errors.New(msg))
	}
	root.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	var wrap func(*cobra.Command)
	wrap = func(c *cobra.Command) {
		if args := c.Args; args != nil && c != root {
			c.Args = func(cmd *cobra.Command, a []string) error {
				err := args(cmd, a)
				if err != nil && strings.HasPrefix(err.Error(), "unknown command") && !cmd.HasSubCommands() {
					err = fmt.Errorf("takes no arguments, got %q", a[0]) // cobra.NoArgs's wording is for subcommands
				}
				if err != nil {
					return usageError(cmd, err)
				}
				return nil
			}
		}
		for _, sub := range c.Commands() {
			wrap(sub)
		}
	}
	wrap(root)
}

// usageError is err, a mistake in how cmd was called, as the one line
// printed for it (exit status 2); an error already worded by the command
// (an *exitError) is kept.
func usageError(cmd *cobra.Command, err error) error {
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	msg := strings.TrimSuffix(err.Error(), fmt.Sprintf(" for %q", cmd.CommandPath())) // cobra's, said below
	if cmd.HasParent() {
		msg = strings.TrimPrefix(cmd.CommandPath(), "sidecar ") + ": " + msg
	}
	return &exitError{code: 2, err: fmt.Errorf("sidecar: %s (run '%s --help' for usage)", msg, cmd.CommandPath())}
}

// socketPath resolves the socket for client commands: --socket, then
// SIDECAR_SOCKET, then the daemon's default (client.DefaultSocket).
func socketPath(cmd *cobra.Command) string {
	if s, _ := cmd.Flags().GetString("socket"); s != "" {
		return s
	}
	return client.DefaultSocket()
}

func newClient(cmd *cobra.Command) *client.Client {
	return client.New(socketPath(cmd))
}

// endOfWatch turns the error that ended a watch into the command's result:
// a watch the user stopped (Ctrl-C, SIGTERM) ends without error; anything
// else, such as client.ErrDaemonGone, is a failure.
func endOfWatch(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
