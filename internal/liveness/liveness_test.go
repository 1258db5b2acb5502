package liveness_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/internal/etcdclient"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
	"github.com/sidecar-dev/sidecar/internal/liveness"
)

func TestMain(m *testing.M) { etcdtest.RunWithLeakCheck(m, 10*time.Second) }

// newClient is the daemon's kind of client (etcdclient: bounded reconnect
// backoff, gRPC keep-alive) of endpoint.
func newClient(t *testing.T, endpoint string) *clientv3.Client {
	t.Helper()
	cli, err := etcdclient.New(t.Context(), etcdclient.Config{Endpoints: []string{endpoint}})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// start runs a monitor of cli until the test ends and waits for its first
// answer.
func start(t *testing.T, cli *clientv3.Client) *liveness.Monitor {
	t.Helper()
	m, err := liveness.New(cli, liveness.Config{Key: "/sidecar/health"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	etcdtest.Eventually(t, 5*time.Second, "first answer", upIs(m, true))
	return m
}

func upIs(m *liveness.Monitor, want bool) func() error {
	return func() error {
		if st := m.State(); st.Up != want {
			return fmt.Errorf("state %+v", st)
		}
		return nil
	}
}

// cut runs one outage: etcd goes silent through silence, is seen down,
// comes back through heal and is seen up; it returns both delays.
func cut(t *testing.T, m *liveness.Monitor, silence, heal func()) (down, up time.Duration) {
	t.Helper()
	silence()
	down = etcdtest.Eventually(t, 3*time.Second, "down after the cut", upIs(m, false))
	if st := m.State(); st.Reason == "" || !st.Answered {
		t.Errorf("down state without a reason: %+v", st)
	}
	time.Sleep(2 * time.Second) // a longer outage: answers that were queued are stale now
	heal()
	up = etcdtest.Eventually(t, time.Second, "up after the link came back", upIs(m, true))
	return down, up
}

func TestBlackholeSeenInSeconds(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	p := etcdtest.StartProxy(t, e.ClientURL)
	m := start(t, newClient(t, p.URL()))
	for i := range 2 {
		down, up := cut(t, m, p.Blackhole, p.Heal)
		t.Logf("cut %d: down after %s, up %s after heal", i, down, up)
	}
}

func TestPausedEtcdSeenInSeconds(t *testing.T) {
	s := etcdtest.StartServer(t, etcdtest.ServerOptions{})
	m := start(t, newClient(t, s.ClientURL))
	down, up := cut(t, m, s.Pause, s.Resume)
	t.Logf("SIGSTOP: down after %s, up %s after SIGCONT", down, up)
}

func TestRefusedSeenAtOnce(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	p := etcdtest.StartProxy(t, e.ClientURL)
	m := start(t, newClient(t, p.URL()))
	down, up := cut(t, m, p.Drop, p.Heal)
	t.Logf("dropped: down after %s, up %s after heal", down, up)
}

// TestWaitForChange: a waiter learns of each change; a cancelled wait
// returns false.
func TestWaitForChange(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	p := etcdtest.StartProxy(t, e.ClientURL)
	m := start(t, newClient(t, p.URL()))
	changed := make(chan bool, 1)
	go func() { changed <- m.WaitForChange(t.Context(), true) }()
	p.Blackhole()
	select {
	case ok := <-changed:
		if !ok || m.Up() {
			t.Fatalf("WaitForChange returned %v with Up %v", ok, m.Up())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitForChange did not return after the blackhole")
	}
	p.Heal()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if m.WaitForChange(ctx, m.Up()) {
		t.Error("WaitForChange with a cancelled ctx returned true")
	}
}

// TestQuietWhileUp: an idle monitor keeps etcd up, with answers about once
// per interval and never a revision change.
func TestQuietWhileUp(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	m := start(t, newClient(t, e.ClientURL))
	before, err := cli.Get(t.Context(), "x")
	if err != nil {
		t.Fatal(err)
	}
	var last time.Time
	answers := 0
	for end := time.Now().Add(3500 * time.Millisecond); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		st := m.State()
		if !st.Up {
			t.Fatalf("down while etcd is up: %+v", st)
		}
		if st.LastAnswer != last {
			last, answers = st.LastAnswer, answers+1
		}
	}
	if answers < 2 || answers > 6 {
		t.Errorf("%d answers in 3.5s, want about one a second", answers)
	}
	after, err := cli.Get(t.Context(), "x")
	if err != nil {
		t.Fatal(err)
	}
	if after.Header.Revision != before.Header.Revision {
		t.Errorf("revision moved from %d to %d: the monitor wrote", before.Header.Revision, after.Header.Revision)
	}
}

func TestNewRefuses(t *testing.T) {
	if _, err := liveness.New(nil, liveness.Config{Key: "k"}); err == nil {
		t.Error("nil client accepted")
	}
	e := etcdtest.StartEmbedded(t)
	if _, err := liveness.New(e.Client(t), liveness.Config{}); err == nil || errors.Is(err, context.Canceled) {
		t.Errorf("empty key: %v", err)
	}
}

func TestRestartedEtcd(t *testing.T) {
	s := etcdtest.StartServer(t, etcdtest.ServerOptions{})
	m := start(t, newClient(t, s.ClientURL))
	down, up := cut(t, m, s.Stop, s.Restart)
	t.Logf("restart: down after %s, up %s after restart", down, up)
}

// TestRefusalIsAnAnswer: a member that refuses the monitor's watch
// answered, so etcd counts as up. Two refusals: a key the user may not
// read (the monitor opens its watch again each Interval), and, with etcd's
// simple tokens, a watch created on a stream whose token the member no
// longer knows (expired after --auth-token-ttl unused). For the second,
// another watch keeps the monitor's stream open while the stream's token
// expires, so every watch created on it is refused; the daemon's client
// (etcdclient) then creates the watch on a new stream.
func TestRefusalIsAnAnswer(t *testing.T) {
	const user, pass = "reader", "pw"
	s := etcdtest.StartServer(t, etcdtest.ServerOptions{Args: []string{"--auth-token=simple", "--auth-token-ttl=1"}})
	etcdtest.EnableAuth(t, s.Client(t), user, pass, etcdtest.Grant{Prefix: "/sidecar/", Perm: clientv3.PermissionType(clientv3.PermRead)})
	ctx := t.Context()
	cli, err := etcdclient.New(ctx, etcdclient.Config{Endpoints: []string{s.ClientURL}, Username: user, Password: pass})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })

	t.Run("expired token", func(t *testing.T) {
		kctx, cancel := context.WithCancel(liveness.StreamContext(ctx))
		defer cancel()
		keeper := cli.Watch(kctx, "/sidecar/health", clientv3.WithCreatedNotify())
		if wr := <-keeper; wr.Err() != nil {
			t.Fatalf("keeper watch: %v", wr.Err())
		}
		time.Sleep(2500 * time.Millisecond) // the stream's token expires unused
		staysUp(t, cli, "/sidecar/health")
	})
	t.Run("key not readable", func(t *testing.T) {
		staysUp(t, cli, "/elsewhere/health")
	})
}

// staysUp runs a monitor of key on cli and checks that it comes up within
// 3 s and stays up for 3 s, longer than Silence: the answers to its
// progress requests must reach it.
func staysUp(t *testing.T, cli *clientv3.Client, key string) {
	t.Helper()
	m, err := liveness.New(cli, liveness.Config{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() { stop(); <-done }()
	etcdtest.Eventually(t, 3*time.Second, "up on refusals", upIs(m, true))
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if st := m.State(); !st.Up {
			t.Fatalf("down while etcd answers: %+v", st)
		}
	}
}
