package retry

import (
	"context"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	b := Backoff{Base: 100 * time.Millisecond, Max: 800 * time.Millisecond}
	var last time.Duration
	for i := range 20 {
		d := b.Next()
		if d < b.Base/2 || d >= b.Max {
			t.Fatalf("retry %d waits %s, want [%s, %s)", i, d, b.Base/2, b.Max)
		}
		last = d
	}
	if last < b.Max/2 {
		t.Errorf("after 20 retries the wait is %s, want it capped near %s", last, b.Max)
	}
	b.Reset()
	if d := b.Next(); d >= b.Base {
		t.Errorf("after reset: %s, want under %s", d, b.Base)
	}
	huge := Backoff{Base: time.Second, Max: time.Hour}
	for range 100 { // far past the int64 range of Base<<n
		if d := huge.Next(); d <= 0 || d >= time.Hour {
			t.Fatalf("overflowed: %s", d)
		}
	}
}

func TestSleep(t *testing.T) {
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep did not report the elapsed wait")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if Sleep(ctx, time.Hour) || time.Since(start) > time.Second {
		t.Fatal("Sleep ignored a cancelled ctx")
	}
}
