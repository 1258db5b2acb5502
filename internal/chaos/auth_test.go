package chaos

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// The users and prefixes of the auth scenario: root administers, the
// sidecar's user may read and write its namespace and read the mirrored
// config prefix, as an operator would grant them.
const (
	authUser   = "sidecar"
	authPass   = "sidecar-pw"
	authPrefix = "/config/auth/"
	authID     = "auth"
)

// authNewWorld starts a three-member cluster whose members all get args,
// with an observer client of the members (no proxies).
func authNewWorld(t *testing.T, args ...string) *world {
	t.Helper()
	c := etcdtest.StartCluster(t, 3, etcdtest.ServerOptions{Args: args})
	return &world{cluster: c, cli: c.Client(t)}
}

// authEnable adds root and the sidecar's user and role, enables auth, and
// makes the world's observer a client authenticated as root.
func authEnable(t *testing.T, w *world) {
	t.Helper()
	w.cli = etcdtest.EnableAuth(t, w.cli, authUser, authPass,
		etcdtest.Grant{Prefix: namespace, Perm: clientv3.PermissionType(clientv3.PermReadWrite)},
		etcdtest.Grant{Prefix: authPrefix, Perm: clientv3.PermissionType(clientv3.PermRead)})
}

// authYAML is the sidecar of the auth scenario: join mode as the
// sidecar's user, a registration, a config mapping of authPrefix into dir.
func authYAML(t *testing.T, w *world, dir string) string {
	return fmt.Sprintf(`name: %s
data_dir: %s
etcd: {endpoints: %s, username: %s, password: %s}
service: {name: %s, id: %s, address: 127.0.0.1, port: 9000, ttl: %s}
coordination: {ttl: %s}
config:
  - {prefix: %s, dir: %s}
`, authID, t.TempDir(), w.endpoints(true), authUser, authPass, service, authID, ttl, coordTTL, authPrefix, dir)
}

// TestAuthTokenTTL: a cluster with auth enabled and simple tokens that
// expire after 1 s unused (--auth-token-ttl=1); the sidecar joins as a
// user with readwrite on its namespace and read on a config prefix, and
// registers, mirrors that prefix and holds a lock for a wrapped command.
// A value is put each second (5 short, 60 full). Pass: each value reaches
// its file within mirrorBound; the registration stays under the same
// lease; /v1/health stays 200; the held command is never stopped. Then,
// with the token expired, two commands contend for a second lock: both
// run, within lockBound of the start; and discovery of the service, asked
// for the first time, answers fresh with the instance within lockBound, and stays fresh.
// Then both followers are SIGKILLed and restarted (they forget the tokens
// they issued): a put is still mirrored and a lock taken within
// lockBound. Before the restarts the members had refused at least one
// expired token (the run exercised re-authentication). A sidecar restarted as the same user
// registers again, and after its SIGTERM etcd holds no key of the
// namespace and no lease.
func TestAuthTokenTTL(t *testing.T) {
	const (
		mirrorBound = 2 * time.Second
		lockBound   = 3 * time.Second
	)
	w := authNewWorld(t, "--auth-token=simple", "--auth-token-ttl=1")
	authEnable(t, w)
	dir := filepath.Join(t.TempDir(), "config")
	yaml := authYAML(t, w, dir)
	p := startSidecar(t, yaml)
	lease, _ := waitRegistered(t, w, regKey(authID), 0, 15*time.Second)
	marks := filepath.Join(t.TempDir(), "marks")
	holder := p.run(t, "lock", "job", "--", "sh", "-c", holderScript, "sh", marks)
	waitMark(t, marks, "held", 15*time.Second)

	puts := trials(5, 60)
	mirrored := authChurn(t, w, p, dir, lease, holder, puts)
	mirrored.figure(t, fmt.Sprintf("bound_ms=%d", mirrorBound.Milliseconds()), "token_ttl_s=1", "lease_kept=true")
	if m := mirrored.quantile(1); m > mirrorBound {
		t.Errorf("a put reached its file %s after it was made, want <= %s", m, mirrorBound)
	}

	time.Sleep(2 * time.Second) // nothing but keep-alives: the sidecar's token expires
	second := sample{name: "auth_second_lock"}
	begin := time.Now()
	// Two at once: one waits for the other, on a watch created after the
	// token expired (etcd refuses such a watch on an old stream).
	both := []*wrapper{
		p.run(t, "lock", "--wait", "10s", "other", "--", "sleep", "0.3"),
		p.run(t, "lock", "--wait", "10s", "other", "--", "sleep", "0.3"),
	}
	for i, wr := range both {
		if code := wr.wait(t, 15*time.Second); code != 0 {
			t.Fatalf("contended lock %d after the token expired: exit %d; stderr: %s", i, code, wr.stderr)
		}
	}
	second.add(time.Since(begin))
	second.figure(t, fmt.Sprintf("bound_ms=%d", lockBound.Milliseconds()))
	if second.ds[0] > lockBound {
		t.Errorf("second lock took %s, want <= %s", second.ds[0], lockBound)
	}
	// A service asked for the first time is watched on the stream the
	// registration's and the mapping's watches keep open. The lock
	// waiter's new stream came with a new token, so the old stream's
	// token is used no more, and expires.
	time.Sleep(2500 * time.Millisecond)
	fresh := sample{name: "auth_discovery_fresh"}
	fresh.add(waitAPI(t, p, lockBound))
	fresh.figure(t, fmt.Sprintf("bound_ms=%d", lockBound.Milliseconds()))
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		var s api.Service
		if code, err := p.get("/v1/services/"+service, &s); err != nil || code != http.StatusOK || s.Stale {
			t.Fatalf("discovery after its first answer: %d %v stale=%v", code, err, s.Stale)
		}
	}
	if b, at := markTimes(marks); !at["stopped"].IsZero() || authDone(holder) {
		t.Errorf("the held command was stopped during the run:\n%s\nwrapper stderr: %s", b, holder.stderr)
	}
	holder.stop()
	expired := authInvalidTokens(t, w)
	if expired == 0 {
		t.Errorf("no member refused an expired token: the run did not exercise re-authentication")
	}
	authForgotten(t, w, p, dir, lockBound)
	t.Logf("FIGURE scenario=auth_tokens_refused form=%s expired_before_restarts=%d after_restarts=%d",
		form(), expired, authInvalidTokens(t, w)-expired)
	authRestart(t, w, p, yaml)
}

