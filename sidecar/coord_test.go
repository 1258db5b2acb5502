package sidecar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/client"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// coordConfig is a daemon config joining an etcd of the test's own, which
// outlives the daemon, with the shortest coordination TTL.
func coordConfig(t *testing.T, endpoint string) Config {
	t.Helper()
	cfg := embeddedConfig(t)
	cfg.Etcd.Endpoints = []string{endpoint}
	cfg.Coordination.TTL = 2 * time.Second
	return cfg
}

// coordDaemon runs a daemon on a fresh etcd and returns it and a client of
// that etcd.
func coordDaemon(t *testing.T) (*running, *clientv3.Client) {
	t.Helper()
	e := etcdtest.StartEmbedded(t)
	return startDaemon(t, coordConfig(t, e.ClientURL)), e.Client(t)
}

// keysUnder counts the keys under prefix in etcd.
func keysUnder(t *testing.T, cli *clientv3.Client, prefix string) int {
	t.Helper()
	resp, err := cli.Get(t.Context(), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return int(resp.Count)
}

// checkFence fails unless ev is the first event of a hold of name: its key
// under prefix, its fence the key's creation revision.
func checkFence(t *testing.T, cli *clientv3.Client, ev api.HoldEvent, event, name, prefix string) {
	t.Helper()
	if ev.Event != event || ev.Name != name || !strings.HasPrefix(ev.Key, prefix+"/") || ev.Fence <= 0 {
		t.Fatalf("first event %+v, want %s of %s under %s/ with a fence", ev, event, name, prefix)
	}
	resp, err := cli.Get(t.Context(), ev.Key)
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].CreateRevision != ev.Fence {
		t.Fatalf("key %s in etcd: %v %v, want create revision %d", ev.Key, resp, err, ev.Fence)
	}
}

type lockResult struct {
	h   *client.HoldStream
	err error
	at  time.Time
}

// lockAsync asks for lock name without a wait bound, in the background.
func lockAsync(ctx context.Context, c *client.Client, name string) <-chan lockResult {
	ch := make(chan lockResult, 1)
	go func() {
		h, err := c.Lock(ctx, name, nil)
		ch <- lockResult{h, err, time.Now()}
	}()
	return ch
}

