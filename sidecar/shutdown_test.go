package sidecar

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/client"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// TestShutdownOrder: on shutdown the registration is withdrawn first,
// while the API still answers and through a client that still reaches
// etcd; then the API stops, then the client closes, then the member stops.
// Observed from etcd (a watcher of the key), from the socket, and in the
// order of the daemon's log lines.
func TestShutdownOrder(t *testing.T) {
	cfg := withService(embeddedConfig(t), "orders", 8080)
	cfg.Service.DrainTimeout = time.Second
	logs := &etcdtest.LogBuffer{}
	d, err := New(cfg, logs.Logger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var runErr error
	done := make(chan struct{})
	go func() { runErr = d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	<-d.Ready()
	api := client.New(cfg.SocketPath())
	waitFor(t, "registered", 5*time.Second, func() bool { return registered(t, api) })

	cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.Embedded.ListenClientURLs, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	before, err := api.Status(t.Context())
	if err != nil || before.Registration == nil {
		t.Fatalf("status: %+v %v", before, err)
	}
	key := before.Registration.Key
	resp, err := cli.Get(t.Context(), key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("key before shutdown: %v %v", resp, err)
	}
	wch := cli.Watch(t.Context(), key, clientv3.WithRev(resp.Header.Revision+1))
	cancel()

	// Draining: weight 0 written through the daemon's client; the API answers.
	ev := nextEvent(t, wch)
	if ev.Type != clientv3.EventTypePut || !strings.Contains(string(ev.Kv.Value), `"weight":0`) {
		t.Fatalf("first event of the shutdown: %v %s, want the weight-0 put", ev.Type, ev.Kv.Value)
	}
	st, err := api.Status(t.Context())
	if err != nil || st.Registration == nil || st.Registration.Weight != 0 {
		t.Fatalf("status while draining = %+v, %v", st.Registration, err)
	}
	// Deregistered: the revoke reached etcd, which is still up.
	if ev = nextEvent(t, wch); ev.Type != clientv3.EventTypeDelete {
		t.Fatalf("second event of the shutdown: %v, want the delete", ev.Type)
	}
	select {
	case <-done:
		if runErr != nil {
			t.Fatalf("Run = %v", runErr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return")
	}
	assertOrder(t, logs.String(), "msg=deregistered", `part="local api"`, `part="etcd client"`, `part="embedded etcd member"`)
}

func nextEvent(t *testing.T, wch clientv3.WatchChan) *clientv3.Event {
	t.Helper()
	select {
	case wr := <-wch:
		if err := wr.Err(); err != nil || len(wr.Events) == 0 {
			t.Fatalf("watch: %v (%d events)", err, len(wr.Events))
		}
		return wr.Events[0]
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	return nil
}

// assertOrder checks that each marker appears in logs, after the one before.
func assertOrder(t *testing.T, logs string, markers ...string) {
	t.Helper()
	at := 0
	for _, m := range markers {
		i := strings.Index(logs[at:], m)
		if i < 0 {
			t.Fatalf("log line %q missing, or before %q's predecessor; logs:\n%s", m, m, logs)
		}
		at += i + len(m)
	}
}

// TestStopWhileConnecting: a daemon whose etcd never answers still stops
// cleanly when asked: Run returns nil, its API answered meanwhile (503
// with the reason), and the socket is gone.
func TestStopWhileConnecting(t *testing.T) {
	cfg := Defaults()
	cfg.Name, cfg.DataDir = "t1", t.TempDir()
	cfg.Etcd.Endpoints = []string{fmt.Sprintf("http://127.0.0.1:%d", etcdtest.FreePort(t))} // nobody listens
	cfg.API.Socket = shortDir(t) + "/s.sock"
	cfg.Log.Level = "error"
	d, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	api := client.New(cfg.SocketPath())
	etcdtest.Eventually(t, 10*time.Second, "health says why etcd is not there", func() error {
		h, err := api.Health(t.Context())
		if err != nil || h.Healthy || !strings.Contains(h.Components["etcd"].Error, "refused") {
			return fmt.Errorf("%+v %v", h, err)
		}
		return nil
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of the cancel")
	}
	if _, err := os.Stat(cfg.SocketPath()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
}
