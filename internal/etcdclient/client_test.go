package etcdclient_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/internal/etcdclient"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// slack is what a failing Check may take beyond its DialTimeout.
const slack = 1500 * time.Millisecond

// connErrs returns the *ConnErrors in err, failing the test if there are none.
func connErrs(t *testing.T, err error) []*etcdclient.ConnError {
	t.Helper()
	var out []*etcdclient.ConnError
	var walk func(error)
	walk = func(err error) {
		if ce, ok := err.(*etcdclient.ConnError); ok {
			out = append(out, ce)
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		}
	}
	walk(err)
	if len(out) == 0 {
		t.Fatalf("no *ConnError in %T %v", err, err)
	}
	return out
}

// wantConnError asserts that err holds exactly one *ConnError, for endpoint
// ep and of kind k, and that its message contains each of subs.
func wantConnError(t *testing.T, err error, ep string, k etcdclient.Kind, subs ...string) *etcdclient.ConnError {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s error for %s", k, ep)
	}
	t.Logf("error: %v", err)
	ces := connErrs(t, err)
	if len(ces) != 1 {
		t.Fatalf("%d ConnErrors, want 1: %v", len(ces), err)
	}
	ce := ces[0]
	if ce.Endpoint != ep || ce.Kind != k {
		t.Errorf("ConnError{Endpoint: %q, Kind: %s}, want {%q, %s}", ce.Endpoint, ce.Kind, ep, k)
	}
	prefix := "etcd endpoint " + ep + ": "
	if !strings.Contains(err.Error(), prefix) {
		t.Errorf("error %q does not contain %q", err, prefix)
	}
	for _, sub := range subs {
		if !strings.Contains(err.Error(), sub) {
			t.Errorf("error %q does not contain %q", err, sub)
		}
	}
	if strings.HasSuffix(err.Error(), "context deadline exceeded") {
		t.Errorf("error %q ends in a bare context deadline exceeded", err)
	}
	wantPermanent := k == etcdclient.KindTLS || k == etcdclient.KindAuth
	if got := etcdclient.Permanent(err); got != wantPermanent {
		t.Errorf("Permanent = %v, want %v", got, wantPermanent)
	}
	return ce
}

// newChecked builds a client for cfg and checks it, failing the test on error.
func newChecked(t *testing.T, cfg etcdclient.Config) *clientv3.Client {
	t.Helper()
	cli, err := etcdclient.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	if err := etcdclient.Check(t.Context(), cli, cfg); err != nil {
		t.Fatalf("Check: %v", err)
	}
	return cli
}

// checkErr builds a client for cfg and returns Check's error and duration.
func checkErr(t *testing.T, cfg etcdclient.Config) (error, time.Duration) {
	t.Helper()
	start := time.Now()
	cli, err := etcdclient.New(t.Context(), cfg)
	if err != nil {
		return err, time.Since(start)
	}
	defer cli.Close()
	err = etcdclient.Check(t.Context(), cli, cfg)
	return err, time.Since(start)
}

func putGet(t *testing.T, cli *clientv3.Client) {
	t.Helper()
	key := "etcdclient-test/" + t.Name()
	if _, err := cli.Put(t.Context(), key, "v"); err != nil {
		t.Fatalf("put: %v", err)
	}
	resp, err := cli.Get(t.Context(), key)
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("get: %v %v", resp, err)
	}
}