// TestLockHandOff: the first caller holds the lock with a fence, a second
// waits; when the first closes its connection the key is gone and the
// second holds the lock, with a greater fence, within 100 ms of the close.
func TestLockHandOff(t *testing.T) {
	r, cli := coordDaemon(t)
	ctx := t.Context()
	first, err := r.cli.Lock(ctx, "job", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	ev1 := first.Event()
	checkFence(t, cli, ev1, api.EventAcquired, "job", "/sidecar/locks/job")

	got := lockAsync(ctx, r.cli, "job")
	etcdtest.Eventually(t, 5*time.Second, "second caller waiting in etcd", func() error {
		if n := keysUnder(t, cli, "/sidecar/locks/job/"); n != 2 {
			return fmt.Errorf("%d keys under the lock", n)
		}
		return nil
	})
	wch := cli.Watch(ctx, ev1.Key, clientv3.WithRev(ev1.Fence+1), clientv3.WithFilterPut())
	// Excluded while the first holds the lock. (The while also lets etcd
	// sync the watches, the waiter's and wch, which it does on a 100ms
	// tick: a watch from the current revision starts unsynced.)
	select {
	case res := <-got:
		t.Fatalf("second caller returned while the first holds the lock: %v", res.err)
	case <-time.After(200 * time.Millisecond):
	}
	closed := time.Now()
	first.Close()
	ev := nextEvent(t, wch)
	released := time.Since(closed)
	if ev.Type != clientv3.EventTypeDelete {
		t.Fatalf("event on the first key: %v", ev.Type)
	}
	var res lockResult
	select {
	case res = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("second caller not served within 10s of the release")
	}
	if res.err != nil {
		t.Fatalf("second caller: %v", res.err)
	}
	defer res.h.Close()
	handOff := res.at.Sub(closed)
	t.Logf("close → key deleted in %s, close → second holder in %s", released, handOff)
	if released > 100*time.Millisecond || handOff > 100*time.Millisecond {
		t.Errorf("close → release %s, close → hand-off %s: want both within 100ms", released, handOff)
	}
	ev2 := res.h.Event()
	checkFence(t, cli, ev2, api.EventAcquired, "job", "/sidecar/locks/job")
	if ev2.Fence <= ev1.Fence {
		t.Errorf("fence of the second holder %d, not above the first's %d", ev2.Fence, ev1.Fence)
	}
	if err := first.Err(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("first hold's Err after Close = %v, want net.ErrClosed", err)
	}
}

// TestLockWaitBounds: while the lock is held, wait=0 answers 409 at once,
// wait=300ms answers 409 after 300ms; an election likewise; once the lock
// is free, wait=0 takes it.
func TestLockWaitBounds(t *testing.T) {
	r, _ := coordDaemon(t)
	ctx := t.Context()
	held, err := r.cli.Lock(ctx, "job", nil)
	if err != nil {
		t.Fatal(err)
	}
	lead, err := r.cli.Campaign(ctx, "primary", "a", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lead.Close()
	zero, short := time.Duration(0), 300*time.Millisecond
	tests := []struct {
		name     string
		try      func() (*client.HoldStream, error)
		min, max time.Duration
		msg      string
	}{
		{"lock wait=0", func() (*client.HoldStream, error) { return r.cli.Lock(ctx, "job", &zero) }, 0, time.Second, "held by another holder"},
		{"lock wait=300ms", func() (*client.HoldStream, error) { return r.cli.Lock(ctx, "job", &short) }, short, 5 * time.Second, "not acquired within wait=300ms"},
		{"election wait=0", func() (*client.HoldStream, error) { return r.cli.Campaign(ctx, "primary", "b", &zero) }, 0, time.Second, "another leader"},
		{"election wait=300ms", func() (*client.HoldStream, error) { return r.cli.Campaign(ctx, "primary", "b", &short) }, short, 5 * time.Second, "not won within wait=300ms"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			h, err := tc.try()
			took := time.Since(start)
			if h != nil {
				h.Close()
			}
			var ae *client.APIError
			if !errors.As(err, &ae) || ae.StatusCode != http.StatusConflict || !strings.Contains(ae.Message, tc.msg) {
				t.Fatalf("err = %v, want 409 saying %q", err, tc.msg)
			}
			if took < tc.min || took > tc.max {
				t.Errorf("answered after %s, want between %s and %s", took, tc.min, tc.max)
			}
		})
	}
	held.Close() // the daemon releases once it sees the stream end
	etcdtest.Eventually(t, time.Second, "wait=0 on the released lock", func() error {
		h, err := r.cli.Lock(ctx, "job", &zero)
		if err == nil {
			h.Close()
		}
		return err
	})
}

// TestCoordBadRequests: bad names, waits and bodies are 4xx at once and
// nothing is written to etcd.
func TestCoordBadRequests(t *testing.T) {
	r, cli := coordDaemon(t)
	tests := []struct {
		name, method, path, body string
		want                     int
	}{
		{"lock bad name", "POST", "/v1/locks/-job", "", 400},
		{"lock name with slash", "POST", "/v1/locks/a%2Fb", "", 400},
		{"lock name too long", "POST", "/v1/locks/" + strings.Repeat("x", 129), "", 400},
		{"lock bad wait", "POST", "/v1/locks/job?wait=soon", "", 400},
		{"lock negative wait", "POST", "/v1/locks/job?wait=-1s", "", 400},
		{"lock wait not url encoding", "POST", "/v1/locks/job?wait=0%g", "", 400},
		{"lock query not url encoding", "POST", "/v1/locks/job?wait=1s&%", "", 400},
		{"lock wrong method", "GET", "/v1/locks/job", "", 405},
		{"election bad name", "POST", "/v1/elections/.x", `{"value":"a"}`, 400},
		{"election bad json", "POST", "/v1/elections/primary", `{"value":`, 400},
		{"election unknown field", "POST", "/v1/elections/primary", `{"value":"a","x":1}`, 400},
		{"election no value", "POST", "/v1/elections/primary", `{}`, 400},
		{"election empty body", "POST", "/v1/elections/primary", ``, 400},
		{"election value not a string", "POST", "/v1/elections/primary", `{"value":5}`, 400},
		{"election body too large", "POST", "/v1/elections/primary", `{"value":"` + strings.Repeat("v", maxBodyBytes) + `"}`, 413},
		{"leader bad name", "GET", "/v1/elections/a%20b", "", 400},
		{"leader bad watch", "GET", "/v1/elections/primary?watch=maybe", "", 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			resp, err := r.cli.Do(ctx, tc.method, tc.path, body, tc.want)
			if err != nil {
				t.Fatalf("%s %s: %v, want %d", tc.method, tc.path, err, tc.want)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.want || !strings.HasPrefix(string(b), `{"error":`) {
				t.Fatalf("%s %s = %d %s, want %d with a JSON error", tc.method, tc.path, resp.StatusCode, b, tc.want)
			}
		})
	}
	if n := keysUnder(t, cli, "/sidecar/"); n != 0 {
		t.Errorf("%d keys written by bad requests", n)
	}
}

// TestElectionLeaderAndWatch: the elected event, GET of the leader, a
// watch that shows the leader, then null after the resign, then the next
// leader; GET without a leader is 404 (no leader, not an error, in the
// client).
func TestElectionLeaderAndWatch(t *testing.T) {
	r, cli := coordDaemon(t)
	ctx := t.Context()
	if l, err := r.cli.Leader(ctx, "primary"); err != nil || l.Leader != nil {
		t.Fatalf("leader before any campaign: %+v %v, want none", l, err)
	}
	get(t, r.cli, "/v1/elections/primary", http.StatusNotFound)
	a, err := r.cli.Campaign(ctx, "primary", "node-a", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ev := a.Event()
	checkFence(t, cli, ev, api.EventElected, "primary", "/sidecar/elections/primary")
	l, err := r.cli.Leader(ctx, "primary")
	if err != nil || l.Leader == nil || *l.Leader != "node-a" || l.Key != ev.Key || l.Fence != ev.Fence || l.Name != "primary" {
		t.Fatalf("leader = %+v %v, want node-a at %s fence %d", l, err, ev.Key, ev.Fence)
	}
	w, err := r.cli.WatchLeader(ctx, "primary")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if l, err := w.Next(); err != nil || l.Leader == nil || *l.Leader != "node-a" || l.Fence != ev.Fence {
		t.Fatalf("watch, first line: %+v %v", l, err)
	}
	a.Close()
	if l, err := w.Next(); err != nil || l.Leader != nil || l.Name != "primary" {
		t.Fatalf("watch after the resign: %+v %v, want leader null", l, err)
	}
	if l, err := r.cli.Leader(ctx, "primary"); err != nil || l.Leader != nil {
		t.Fatalf("leader after the resign: %+v %v, want none", l, err)
	}
	b, err := r.cli.Campaign(ctx, "primary", "node-b", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if l, err := w.Next(); err != nil || l.Leader == nil || *l.Leader != "node-b" || l.Fence <= ev.Fence {
		t.Fatalf("watch, next leader: %+v %v, want node-b with a fence above %d", l, err, ev.Fence)
	}
}

// TestHoldOutlivesBodyDeadline: a hold outlives bodyReadTimeout, whether
// its request had a body (a campaign: the deadline is lifted once the body
// is read) or none (a lock: no deadline is set).
func TestHoldOutlivesBodyDeadline(t *testing.T) {
	r, _ := coordDaemon(t)
	ctx := t.Context()
	a, err := r.cli.Campaign(ctx, "primary", "node-a", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	l, err := r.cli.Lock(ctx, "job", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	time.Sleep(bodyReadTimeout + 2*time.Second) // a deadline left on a connection has passed by now
	st, err := r.cli.Status(ctx)
	if err != nil || len(st.Elections) != 1 || st.Elections[0].Waiting || len(st.Locks) != 1 || st.Locks[0].Waiting {
		t.Fatalf("status %s after the campaign and the lock: %+v %v, want both held", bodyReadTimeout+2*time.Second, st, err)
	}
}

// TestHoldsInStatusAndMetrics: a held lock and a led election show in
// /v1/status with the holder's pid and uid (SO_PEERCRED) and in the
// metrics; once given up they leave both.
func TestHoldsInStatusAndMetrics(t *testing.T) {
	r, _ := coordDaemon(t)
	ctx := t.Context()
	start := time.Now().Add(-time.Second) // held_since has whole seconds
	lk, err := r.cli.Lock(ctx, "job", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Close()
	el, err := r.cli.Campaign(ctx, "primary", "node-a", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer el.Close()
	st, err := r.cli.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Locks) != 1 || len(st.Elections) != 1 {
		t.Fatalf("status locks %+v elections %+v, want one each", st.Locks, st.Elections)
	}
	checkHold(t, st.Locks[0], api.KindLock, "job", "", lk.Event(), start)
	checkHold(t, st.Elections[0], api.KindElection, "primary", "node-a", el.Event(), start)
	m := get(t, r.cli, "/metrics", http.StatusOK)
	for series, want := range map[string]float64{
		"sidecar_locks_held": 1, "sidecar_elections_led": 1,
		`sidecar_coordination_acquired_total{kind="lock"}`: 1, `sidecar_coordination_acquired_total{kind="election"}`: 1,
		`sidecar_coordination_lost_total{kind="lock",reason="session"}`: 0,
	} {
		if got := metricValue(m, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	lk.Close()
	el.Close()
	etcdtest.Eventually(t, 5*time.Second, "holds gone from status and metrics", func() error {
		st, err := r.cli.Status(ctx)
		if err != nil || len(st.Locks)+len(st.Elections) != 0 {
			return fmt.Errorf("%+v %+v %v", st.Locks, st.Elections, err)
		}
		m := get(t, r.cli, "/metrics", http.StatusOK)
		if metricValue(m, "sidecar_locks_held") != 0 || metricValue(m, "sidecar_elections_led") != 0 {
			return errors.New("gauges not back to 0")
		}
		return nil
	})
}

func checkHold(t *testing.T, h api.Hold, kind, name, value string, ev api.HoldEvent, start time.Time) {
	t.Helper()
	since, err := time.Parse(time.RFC3339, h.HeldSince)
	if h.Kind != kind || h.Name != name || h.Value != value || h.Key != ev.Key || h.Fence != ev.Fence ||
		h.PID != os.Getpid() || h.UID == nil || *h.UID != os.Getuid() || err != nil || since.Before(start) || since.After(time.Now()) {
		t.Errorf("hold %+v (uid %v), want %s %s=%q at %s fence %d held by pid %d uid %d since %s",
			h, h.UID, kind, name, value, ev.Key, ev.Fence, os.Getpid(), os.Getuid(), start.Format(time.RFC3339))
	}
}
