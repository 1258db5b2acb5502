package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/client"
)

// holdFlags are the flags of `sidecar lock` and `sidecar elect`.
type holdFlags struct {
	wait        time.Duration // < 0: wait as long as it takes
	killTimeout time.Duration
	value       string // elect only
}

func (f *holdFlags) register(cmd *cobra.Command, what string) {
	cmd.Flags().DurationVar(&f.wait, "wait", -1, "give up when "+what+" is not won within this long (0: try once; default: wait)")
	cmd.Flags().DurationVar(&f.killTimeout, "kill-timeout", defaultKillTimeout, "on loss, time between SIGTERM and SIGKILL to the command's process group")
}

// waitArg is the wait of the client's request: nil waits as long as it
// takes.
func (f *holdFlags) waitArg() *time.Duration {
	if f.wait < 0 {
		return nil
	}
	return &f.wait
}

func newLockCmd() *cobra.Command {
	var f holdFlags
	cmd := &cobra.Command{
		Use:   "lock [--wait DUR] [--kill-timeout DUR] NAME -- CMD [ARGS...]",
		Short: "Run CMD while holding lock NAME; stop it if the lock is lost",
		Args:  holdArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c := newClient(cmd)
			h, release, err := acquire(cmd.Context(), func(ctx context.Context) (*client.HoldStream, error) {
				return c.Lock(ctx, args[0], f.waitArg())
			})
			if err != nil {
				return err
			}
			defer release()
			return runHeld(cmd, h, []string{"SIDECAR_LOCK_NAME", "SIDECAR_LOCK_FENCE"}, args[1:], f.killTimeout)
		},
	}
	f.register(cmd, "the lock")
	return cmd
}

func newElectCmd() *cobra.Command {
	var f holdFlags
	cmd := &cobra.Command{
		Use:   "elect [--value V] [--wait DUR] [--kill-timeout DUR] NAME -- CMD [ARGS...]",
		Short: "Run CMD while leader of election NAME; stop it if the leadership is lost",
		Args:  holdArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c := newClient(cmd)
			value := f.value
			if value == "" {
				host, _ := os.Hostname()
				value = fmt.Sprintf("%s pid %d", host, os.Getpid())
			}
			h, release, err := acquire(cmd.Context(), func(ctx context.Context) (*client.HoldStream, error) {
				return c.Campaign(ctx, args[0], value, f.waitArg())
			})
			if err != nil {
				return err
			}
			defer release()
			return runHeld(cmd, h, []string{"SIDECAR_ELECTION_NAME", "SIDECAR_ELECTION_FENCE"}, args[1:], f.killTimeout)
		},
	}
	f.register(cmd, "the election")
	cmd.Flags().StringVar(&f.value, "value", "", "the leader's value that others see (default: \"<host name> pid <pid of this command>\")")
	return cmd
}

// holdArgs wants NAME, then "--" and the command.
func holdArgs(cmd *cobra.Command, args []string) error {
	dash := cmd.ArgsLenAtDash()
	switch {
	case len(args) == 0:
		return &exitError{code: 2, err: errors.New("sidecar: want NAME -- CMD [ARGS...]")}
	case dash != 1 || len(args) < 2:
		return &exitError{code: 2, err: fmt.Errorf("sidecar: want the command after NAME and --, as in: sidecar %s %s -- CMD [ARGS...]", cmd.Name(), args[0])}
	}
	return nil
}

// acquire waits for the hold that get asks the daemon for. SIGINT or
// SIGTERM while waiting gives up (ctx ends); once held, the hold no
// longer depends on ctx: the wrapper passes those signals to its command
// and keeps the hold until the command has exited.
func acquire(ctx context.Context, get func(context.Context) (*client.HoldStream, error)) (h *client.HoldStream, release func(), err error) {
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	type result struct {
		h   *client.HoldStream
		err error
	}
	ch := make(chan result, 1)
	go func() {
		h, err := get(hctx)
		ch <- result{h, err}
	}()
	var r result
	select {
	case r = <-ch:
	case <-ctx.Done():
		cancel()
		if r = <-ch; r.h != nil {
			r.h.Close()
		}
		return nil, nil, ctx.Err()
	}
	var ae *client.APIError
	if r.err != nil {
		cancel()
		if errors.As(r.err, &ae) && ae.StatusCode == http.StatusConflict {
			return nil, nil, &exitError{code: exitLost, err: fmt.Errorf("sidecar: %s", ae.Message)} // names the lock or election
		}
		return nil, nil, r.err
	}
	return r.h, func() { r.h.Close(); cancel() }, nil
}

