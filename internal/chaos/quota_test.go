package chaos

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// The NOSPACE scenario: a small backend quota, the mirrored prefix, the
// prefix the filler writes to, and the instance id.
const (
	quotaBytes  = 4 << 20
	quotaPrefix = "/config/quota/"
	quotaFill   = "/fill/"
	quotaID     = "quota"
	// quotaWords is how the sidecar words NOSPACE for people.
	quotaWords = "etcd is out of space (NOSPACE alarm)"
)

// quotaYAML is the sidecar of the NOSPACE scenario: a registration and a
// config mapping of quotaPrefix into dir, directly to the members.
func quotaYAML(t *testing.T, w *world, dir string) string {
	return fmt.Sprintf(`name: %s
data_dir: %s
etcd: {endpoints: %s}
service: {name: %s, id: %s, address: 127.0.0.1, port: 9000, ttl: %s}
coordination: {ttl: %s}
config:
  - {prefix: %s, dir: %s}
`, quotaID, t.TempDir(), w.endpoints(true), service, quotaID, ttl, coordTTL, quotaPrefix, dir)
}

// TestNoSpaceAlarm: members with a 4 MiB backend quota; the sidecar is
// registered, mirrors a config prefix and holds lock "job" for a wrapped
// command; then etcd is filled (1 MiB values under another prefix) until
// the NOSPACE alarm fires, and stays so for 1.5 x TTL (short) or 6 x
// TTL (full). Pass, during the alarm: GET /v1/cluster lists NOSPACE, and
// so does the status within 15 s (the sidecar asks every 10 s); a new
// lock fails and its wrapper says "etcd is out of space (NOSPACE alarm)"
// without package prefixes; the mirrored file keeps its last good value;
// the registration stays under the same lease (keep-alives work under
// NOSPACE); the held command is never stopped. Then the filler's keys are
// deleted, the cluster compacted to head, every member defragmented and
// the alarm disarmed, and the sidecar recovers by itself: a new lock
// succeeds and a new config put reaches its file, within recoverBound of
// the disarm; the registration is still the same lease; the status lists
// no alarm again within 15 s.
func TestNoSpaceAlarm(t *testing.T) {
	const recoverBound = 5 * time.Second
	w := authNewWorld(t, fmt.Sprintf("--quota-backend-bytes=%d", quotaBytes))
	dir := filepath.Join(t.TempDir(), "config")
	file := filepath.Join(dir, "a")
	quotaPut(t, w, "a", "a0")
	p := startSidecar(t, quotaYAML(t, w, dir))
	lease, _ := waitRegistered(t, w, regKey(quotaID), 0, 15*time.Second)
	quotaWaitFile(t, file, "a0", 15*time.Second)
	marks := filepath.Join(t.TempDir(), "marks")
	holder := p.run(t, "lock", "job", "--", "sh", "-c", holderScript, "sh", marks)
	waitMark(t, marks, "held", 15*time.Second)

	filled := quotaFillUp(t, w)
	quotaDuring(t, w, p, file, lease, time.Duration(trials(3, 12))*ttl/2)

	disarmed := quotaRecover(t, w)
	etcdtest.Eventually(t, 30*time.Second, "a new lock after the disarm", func() error {
		return quotaTryLock(t, p)
	})
	lockAt := time.Since(disarmed)
	quotaPut(t, w, "a", "a1")
	quotaWaitFile(t, file, "a1", 30*time.Second)
	mirrorAt := time.Since(disarmed)
	clearedAt := p.quotaWaitStatusAlarm(t, false) + mirrorAt
	if l, err := w.lease(t, regKey(quotaID)); err != nil || l != lease {
		t.Errorf("registration under lease %x (%v) after the recovery, want %x", l, err, lease)
	}
	if b, at := markTimes(marks); !at["stopped"].IsZero() || authDone(holder) {
		t.Errorf("the held command was stopped:\n%s\nwrapper stderr: %s", b, holder.stderr)
	}
	for _, d := range []time.Duration{lockAt, mirrorAt} {
		if d > recoverBound {
			t.Errorf("recovered %s after the disarm, want <= %s", d, recoverBound)
		}
	}
	t.Logf("FIGURE scenario=quota_nospace form=%s quota_bytes=%d fill_mib=%d lock_after_disarm_ms=%s mirrored_after_disarm_ms=%s status_cleared_after_disarm_ms=%s bound_ms=%d lease_kept=true hold_kept=true",
		form(), quotaBytes, filled, ms(lockAt), ms(mirrorAt), ms(clearedAt), recoverBound.Milliseconds())
	holder.stop()
}

