package chaos

import (
	"errors"
	"fmt"
	"net/http"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// ttl is the registration TTL of the scenarios: the smallest the
// configuration allows, so that losses show quickly.
const ttl = 2 * time.Second

// service is the service name the scenarios register.
const service = "chaos"

// regKey is the etcd key of instance id of service.
func regKey(id string) string { return namespace + "services/" + service + "/" + id }

// regYAML is a sidecar configuration that registers instance id of service
// with the TTL ttl through endpoints (a YAML list).
func regYAML(t *testing.T, endpoints, id string) string {
	return fmt.Sprintf(`name: %s
data_dir: %s
etcd: {endpoints: %s}
service: {name: %s, id: %s, address: 127.0.0.1, port: 9000, ttl: %s}
`, id, t.TempDir(), endpoints, service, id, ttl)
}

// waitRegistered waits until key exists under a lease other than old and
// returns that lease and how long the wait took.
func waitRegistered(t *testing.T, w *world, key string, old clientv3.LeaseID, within time.Duration) (clientv3.LeaseID, time.Duration) {
	t.Helper()
	var lease clientv3.LeaseID
	took := etcdtest.Eventually(t, within, "registration "+key, func() error {
		l, err := w.lease(t, key)
		switch {
		case err != nil:
			return err
		case l == 0:
			return errors.New("key absent")
		case l == old:
			return fmt.Errorf("key still under the old lease %x", l)
		}
		lease = l
		return nil
	})
	return lease, took
}

// waitGone waits up to within for key to be absent and returns the time
// from since until it was seen absent.
func waitGone(t *testing.T, w *world, key string, since time.Time, within time.Duration) time.Duration {
	t.Helper()
	etcdtest.Eventually(t, within, "key "+key+" gone", func() error {
		l, err := w.lease(t, key)
		if err == nil && l != 0 {
			err = fmt.Errorf("still present under lease %x", l)
		}
		return err
	})
	return time.Since(since)
}

// TestDeregistration: a sidecar killed with SIGKILL loses its registration
// when its lease expires, within TTL + 1 s of its death; a sidecar stopped
// with SIGTERM revokes it before it exits 0, so the key is gone within
// 100 ms of the exit. Each trial is a new sidecar process; at the end etcd
// holds no key of the namespace and no lease.
func TestDeregistration(t *testing.T) {
	w := newWorld(t)
	cases := []struct {
		name  string
		sig   syscall.Signal
		bound time.Duration // from the process's exit to the key's absence
	}{
		{"sigkill", syscall.SIGKILL, ttl + time.Second},
		{"sigterm", syscall.SIGTERM, 100 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			gone := sample{name: tc.name + "_deregister"}
			exit := sample{name: tc.name + "_exit"}
			for i := range trials(3, 20) {
				id := fmt.Sprintf("%s-%d", tc.name, i)
				p := startSidecar(t, regYAML(t, w.endpoints(true), id))
				waitRegistered(t, w, regKey(id), 0, 10*time.Second)
				sent := time.Now()
				code := p.signal(t, tc.sig)
				exit.add(p.exitAt.Sub(sent))
				if tc.sig == syscall.SIGTERM && code != 0 {
					t.Errorf("trial %d: exit code %d after SIGTERM, want 0", i, code)
				}
				d := waitGone(t, w, regKey(id), p.exitAt, tc.bound+5*time.Second)
				gone.add(d)
				if d > tc.bound {
					t.Errorf("trial %d: key gone %s after the exit, want <= %s", i, d, tc.bound)
				}
			}
			gone.figure(t, fmt.Sprintf("bound_ms=%d", tc.bound.Milliseconds()), fmt.Sprintf("ttl_ms=%d", ttl.Milliseconds()))
			exit.figure(t)
			_, n := w.settle(t, ttl+3*time.Second, 0)
			t.Logf("FIGURE scenario=%s_leases form=%s leases_live=%d leases_leaked=%d", tc.name, form(), len(n.live), len(n.leaked))
		})
	}
}