// runHeld runs argv with the hold's name and fence in env (names given by
// envNames) under supervise and returns the command's exit code as the
// wrapper's; the caller gives the hold up.
func runHeld(cmd *cobra.Command, h *client.HoldStream, envNames []string, argv []string, killTimeout time.Duration) error {
	ev := h.Event()
	c, err := startChild(argv, []string{envNames[0] + "=" + ev.Name, envNames[1] + "=" + strconv.FormatInt(ev.Fence, 10)})
	if err != nil {
		return &exitError{code: 127, err: fmt.Errorf("sidecar: %w", err)}
	}
	code := supervise(c, superviseConfig{
		what:        fmt.Sprintf("%s %q (fence %d)", kindWord(h), ev.Name, ev.Fence),
		lost:        h.Done(),
		why:         func() string { return lostReason(h.Err()) },
		killTimeout: killTimeout,
		stderr:      cmd.ErrOrStderr(),
	})
	if code == 0 {
		return nil
	}
	return &exitError{code: code} // the command's own code, or exitLost (already explained)
}

// kindWord names the kind of hold for people.
func kindWord(h *client.HoldStream) string {
	if h.Event().Event == api.EventElected {
		return "leadership of"
	}
	return "lock"
}

// lostReason says why a hold ended, in one phrase.
func lostReason(err error) string {
	var le *client.LostError
	switch {
	case errors.As(err, &le):
		return le.Reason
	case errors.Is(err, client.ErrDaemonGone):
		return "the sidecar went away (its socket closed), which counts as losing the hold"
	case err == nil:
		return "unknown"
	}
	return err.Error()
}

func newLeaderCmd() *cobra.Command {
	var asJSON, watch bool
	cmd := &cobra.Command{
		Use:   "leader NAME [--watch] [--json]",
		Short: "Show the leader of election NAME (and every change with --watch)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, out := newClient(cmd), cmd.Context(), cmd.OutOrStdout()
			if watch {
				return watchLeader(ctx, c, out, args[0], asJSON)
			}
			l, err := c.Leader(ctx, args[0])
			if err != nil {
				return err
			}
			return printLeader(out, l, asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (one object per line with --watch)")
	cmd.Flags().BoolVar(&watch, "watch", false, "print the leader again after every change")
	return cmd
}

// printLeader prints the leader's value and fence, or "no leader".
func printLeader(out io.Writer, l api.Leader, asJSON bool) error {
	switch {
	case asJSON:
		return writeJSONLine(out, l)
	case l.Leader == nil:
		_, err := fmt.Fprintf(out, "%s: no leader%s\n", l.Name, staleNote(l))
		return err
	}
	_, err := fmt.Fprintf(out, "%s: %s (fence %d)%s\n", l.Name, *l.Leader, l.Fence, staleNote(l))
	return err
}

// staleNote marks a leader shown while etcd does not answer.
func staleNote(l api.Leader) string {
	if l.Stale {
		return " (stale: etcd is not answering; this was the leader when it last did)"
	}
	return ""
}

// watchLeader prints the leader now and after every change until ctx ends
// (nil) or the daemon goes away.
func watchLeader(ctx context.Context, c *client.Client, out io.Writer, name string, asJSON bool) error {
	st, err := c.WatchLeader(ctx, name)
	if err != nil {
		return endOfWatch(ctx, err)
	}
	defer st.Close()
	for {
		l, err := st.Next()
		if err != nil {
			return endOfWatch(ctx, err)
		}
		if err := printLeader(out, l, asJSON); err != nil {
			return err
		}
	}
}
