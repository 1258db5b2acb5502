package registry

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// States of the health check, in Status.CheckState.
const (
	CheckNone     = "none"     // no check configured: always passing
	CheckPending  = "pending"  // no verdict yet: neither a pass nor enough failures
	CheckPassing  = "passing"  // the last check passed, or fewer failures than FailuresBeforeCritical since
	CheckCritical = "critical" // FailuresBeforeCritical consecutive failures and no pass since
)

// maxCheckOutput bounds the HTTP body read and the command output kept.
const maxCheckOutput = 512

// probe runs one check; nil means it passed. Its error is shown to people
// as the check's output (status, the log), so it starts with the kind of
// check rather than a package prefix.
type probe func(ctx context.Context) error

// newProbe returns the probe of c, or nil when c configures no check.
func newProbe(c CheckConfig) probe {
	switch c.kind() {
	case "http":
		return httpProbe(c.HTTP)
	case "tcp":
		return tcpProbe(c.TCP)
	case "exec":
		return execProbe(c.Exec)
	}
	return nil
}

func httpProbe(url string) probe {
	client := &http.Client{Transport: &http.Transport{
		Proxy:             nil, // a local health endpoint is never reached through a proxy
		DisableKeepAlives: true,
	}}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("http check: %w", err)
		}
		req.Header.Set("User-Agent", "sidecar-health-check")
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("http check: %w", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxCheckOutput))
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return fmt.Errorf("http check %s: status %d: %s", url, resp.StatusCode, oneLine(body))
		}
		return nil
	}
}

func tcpProbe(addr string) probe {
	return func(ctx context.Context) error {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("tcp check: %w", err)
		}
		return conn.Close()
	}
}

func execProbe(argv []string) probe {
	return func(ctx context.Context) error {
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		out := &capped{max: maxCheckOutput}
		cmd.Stdout, cmd.Stderr = out, out
		// The check runs in its own process group and a timeout kills the
		// whole group, so a `sh -c` grandchild cannot outlive it.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		// Stop waiting for output a second after the kill, whatever holds it.
		cmd.WaitDelay = time.Second
		if err := cmd.Run(); err != nil {
			if ctx.Err() != nil {
				err = fmt.Errorf("%w (%w)", err, ctx.Err())
			}
			return fmt.Errorf("exec check %q: %w: %s", argv[0], err, oneLine(out.Bytes()))
		}
		return nil
	}
}

// capped keeps the first max bytes written to it and discards the rest.
type capped struct {
	bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.Len(); room > 0 {
		c.Buffer.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func oneLine(b []byte) string {
	return strings.Join(strings.Fields(string(b)), " ")
}

// runChecks probes every interval, the first time at once, each probe
// bounded by timeout, and hands each result to report. It returns nil
// when ctx ends.
func runChecks(ctx context.Context, p probe, interval, timeout time.Duration, report func(error)) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		pctx, cancel := context.WithTimeout(ctx, timeout)
		err := p(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		report(err)
		timer.Reset(interval)
	}
}

// checkTracker turns check results into CheckState. Not safe for
// concurrent use.
type checkTracker struct {
	state     string
	fails     int // consecutive failures
	threshold int // FailuresBeforeCritical
}

// record notes one result and reports whether the state changed.
func (t *checkTracker) record(err error) bool {
	old := t.state
	if err == nil {
		t.fails = 0
		t.state = CheckPassing
		return t.state != old
	}
	t.fails++
	if t.fails >= t.threshold {
		t.state = CheckCritical
	}
	return t.state != old
}
