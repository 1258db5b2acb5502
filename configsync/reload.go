package configsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults of ReloadConfig.
const (
	DefaultDebounce      = 100 * time.Millisecond
	DefaultReloadTimeout = 30 * time.Second
	outputTail           = 1024 // bytes of a command's output kept for the log
)

// ReloadConfig is what runs once per batch of changes: a command, or a
// signal to the pid in a pid file.
type ReloadConfig struct {
	Command []string       // argv, no shell
	Timeout time.Duration  // bounds the command; default DefaultReloadTimeout
	Signal  syscall.Signal // sent to the pid in PIDFile (see SignalByName)
	PIDFile string
	// Debounce: a reload waits until no batch arrived for this long, so a
	// burst of changes gives one reload. Writes are never delayed by it.
	// Default DefaultDebounce.
	Debounce time.Duration
	Logger   *slog.Logger
}

// Validate reports every problem of cfg at once, one *FieldError per
// problem, joined. A cfg with neither command nor signal is valid: it
// reloads nothing.
func (cfg ReloadConfig) Validate() error {
	var errs []error
	add := func(field, value, reason string) {
		errs = append(errs, &FieldError{Field: field, Value: value, Reason: reason})
	}
	if len(cfg.Command) > 0 && cfg.Command[0] == "" {
		add("Command", fmt.Sprintf("%q", cfg.Command), "want an argv whose first element is the program")
	}
	if len(cfg.Command) > 0 && cfg.Signal != 0 {
		add("Command", "", "want a command or a signal, not both")
	}
	if cfg.Signal != 0 && cfg.PIDFile == "" {
		add("PIDFile", "", "want the path of the file holding the pid to signal (required with signal)")
	}
	if cfg.PIDFile != "" && cfg.Signal == 0 {
		add("Signal", "", "want a signal name to send to the pid in pid_file")
	}
	if cfg.Debounce < 0 {
		add("Debounce", cfg.Debounce.String(), "want 0 or more")
	}
	if cfg.Timeout < 0 {
		add("Timeout", cfg.Timeout.String(), "want 0 or more")
	}
	return errors.Join(errs...)
}

// Reloader runs a mapping's reload after batches of changes. Build it with
// NewReloader, call Run once, and Notify after each batch is on disk.
// Notify is safe for concurrent use.
type Reloader struct {
	cfg      ReloadConfig
	log      *slog.Logger
	kick     chan struct{} // cap 1: a batch arrived
	ok, fail atomic.Int64
}

// Reloads returns how many reloads succeeded and failed so far.
func (r *Reloader) Reloads() (ok, failed int64) { return r.ok.Load(), r.fail.Load() }

// NewReloader checks cfg; it starts nothing.
func NewReloader(cfg ReloadConfig) (*Reloader, error) {
	if len(cfg.Command) == 0 && cfg.Signal == 0 {
		return nil, errors.New("configsync: reload: want a command or a signal")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("configsync: reload: %w", err)
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = DefaultDebounce
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultReloadTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reloader{cfg: cfg, log: log.With("component", "configsync"), kick: make(chan struct{}, 1)}, nil
}

// Notify says a batch of changes is on disk; it never blocks.
func (r *Reloader) Notify() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run reloads after each burst of batches until ctx ends, then returns nil.
func (r *Reloader) Run(ctx context.Context) error {
	quiet := time.NewTimer(0)
	<-quiet.C
	defer quiet.Stop()
	pending := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.kick:
			pending = true
			quiet.Reset(r.cfg.Debounce)
		case <-quiet.C:
			if pending {
				pending = false
				r.reload(ctx)
			}
		}
	}
}

// reload runs the command or sends the signal, and logs how it went.
func (r *Reloader) reload(ctx context.Context) {
	start := time.Now()
	var err error
	var out string
	if len(r.cfg.Command) > 0 {
		out, err = r.runCommand(ctx)
	} else {
		err = r.sendSignal()
	}
	if err != nil {
		r.fail.Add(1)
		r.log.Warn("reload failed", "err", err, "output", out, "took_s", time.Since(start).Seconds())
		return
	}
	r.ok.Add(1)
	r.log.Info("reloaded", "output", out, "took_s", time.Since(start).Seconds())
}

func (r *Reloader) runCommand(ctx context.Context) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, r.cfg.Command[0], r.cfg.Command[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its own group, killed whole on timeout
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	out := buf.String()
	if len(out) > outputTail {
		out = "…" + out[len(out)-outputTail:]
	}
	if err != nil {
		return out, fmt.Errorf("configsync: reload command %q: %w", r.cfg.Command[0], err)
	}
	return out, nil
}

func (r *Reloader) sendSignal() error {
	b, err := os.ReadFile(r.cfg.PIDFile)
	if err != nil {
		return fmt.Errorf("configsync: reload: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return fmt.Errorf("configsync: reload: pid file %s holds %q: want a process id", r.cfg.PIDFile, strings.TrimSpace(string(b)))
	}
	if err := syscall.Kill(pid, r.cfg.Signal); err != nil {
		return fmt.Errorf("configsync: reload: signal %v to pid %d: %w", r.cfg.Signal, pid, err)
	}
	return nil
}
