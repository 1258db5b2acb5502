package registry_test

import (
	"errors"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/registry"
)

// The check timeout nobody set follows the interval: at most it, so a
// short interval is not refused for a default the user never wrote.
func TestDefaultTimeout(t *testing.T) {
	for _, tc := range []struct{ interval, want time.Duration }{
		{time.Second, time.Second},
		{10 * time.Second, registry.DefaultCheckTimeout},
		{-time.Second, registry.DefaultCheckTimeout}, // the interval is reported, not the timeout
	} {
		if got := registry.DefaultTimeout(tc.interval); got != tc.want {
			t.Errorf("DefaultTimeout(%s) = %s, want %s", tc.interval, got, tc.want)
		}
	}
	cfg := registry.Config{Prefix: "/sidecar/services", Service: "orders", Node: "n1", Addr: "127.0.0.1:8080", TTL: 5 * time.Second,
		Check: registry.CheckConfig{TCP: "127.0.0.1:8080", Interval: 100 * time.Millisecond}}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("interval 100ms without timeout refused: %v", err)
	}
	cfg.Check.Interval = -time.Second
	var fe *registry.FieldError
	if err := cfg.Validate(); !errors.As(err, &fe) || fe.Field != "Check.Interval" || len(err.(interface{ Unwrap() []error }).Unwrap()) != 1 {
		t.Fatalf("negative interval: %v, want one problem on Check.Interval", err)
	}
}