func TestPlain(t *testing.T) {
	s := etcdtest.StartServer(t, etcdtest.ServerOptions{})
	hostPort := strings.TrimPrefix(s.ClientURL, "http://")

	for _, ep := range []string{s.ClientURL, hostPort} {
		t.Run(ep, func(t *testing.T) {
			cli := newChecked(t, etcdclient.Config{Endpoints: []string{ep}})
			putGet(t, cli)
		})
	}
	t.Run("one endpoint down", func(t *testing.T) {
		dead := fmt.Sprintf("127.0.0.1:%d", etcdtest.FreePort(t))
		cli := newChecked(t, etcdclient.Config{Endpoints: []string{dead, hostPort}})
		putGet(t, cli)
	})
	t.Run("https to a plain server", func(t *testing.T) {
		ep := "https://" + hostPort
		err, _ := checkErr(t, etcdclient.Config{Endpoints: []string{ep}, DialTimeout: 2 * time.Second})
		wantConnError(t, err, ep, etcdclient.KindTLS, "TLS handshake failed: the server does not speak TLS", "use an http:// endpoint")
	})
	t.Run("stopped process", func(t *testing.T) {
		cfg := etcdclient.Config{Endpoints: []string{s.ClientURL}, DialTimeout: 2 * time.Second}
		cli := newChecked(t, cfg)
		s.Pause()
		err := etcdclient.Check(t.Context(), cli, cfg)
		s.Resume()
		wantConnError(t, err, s.ClientURL, etcdclient.KindTimeout, "no response within 2s")
		if err := etcdclient.Check(t.Context(), cli, cfg); err != nil {
			t.Fatalf("Check after resume: %v", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		cfg := etcdclient.Config{Endpoints: []string{s.ClientURL}}
		cli := newChecked(t, cfg)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		err := etcdclient.Check(ctx, cli, cfg)
		if !errors.Is(err, context.Canceled) || etcdclient.Permanent(err) {
			t.Fatalf("Check with a cancelled context = %v, want context.Canceled", err)
		}
	})
}

func TestRefused(t *testing.T) {
	ep := fmt.Sprintf("127.0.0.1:%d", etcdtest.FreePort(t))
	cfg := etcdclient.Config{Endpoints: []string{ep}, DialTimeout: 3 * time.Second}
	err, took := checkErr(t, cfg)
	ce := wantConnError(t, err, ep, etcdclient.KindRefused, "connection refused")
	if got, want := ce.Error(), "etcd endpoint "+ep+": connection refused"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if took > cfg.DialTimeout+slack {
		t.Errorf("took %s, want at most %s", took, cfg.DialTimeout+slack)
	}
}

// silentListener returns the address of a TCP listener that never answers:
// it accepts and holds connections, or leaves them in the backlog.
func silentListener(t *testing.T, accept bool) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	go func() {
		defer close(done)
		if !accept {
			return
		}
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	return l.Addr().String()
}

func TestBlackhole(t *testing.T) {
	cases := []struct {
		name   string
		accept bool
		user   string // with a user, New authenticates and fails itself
	}{
		{"backlog", false, ""},
		{"accepted", true, ""},
		{"accepted, authenticating", true, "root"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ep := silentListener(t, tc.accept)
			cfg := etcdclient.Config{Endpoints: []string{ep}, DialTimeout: 2 * time.Second}
			if tc.user != "" {
				cfg.Username, cfg.Password = tc.user, "pw"
			}
			err, took := checkErr(t, cfg)
			wantConnError(t, err, ep, etcdclient.KindTimeout, "no response within 2s")
			if took > cfg.DialTimeout+slack {
				t.Errorf("took %s, want at most %s", took, cfg.DialTimeout+slack)
			}
		})
	}
	t.Run("caller's deadline while authenticating", func(t *testing.T) {
		ep := silentListener(t, true)
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := etcdclient.New(ctx, etcdclient.Config{Endpoints: []string{ep}, Username: "root", Password: "pw"})
		if took := time.Since(start); took > time.Second {
			t.Errorf("New took %s, want about 300ms", took)
		}
		// The budget is what is left of the deadline when New starts, to
		// 10ms: 290ms if New started more than 5ms after it was set.
		ce := wantConnError(t, err, ep, etcdclient.KindTimeout)
		if !strings.Contains(err.Error(), "no response within 300ms") && ce.Timeout != 290*time.Millisecond {
			t.Errorf("error %q: want no response within 300ms", err)
		}
	})
	t.Run("cancelled while authenticating", func(t *testing.T) {
		ep := silentListener(t, true)
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(300*time.Millisecond, cancel)
		start := time.Now()
		_, err := etcdclient.New(ctx, etcdclient.Config{Endpoints: []string{ep}, Username: "root", Password: "pw"})
		if took := time.Since(start); took > time.Second {
			t.Errorf("New took %s, want about 300ms", took)
		}
		if !errors.Is(err, context.Canceled) || etcdclient.Permanent(err) {
			t.Fatalf("New = %v, want context.Canceled", err)
		}
	})
}

func TestSeveralEndpointsDown(t *testing.T) {
	refused := fmt.Sprintf("127.0.0.1:%d", etcdtest.FreePort(t))
	silent := silentListener(t, false)
	cfg := etcdclient.Config{Endpoints: []string{refused, silent}, DialTimeout: 2 * time.Second}
	err, _ := checkErr(t, cfg)
	t.Logf("error: %v", err)
	ces := connErrs(t, err)
	if len(ces) != 2 || ces[0].Endpoint != refused || ces[0].Kind != etcdclient.KindRefused ||
		ces[1].Endpoint != silent || ces[1].Kind != etcdclient.KindTimeout {
		t.Fatalf("ConnErrors = %v, want refused %s and timeout %s", err, refused, silent)
	}
}

// TestNoLeader makes a single member lose quorum by adding a second member
// that never starts; etcd then answers "no leader".
func TestNoLeader(t *testing.T) {
	s := etcdtest.StartServer(t, etcdtest.ServerOptions{Args: []string{"--strict-reconfig-check=false"}})
	cfg := etcdclient.Config{Endpoints: []string{s.ClientURL}, DialTimeout: 2 * time.Second}
	cli := newChecked(t, cfg)
	peer := fmt.Sprintf("--peer-urls=http://127.0.0.1:%d", etcdtest.FreePort(t))
	if _, err := etcdtest.Etcdctl(t, s.ClientURL, "member", "add", "ghost", peer); err != nil {
		t.Fatal(err)
	}
	// Until the leader notices it lost quorum, reads time out.
	var err error
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		err = etcdclient.Check(t.Context(), cli, cfg)
		t.Logf("Check: %v", err)
		if ce := (*etcdclient.ConnError)(nil); errors.As(err, &ce) && ce.Kind != etcdclient.KindTimeout {
			break
		}
	}
	wantConnError(t, err, s.ClientURL, etcdclient.KindUnavailable, "unavailable: etcdserver: no leader")
}
