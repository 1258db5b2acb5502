package sidecar

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/client"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// TestHoldWaitsForAdmission: while the daemon still connects to etcd (its
// only endpoint refuses connections), a try (wait=0) and a wait that runs
// out first get 503 "still connecting", and a lock requested with a longer
// wait waits and is granted once etcd answers, instead of being refused
// for coming a moment early.
func TestHoldWaitsForAdmission(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	p := etcdtest.StartProxy(t, e.ClientURL)
	p.Drop()
	cfg := coordConfig(t, p.URL())
	d, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	etcdtest.Eventually(t, 10*time.Second, "the socket", func() error { _, err := os.Stat(cfg.SocketPath()); return err })
	cli := client.New(cfg.SocketPath())

	for _, wait := range []time.Duration{0, 300 * time.Millisecond} {
		begin := time.Now()
		_, err := cli.Lock(t.Context(), "early", &wait)
		if err == nil || !strings.Contains(err.Error(), "still connecting") {
			t.Fatalf("lock with wait=%s while connecting: %v, want 503 still connecting", wait, err)
		}
		if took := time.Since(begin); took < wait || took > wait+2*time.Second {
			t.Errorf("lock with wait=%s answered after %s", wait, took)
		}
	}

	healed := time.Now()
	time.AfterFunc(time.Second, p.Heal)
	wait := 30 * time.Second
	h, err := cli.Lock(t.Context(), "early", &wait)
	if err != nil {
		t.Fatalf("lock with wait=30s while connecting: %v", err)
	}
	defer h.Close()
	if took := time.Since(healed); took < time.Second {
		t.Errorf("granted %s after the request, before etcd could be reached", took)
	}
	if ev := h.Event(); ev.Fence <= 0 {
		t.Errorf("acquired event %+v, want a fence", ev)
	}
}
