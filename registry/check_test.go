package registry_test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
	"github.com/sidecar-dev/sidecar/registry"
)

// healthTarget is something a check probes, which the test makes healthy
// or not.
type healthTarget struct {
	check registry.CheckConfig
	set   func(healthy bool)
}

func httpTarget(t *testing.T) healthTarget {
	var code atomic.Int32
	code.Store(http.StatusInternalServerError)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(int(code.Load()))
	}))
	t.Cleanup(srv.Close)
	return healthTarget{
		check: registry.CheckConfig{HTTP: srv.URL + "/healthz"},
		set: func(ok bool) {
			if ok {
				code.Store(http.StatusOK)
			} else {
				code.Store(http.StatusInternalServerError)
			}
		},
	}
}

func execTarget(t *testing.T) healthTarget {
	status := filepath.Join(t.TempDir(), "status")
	set := func(ok bool) {
		v := "1"
		if ok {
			v = "0"
		}
		if err := os.WriteFile(status, []byte(v), 0o644); err != nil {
			t.Error(err)
		}
	}
	set(false)
	return healthTarget{
		check: registry.CheckConfig{Exec: []string{"sh", "-c", `exit "$(cat "$1")"`, "sh", status}},
		set:   set,
	}
}

// tcpTarget listens while healthy, on the same port each time.
func tcpTarget(t *testing.T) healthTarget {
	addr := fmt.Sprintf("127.0.0.1:%d", etcdtest.FreePort(t))
	var mu sync.Mutex
	var ln net.Listener
	var wg sync.WaitGroup
	set := func(ok bool) {
		mu.Lock()
		defer mu.Unlock()
		if !ok {
			if ln != nil {
				ln.Close()
				ln = nil
				wg.Wait()
			}
			return
		}
		if ln != nil {
			return
		}
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			t.Errorf("listen %s: %v", addr, err)
			return
		}
		wg.Add(1)
		go func(l net.Listener) {
			defer wg.Done()
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}(ln)
	}
	t.Cleanup(func() { set(false) })
	return healthTarget{check: registry.CheckConfig{TCP: addr}, set: set}
}

// TestCheckGating: not registered before the first pass; a critical check
// withdraws the record but keeps the lease alive; a pass restores it under
// the same lease.
func TestCheckGating(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	for _, tc := range []struct {
		name   string
		target func(*testing.T) healthTarget
	}{{"http", httpTarget}, {"exec", execTarget}, {"tcp", tcpTarget}} {
		t.Run(tc.name, func(t *testing.T) { testGating(t, cli, tc.name, tc.target(t)) })
	}
	waitLeases(t, cli, time.Second)
}

// testGating runs the gating scenario against one kind of check.
func testGating(t *testing.T, cli *clientv3.Client, name string, target healthTarget) {
	cfg := testConfig("orders-" + name)
	cfg.Check = target.check
	cfg.Check.Interval, cfg.Check.Timeout, cfg.Check.FailuresBeforeCritical = 100*time.Millisecond, time.Second, 2
	h := start(t, cli, cfg)
	absent := func() error {
		if rec := get(t, cli, keyOf(cfg)); rec != nil {
			return fmt.Errorf("key holds %+v", rec)
		}
		return nil
	}

	st, _ := waitState(t, h, 5*time.Second, "critical before the first pass", func(st registry.Status) bool {
		return st.CheckState == registry.CheckCritical && st.State == registry.StateCritical && st.LeaseID != 0
	})
	if err := absent(); err != nil {
		t.Fatalf("registered before the first passing check: %v", err)
	}
	if st.CheckError == "" {
		t.Errorf("no check error in %+v", st)
	}

	target.set(true)
	st, d := waitState(t, h, 5*time.Second, "registered after a pass", isRegistered)
	t.Logf("registered %s after the check began to pass", d.Round(time.Millisecond))
	lease := st.LeaseID
	if rec := get(t, cli, keyOf(cfg)); rec == nil || int64(rec.Lease) != lease {
		t.Fatalf("record %+v, want lease %x", rec, lease)
	}

	target.set(false)
	st, _ = waitState(t, h, 5*time.Second, "critical", func(st registry.Status) bool { return st.State == registry.StateCritical })
	etcdtest.Eventually(t, 2*time.Second, "key withdrawn", absent)
	if st.LeaseID != lease {
		t.Errorf("lease changed from %x to %x when critical", lease, st.LeaseID)
	}
	// Keep the lease alive for longer than its TTL while critical.
	waitState(t, h, 5*time.Second, "keep-alives while critical", func(s registry.Status) bool {
		return s.KeepAlives >= st.KeepAlives+3
	})
	ttl, err := cli.TimeToLive(t.Context(), clientv3.LeaseID(lease))
	if err != nil || ttl.TTL <= 0 {
		t.Fatalf("lease %x while critical: %+v, %v", lease, ttl, err)
	}

	target.set(true)
	etcdtest.Eventually(t, 5*time.Second, "key restored with the same lease", func() error {
		return keyOnLease(t, cli, keyOf(cfg), lease)
	})
	st, _ = waitState(t, h, time.Second, "registered", isRegistered)
	if st.Reregistrations != 0 {
		t.Errorf("reregistrations = %d; a check's verdict is not a re-registration", st.Reregistrations)
	}
	if err := h.stop(t); err != nil {
		t.Fatal(err)
	}
}

// TestExecCheckTimeout: a check that outlives its timeout fails, and Run
// still stops promptly.
func TestExecCheckTimeout(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	cfg := testConfig("orders-slow")
	cfg.Check = registry.CheckConfig{Exec: []string{"sleep", "10"}, Interval: 50 * time.Millisecond, Timeout: 200 * time.Millisecond, FailuresBeforeCritical: 1}
	h := start(t, cli, cfg)
	st, _ := waitState(t, h, 5*time.Second, "critical", func(st registry.Status) bool { return st.CheckState == registry.CheckCritical })
	if !strings.Contains(st.CheckError, "sleep") {
		t.Errorf("check error %q does not name the command", st.CheckError)
	}
	if rec := get(t, cli, keyOf(cfg)); rec != nil {
		t.Errorf("registered with a failing check: %+v", rec)
	}
	stopped := time.Now()
	if err := h.stop(t); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(stopped); d > 3*time.Second {
		t.Errorf("Run took %s to return", d)
	}
}

// A timed-out exec check is killed with its whole process group: a
// grandchild started by `sh -c` does not outlive it.
func TestExecCheckKillsProcessGroup(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	cfg := testConfig("orders-group")
	cfg.Check = registry.CheckConfig{
		Exec:     []string{"sh", "-c", "sleep 30 & echo $! > " + pidFile + "; wait"},
		Interval: time.Second, Timeout: 300 * time.Millisecond, FailuresBeforeCritical: 1,
	}
	h := start(t, cli, cfg)
	waitState(t, h, 5*time.Second, "critical", func(st registry.Status) bool { return st.CheckState == registry.CheckCritical })
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d still alive after the check timed out", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid runs (a zombie waiting for its reaper does not).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}
