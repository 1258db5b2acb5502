package main

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sidecar-dev/sidecar/registry"
)

// TestWeightArgs runs `sidecar weight` on arguments it must refuse before
// asking any daemon: -1 is a number out of range, not a flag.
func TestWeightArgs(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-1"}, fmt.Sprintf("sidecar: weight -1: want 0..%d (0 = drain)", registry.MaxWeight)},
		{[]string{"--socket", "/nonexistent/s.sock", "-20"}, fmt.Sprintf("sidecar: weight -20: want 0..%d (0 = drain)", registry.MaxWeight)},
		{[]string{fmt.Sprint(registry.MaxWeight + 1)}, fmt.Sprintf("sidecar: weight %d: want 0..%d (0 = drain)", registry.MaxWeight+1, registry.MaxWeight)},
		{[]string{"abc"}, fmt.Sprintf(`sidecar: weight "abc": want a whole number in 0..%d`, registry.MaxWeight)},
		{nil, fmt.Sprintf("sidecar: weight takes one argument, the weight N in 0..%d (got 0)", registry.MaxWeight)},
		{[]string{"1", "2"}, fmt.Sprintf("sidecar: weight takes one argument, the weight N in 0..%d (got 2)", registry.MaxWeight)},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			root := newRoot()
			root.SetArgs(append([]string{"weight"}, tc.args...))
			err := root.ExecuteContext(t.Context())
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != 2 || err.Error() != tc.want {
				t.Fatalf("sidecar weight %v: %v, want exit 2 with %q", tc.args, err, tc.want)
			}
		})
	}
}

// TestWeightHelp checks --help still shows the help and asks no daemon.
func TestWeightHelp(t *testing.T) {
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"weight", "--help"})
	if err := root.ExecuteContext(t.Context()); err != nil {
		t.Fatalf("sidecar weight --help: %v", err)
	}
	if !strings.Contains(out.String(), "Usage:\n  sidecar weight N") {
		t.Fatalf("sidecar weight --help printed:\n%s", out.String())
	}
}
