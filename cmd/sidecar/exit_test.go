package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/client"
)

// A signal cancels the root context with a cause that names it and still
// counts as a cancellation (the daemon tells a clean stop by it).
func TestSignalContext(t *testing.T) {
	ctx, stop := signalContext(t.Context())
	defer stop()
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("SIGINT did not cancel the context")
	}
	var sc signalCause
	if cause := context.Cause(ctx); !errors.As(cause, &sc) || sc.sig != syscall.SIGINT || !errors.Is(cause, context.Canceled) {
		t.Fatalf("cause = %v, want SIGINT counting as context.Canceled", cause)
	}
}

func TestExitCode(t *testing.T) {
	interrupted, cancel := context.WithCancelCause(t.Context())
	cancel(signalCause{syscall.SIGTERM})
	gone := fmt.Errorf("watch: %w", client.ErrDaemonGone)
	tests := []struct {
		name    string
		ctx     context.Context
		err     error
		code    int
		message string
	}{
		{"success", t.Context(), nil, 0, ""},
		{"failure", t.Context(), gone, 1, gone.Error() + "\n"},
		{"exit error", t.Context(), &exitError{code: 2, err: errors.New("sidecar: bad")}, 2, "sidecar: bad\n"},
		{"cut short by SIGTERM", interrupted, fmt.Errorf("status: %w", context.Canceled), 128 + 15, ""},
		{"failure after a signal", interrupted, gone, 1, gone.Error() + "\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var w bytes.Buffer
			if code := exitCode(tc.ctx, tc.err, &w); code != tc.code || w.String() != tc.message {
				t.Fatalf("exitCode = %d, wrote %q; want %d, %q", code, w.String(), tc.code, tc.message)
			}
		})
	}
}