// TestBlackholeReregisters: every etcd link of a sidecar is blackholed for
// 3 x TTL, then restored, for several cycles. During each cut, within
// cutBound, /v1/health answers 503 and GET /v1/services/NAME answers from
// the cache with stale: true and the instance; by the end of the cut etcd
// has expired the registration. After each restore the instance is
// registered again, under a new lease, /v1/health is 200 and discovery is
// fresh, within reregisterBound. At the end etcd holds exactly the
// registration key under one live lease (0 leaked), and after SIGTERM
// nothing.
func TestBlackholeReregisters(t *testing.T) {
	const (
		cutBound = 3 * time.Second // the brief's bound for health and discovery to show the cut
		// reregisterBound is SPEC §6: registered again within 1 s of etcd
		// being reachable.
		reregisterBound = time.Second
		cut             = 3 * ttl
	)
	w := newWorld(t)
	const id = "cut"
	key := regKey(id)
	p := startSidecar(t, regYAML(t, w.endpoints(false), id))
	lease, _ := waitRegistered(t, w, key, 0, 10*time.Second)
	waitAPI(t, p, 10*time.Second)
	unhealthy := sample{name: "blackhole_health_503"}
	stale := sample{name: "blackhole_discovery_stale"}
	expired := sample{name: "blackhole_key_expired"}
	rereg := sample{name: "blackhole_reregistered"}
	recovered := sample{name: "blackhole_api_recovered"}
	for i := range trials(2, 20) {
		start := time.Now()
		w.blackhole()
		h, s := waitCutSeen(t, p, start, cutBound+5*time.Second)
		unhealthy.add(h)
		stale.add(s)
		if h > cutBound || s > cutBound {
			t.Errorf("cycle %d: health 503 after %s, stale after %s, want both <= %s", i, h, s, cutBound)
		}
		expired.add(waitGone(t, w, key, start, cut))
		time.Sleep(time.Until(start.Add(cut)))
		healed := time.Now()
		w.heal()
		var d time.Duration
		lease, d = waitRegistered(t, w, key, lease, reregisterBound+10*time.Second)
		rereg.add(d)
		waitAPI(t, p, reregisterBound+10*time.Second)
		back := time.Since(healed)
		recovered.add(back)
		if d > reregisterBound || back > reregisterBound {
			t.Errorf("cycle %d: registered again %s after the restore, API recovered after %s, want both <= %s", i, d, back, reregisterBound)
		}
	}
	bound := func(d time.Duration) string { return fmt.Sprintf("bound_ms=%d", d.Milliseconds()) }
	unhealthy.figure(t, bound(cutBound))
	stale.figure(t, bound(cutBound))
	expired.figure(t, bound(cut))
	rereg.figure(t, bound(reregisterBound))
	recovered.figure(t, bound(reregisterBound))
	_, n := w.settle(t, ttl+3*time.Second, 1, key)
	if n.live[0] != lease {
		t.Errorf("live lease %x, want the registration's %x", n.live[0], lease)
	}
	t.Logf("FIGURE scenario=blackhole_leases form=%s cycles=%d leases_live=%d leases_leaked=%d", form(), trials(2, 20), len(n.live), len(n.leaked))
	if code := p.signal(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	w.settle(t, ttl+3*time.Second, 0)
}

// waitCutSeen polls the local API from start until /v1/health has answered
// 503 and discovery has answered stale with the instance, and returns when
// each was first seen, measured from start.
func waitCutSeen(t *testing.T, p *sidecarProc, start time.Time, within time.Duration) (health, stale time.Duration) {
	t.Helper()
	etcdtest.Eventually(t, within, "health 503 and discovery stale", func() error {
		if health == 0 {
			if code, err := p.get("/v1/health", nil); err == nil && code == http.StatusServiceUnavailable {
				health = time.Since(start)
			}
		}
		if stale == 0 {
			var s api.Service
			code, err := p.get("/v1/services/"+service, &s)
			if err == nil && code == http.StatusOK && s.Stale && len(s.Instances) == 1 {
				stale = time.Since(start)
			}
		}
		if health == 0 || stale == 0 {
			return fmt.Errorf("health 503 seen: %v, stale answer seen: %v", health != 0, stale != 0)
		}
		return nil
	})
	return health, stale
}

// waitAPI waits until /v1/health answers 200 and discovery answers fresh
// (stale false) with the instance, and returns how long that took.
func waitAPI(t *testing.T, p *sidecarProc, within time.Duration) time.Duration {
	t.Helper()
	return etcdtest.Eventually(t, within, "health 200 and discovery fresh", func() error {
		code, err := p.get("/v1/health", nil)
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("health: %d %v", code, err)
		}
		var s api.Service
		code, err = p.get("/v1/services/"+service, &s)
		if err != nil || code != http.StatusOK || s.Stale || len(s.Instances) != 1 {
			return fmt.Errorf("services: %d %v stale=%v instances=%d", code, err, s.Stale, len(s.Instances))
		}
		return nil
	})
}
