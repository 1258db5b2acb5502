package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// Exit codes of the job (0: every entry was accepted).
const (
	exitFailed  = 1 // including stopped by a signal
	exitUsage   = 2 // bad flags, or not run under a wrapper
	exitRefused = 3 // the ledger refused a write: the hold is stale
)

// config is the job's flags.
type config struct {
	ledger  string
	entries int
	pause   time.Duration
	by      string
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		os.Exit(exitUsage) // flag has printed the problem
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		stop()
		os.Exit(exitCode(err))
	}
}

// parseFlags parses and checks the job's flags.
func parseFlags(args []string) (config, error) {
	host, _ := os.Hostname()
	cfg := config{}
	fs := flag.NewFlagSet("batchjob", flag.ContinueOnError)
	fs.StringVar(&cfg.ledger, "ledger", "", "the ledger file to append to (created if missing)")
	fs.IntVar(&cfg.entries, "entries", 3, "how many entries to append")
	fs.DurationVar(&cfg.pause, "pause", time.Second, "pause between two entries")
	fs.StringVar(&cfg.by, "by", fmt.Sprintf("%s:%d", host, os.Getpid()), "who writes, in each entry (no white space)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	var err error
	switch {
	case fs.NArg() > 0:
		err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case cfg.ledger == "":
		err = errors.New("-ledger: want the path of the ledger file")
	case cfg.entries < 1:
		err = fmt.Errorf("-entries %d: want at least 1", cfg.entries)
	case cfg.pause < 0:
		err = fmt.Errorf("-pause %s: want a duration >= 0", cfg.pause)
	case cfg.by == "" || strings.ContainsFunc(cfg.by, isSpace):
		err = fmt.Errorf("-by %q: want a non-empty word without white space", cfg.by)
	}
	if err != nil {
		fmt.Fprintf(fs.Output(), "batchjob: %v\n", err)
	}
	return cfg, err
}

func isSpace(r rune) bool { return strings.ContainsRune(" \t\r\n\v\f", r) }

// run appends cfg.entries entries to the ledger, cfg.pause apart, under
// the hold the environment names, reporting each on out. It stops at the
// first refused write and, between entries, when ctx ends.
func run(ctx context.Context, cfg config, getenv func(string) string, out io.Writer) error {
	h, err := holdFromEnv(getenv)
	if err != nil {
		return err
	}
	l := Ledger{Path: cfg.ledger}
	noun := "entries"
	if cfg.entries == 1 {
		noun = "entry"
	}
	fmt.Fprintf(out, "batchjob: %s holds %s; appending %d %s to %s\n", cfg.by, h, cfg.entries, noun, cfg.ledger)
	for i := 1; i <= cfg.entries; i++ {
		if i > 1 {
			if err := sleep(ctx, cfg.pause); err != nil {
				return fmt.Errorf("batchjob: stopped after %d of %d entries: %w", i-1, cfg.entries, err)
			}
		}
		e := Entry{Fence: h.fence, Kind: h.kind, Name: h.name, Seq: i, Of: cfg.entries, By: cfg.by, At: time.Now()}
		if err := l.Append(e); err != nil {
			return fmt.Errorf("batchjob: entry %d/%d: %w", i, cfg.entries, err)
		}
		fmt.Fprintf(out, "batchjob: entry %d/%d written with fence %d\n", i, cfg.entries, h.fence)
	}
	return nil
}

// sleep waits d, or until ctx ends (its cause is the error).
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// exitCode is the job's exit code for the error run returned.
func exitCode(err error) int {
	var stale *StaleFenceError
	switch {
	case errors.As(err, &stale):
		return exitRefused
	case errors.Is(err, errNoHold):
		return exitUsage
	}
	return exitFailed
}