// authInvalidTokens counts the requests the members refused for an
// invalid (expired) token, from their logs.
func authInvalidTokens(t *testing.T, w *world) int {
	t.Helper()
	n := 0
	for _, m := range w.cluster.Members {
		b, err := os.ReadFile(m.LogFile)
		if err != nil {
			t.Fatalf("read %s: %v", m.LogFile, err)
		}
		n += strings.Count(string(b), `"invalid auth token"`)
	}
	return n
}

// authChurn puts puts new values under authPrefix, one a second, and
// returns how long each took to reach its file. After each put it checks that the registration is still under
// lease, health is 200 and the holder still runs.
func authChurn(t *testing.T, w *world, p *sidecarProc, dir string, lease clientv3.LeaseID, holder *wrapper, puts int) sample {
	t.Helper()
	s := sample{name: "auth_config_mirrored"}
	file := filepath.Join(dir, "k")
	for i := range puts {
		v := fmt.Sprintf("v%d", i)
		c, cancel := ctx(t)
		_, err := w.cli.Put(c, authPrefix+"k", v)
		cancel()
		if err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
		at := time.Now()
		s.add(etcdtest.Eventually(t, 10*time.Second, "file has "+v, func() error {
			if b, err := os.ReadFile(file); err != nil || string(b) != v {
				return fmt.Errorf("file %q, %v", b, err)
			}
			return nil
		}))
		if l, err := w.lease(t, regKey(authID)); err != nil || l != lease {
			t.Fatalf("put %d: registration under lease %x (%v), want %x", i, l, err, lease)
		}
		if code, err := p.get("/v1/health", nil); code != 200 {
			t.Fatalf("put %d: health %d %v", i, code, err)
		}
		if authDone(holder) {
			t.Fatalf("put %d: the lock holder exited %d: %s", i, holder.code, holder.stderr)
		}
		time.Sleep(time.Until(at.Add(time.Second)))
	}
	return s
}

// authRestart stops p with SIGTERM (its registration gone at once), starts
// a new sidecar of yaml, which registers again as the same user, stops it
// too and checks that etcd holds nothing of the namespace.
func authRestart(t *testing.T, w *world, p *sidecarProc, yaml string) {
	t.Helper()
	if code := p.signal(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	waitGone(t, w, regKey(authID), p.exitAt, time.Second)
	p2 := startSidecar(t, yaml)
	again := sample{name: "auth_restart_registered"}
	begin := time.Now()
	waitRegistered(t, w, regKey(authID), 0, 15*time.Second)
	again.add(time.Since(begin))
	again.figure(t)
	if code := p2.signal(t, syscall.SIGTERM); code != 0 {
		t.Errorf("restarted sidecar: exit code %d after SIGTERM, want 0", code)
	}
	_, n := w.settle(t, ttl+3*time.Second, 0)
	t.Logf("FIGURE scenario=auth_leases form=%s leases_live=%d leases_leaked=%d", form(), len(n.live), len(n.leaked))
}

// authForgotten SIGKILLs and restarts every follower in turn, so that
// the members forget the tokens they issued, and then checks that the
// sidecar still mirrors a put and takes a lock within bound. (No hold is
// kept across the restarts: on a loaded machine a restart can cost an
// election, which can outlast the 2 s TTL; see
// TestLeaderKilledDuringHandOff.)
func authForgotten(t *testing.T, w *world, p *sidecarProc, dir string, bound time.Duration) {
	t.Helper()
	leader := w.cluster.Leader(t)
	for i, m := range w.cluster.Members {
		if i != leader {
			m.Kill()
			m.Restart()
		}
	}
	c, cancel := ctx(t)
	_, err := w.cli.Put(c, authPrefix+"k", "after-restarts")
	cancel()
	if err != nil {
		t.Fatalf("put after the restarts: %v", err)
	}
	at := etcdtest.Eventually(t, 10*time.Second, "mirrored after the restarts", func() error {
		if b, err := os.ReadFile(filepath.Join(dir, "k")); err != nil || string(b) != "after-restarts" {
			return fmt.Errorf("file %q, %v", b, err)
		}
		return nil
	})
	begin := time.Now()
	if code := p.run(t, "lock", "--wait", "10s", "other", "--", "true").wait(t, 15*time.Second); code != 0 {
		t.Fatalf("lock after the members forgot their tokens: exit %d", code)
	}
	took := time.Since(begin)
	t.Logf("FIGURE scenario=auth_tokens_forgotten form=%s followers_restarted=%d mirrored_ms=%s lock_ms=%s bound_ms=%d",
		form(), len(w.cluster.Members)-1, ms(at), ms(took), bound.Milliseconds())
	if took > bound {
		t.Errorf("lock after the restarts took %s, want <= %s", took, bound)
	}
}

// authDone reports whether the wrapper has exited.
func authDone(w *wrapper) bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}
