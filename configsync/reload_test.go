package configsync_test

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/configsync"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// runReloader runs r until the test ends.
func runReloader(t *testing.T, r *configsync.Reloader) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// TestReloadOncePerBurst: a burst of 1,000 batches from etcd gives one
// reload command, after the files are on disk.
func TestReloadOncePerBurst(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	dir := filepath.Join(t.TempDir(), "app")
	count := filepath.Join(t.TempDir(), "reloads")
	r, err := configsync.NewReloader(configsync.ReloadConfig{
		Command:  []string{"sh", "-c", `cat "$0"/k0999 >> "$1"; echo >> "$1"`, dir, count},
		Debounce: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	runReloader(t, r)
	run(t, cli, configsync.Config{Prefix: prefix, Dir: dir, OnBatch: func(configsync.Batch) { r.Notify() }})
	for i := range 1000 {
		put(t, cli, fmt.Sprintf("%sk%04d", prefix, i), strconv.Itoa(i))
	}
	etcdtest.Eventually(t, 5*time.Second, "one reload after the burst", func() error {
		b, _ := os.ReadFile(count)
		if got := strings.Fields(string(b)); len(got) != 1 || got[0] != "999" {
			return fmt.Errorf("reloads saw %q", got)
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond) // no second reload for the same burst
	if b, _ := os.ReadFile(count); len(strings.Fields(string(b))) != 1 {
		t.Errorf("reloads: %q, want one", b)
	}
}

// TestReloadSignal: HUP and SIGHUP alike send SIGHUP to the pid in the pid
// file (this test process).
func TestReloadSignal(t *testing.T) {
	hup := make(chan os.Signal, 4)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	pidFile := filepath.Join(t.TempDir(), "app.pid")
	os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	for _, name := range []string{"HUP", "SIGHUP"} {
		sig, ok := configsync.SignalByName(name)
		if !ok {
			t.Fatalf("%s not a signal", name)
		}
		r, err := configsync.NewReloader(configsync.ReloadConfig{Signal: sig, PIDFile: pidFile, Debounce: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		runReloader(t, r)
		r.Notify()
		select {
		case <-hup:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no SIGHUP", name)
		}
	}
}

func TestReloadTimeoutKillsGroup(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "late")
	r, err := configsync.NewReloader(configsync.ReloadConfig{
		Command:  []string{"sh", "-c", `(sleep 1; touch "$0") & sleep 5`, marker},
		Timeout:  200 * time.Millisecond,
		Debounce: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	runReloader(t, r)
	r.Notify()
	time.Sleep(1500 * time.Millisecond)
	if _, err := os.Stat(marker); err == nil {
		t.Error("the command's grandchild outlived the reload timeout")
	}
}
