// Package retry has the capped, jittered exponential backoff and the
// context-aware sleep that every retry loop of the sidecar uses (etcd
// connection, registration, discovery watches, embedded joins).
package retry

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is a capped exponential retry delay with equal jitter: the n-th
// delay is Base·2^n capped at Max, of which a random half is taken off, so
// delays lie in [d/2, d). The zero value needs Base and Max set. Not safe
// for concurrent use.
type Backoff struct {
	Base, Max time.Duration
	n         int
}

// Next returns the next delay and moves on.
func (b *Backoff) Next() time.Duration {
	d := b.Base << b.n
	if d >= b.Max || d <= 0 { // d <= 0: shifted past the int64 range
		d = b.Max
	} else {
		b.n++
	}
	if d < 2 {
		return d
	}
	return d/2 + rand.N(d/2)
}

// Reset starts again from Base, after a success.
func (b *Backoff) Reset() { b.n = 0 }

// Sleep waits for d or until ctx ends; it reports whether d elapsed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