// quotaPut puts quotaPrefix+key as root of the observer.
func quotaPut(t *testing.T, w *world, key, v string) {
	t.Helper()
	c, cancel := ctx(t)
	defer cancel()
	if _, err := w.cli.Put(c, quotaPrefix+key, v); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

// quotaWaitFile waits until file holds v.
func quotaWaitFile(t *testing.T, file, v string, within time.Duration) {
	t.Helper()
	etcdtest.Eventually(t, within, file+" = "+v, func() error {
		if b, err := os.ReadFile(file); err != nil || string(b) != v {
			return fmt.Errorf("%q, %v", b, err)
		}
		return nil
	})
}

// quotaFillUp puts 1 MiB values under quotaFill until etcd answers
// NOSPACE, and returns how many it took.
func quotaFillUp(t *testing.T, w *world) int {
	t.Helper()
	value := strings.Repeat("x", 1<<20)
	for i := range 4 * quotaBytes >> 20 {
		c, cancel := ctx(t)
		_, err := w.cli.Put(c, fmt.Sprintf("%s%d", quotaFill, i), value)
		cancel()
		if errors.Is(err, rpctypes.ErrNoSpace) {
			return i
		}
		if err != nil {
			t.Fatalf("fill %d: %v", i, err)
		}
	}
	t.Fatalf("no NOSPACE after %d MiB over a %d-byte quota", 4*quotaBytes>>20, quotaBytes)
	return 0
}

// quotaDuring checks, over hold, what the sidecar does under the alarm.
func quotaDuring(t *testing.T, w *world, p *sidecarProc, file string, lease clientv3.LeaseID, hold time.Duration) {
	t.Helper()
	var cl api.Cluster
	if code, err := p.get("/v1/cluster", &cl); code != 200 || !quotaHasAlarm(cl) {
		t.Errorf("cluster under NOSPACE: %d %v alarms %+v (%s); want NOSPACE", code, err, cl.Alarms, cl.AlarmsError)
	}
	err := quotaTryLock(t, p)
	if err == nil || !strings.Contains(err.Error(), quotaWords) || strings.Contains(err.Error(), "lease:") || strings.Contains(err.Error(), "lock:") {
		t.Errorf("a new lock under NOSPACE: %v; want %q without package prefixes", err, quotaWords)
	}
	took := p.quotaWaitStatusAlarm(t, true)
	t.Logf("FIGURE scenario=quota_status_alarm form=%s shown_after_ms=%s", form(), ms(took))
	var health api.Health
	code, _ := p.get("/v1/health", &health)
	t.Logf("under NOSPACE: health %d %+v", code, health.Components)
	end := time.Now().Add(hold)
	for time.Now().Before(end) {
		if b, err := os.ReadFile(file); err != nil || string(b) != "a0" {
			t.Fatalf("mirrored file under NOSPACE: %q, %v; want the last good a0", b, err)
		}
		if l, err := w.lease(t, regKey(quotaID)); err != nil || l != lease {
			t.Fatalf("registration under lease %x (%v) under NOSPACE, want %x", l, err, lease)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// quotaWaitStatusAlarm waits until the sidecar's status lists a NOSPACE
// alarm (want) or none (!want), and returns how long that took: the
// sidecar asks etcd every 10 s, so within 15 s.
func (p *sidecarProc) quotaWaitStatusAlarm(t *testing.T, want bool) time.Duration {
	t.Helper()
	what := map[bool]string{true: "status lists NOSPACE", false: "status lists no alarm"}[want]
	start := time.Now()
	p.waitStatus(t, what, 15*time.Second, func(st api.Status) error {
		if quotaHasAlarm(api.Cluster{Alarms: st.Etcd.Alarms}) != want {
			return fmt.Errorf("alarms %+v", st.Etcd.Alarms)
		}
		return nil
	})
	return time.Since(start)
}

// quotaHasAlarm reports whether cl lists a NOSPACE alarm.
func quotaHasAlarm(cl api.Cluster) bool {
	for _, a := range cl.Alarms {
		if a.Alarm == "NOSPACE" {
			return true
		}
	}
	return false
}

// quotaTryLock runs `sidecar lock --wait 0 other -- true` and returns nil
// when it ran, else an error with its stderr.
func quotaTryLock(t *testing.T, p *sidecarProc) error {
	t.Helper()
	w := p.run(t, "lock", "--wait", "0", "other", "--", "true")
	if code := w.wait(t, 15*time.Second); code != 0 {
		return fmt.Errorf("exit %d: %s", code, strings.TrimSpace(w.stderr.String()))
	}
	return nil
}

// quotaRecover does what docs/operations.md tells an operator: delete
// what filled the db, compact to head, defragment every member, disarm;
// it returns when the disarm was answered.
func quotaRecover(t *testing.T, w *world) time.Time {
	t.Helper()
	c, cancel := ctx(t)
	defer cancel()
	resp, err := w.cli.Delete(c, quotaFill, clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("delete the fill: %v", err)
	}
	if _, err := w.cli.Compact(c, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("compact: %v", err)
	}
	for _, u := range w.cluster.ClientURLs() {
		dc, dcancel := ctx(t)
		_, err := w.cli.Defragment(dc, u)
		dcancel()
		if err != nil {
			t.Fatalf("defragment %s: %v", u, err)
		}
	}
	if _, err := w.cli.AlarmDisarm(c, &clientv3.AlarmMember{}); err != nil {
		t.Fatalf("disarm: %v", err)
	}
	return time.Now()
}
