package lease

import (
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	const s, ms = time.Second, time.Millisecond
	for _, tc := range []struct {
		name        string
		in          Config
		ttl, margin time.Duration
		bad         bool
	}{
		{name: "zero", in: Config{}, ttl: 5 * s, margin: 500 * ms},
		{name: "two seconds", in: Config{TTL: 2 * s}, ttl: 2 * s, margin: 300 * ms},
		{name: "rounded up", in: Config{TTL: 2300 * ms}, ttl: 3 * s, margin: 300 * ms},
		{name: "long", in: Config{TTL: 60 * s}, ttl: 60 * s, margin: 6 * s},
		{name: "explicit margin", in: Config{TTL: 2 * s, Margin: 100 * ms}, ttl: 2 * s, margin: 100 * ms},
		{name: "too short", in: Config{TTL: 1999 * ms}, bad: true},
		{name: "negative ttl", in: Config{TTL: -s}, bad: true},
		{name: "negative margin", in: Config{TTL: 2 * s, Margin: -ms}, bad: true},
		{name: "margin half the ttl", in: Config{TTL: 2 * s, Margin: s}, bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.in.withDefaults()
			if tc.bad {
				if err == nil {
					t.Fatalf("%+v accepted", tc.in)
				}
				return
			}
			if err != nil || got.TTL != tc.ttl || got.Margin != tc.margin || got.Logger == nil {
				t.Fatalf("got ttl %s margin %s, %v; want %s, %s", got.TTL, got.Margin, err, tc.ttl, tc.margin)
			}
		})
	}
}
