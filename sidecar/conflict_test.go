package sidecar

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/client"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// registrationOf returns a daemon's registration status; nil on error.
func registrationOf(t *testing.T, r *running) *api.Registration {
	st, err := r.cli.Status(t.Context())
	if err != nil {
		return nil
	}
	return st.Registration
}

// etcdRevision returns etcd's current revision.
func etcdRevision(t *testing.T, cli *clientv3.Client) int64 {
	t.Helper()
	resp, err := cli.Get(t.Context(), "/revision-probe")
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// TestSameServiceIDConflict runs two daemons on one etcd whose services
// have the same id: one registers, the other reports the conflict in
// status, health (still 200) and metrics without writing to etcd, and
// takes over when the first stops.
func TestSameServiceIDConflict(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	direct := e.Client(t)
	daemons := map[string]*running{}
	for _, node := range []string{"t1", "t2"} {
		cfg := withService(embeddedConfig(t), "orders", 8080)
		cfg.Name, cfg.Service.ID = node, "orders-1"
		cfg.Etcd.Endpoints = []string{e.ClientURL}
		daemons[node] = startDaemon(t, cfg)
	}
	var holder, loser string
	etcdtest.Eventually(t, 5*time.Second, "one registered, one in conflict", func() error {
		r1, r2 := registrationOf(t, daemons["t1"]), registrationOf(t, daemons["t2"])
		switch {
		case r1 == nil || r2 == nil:
			return errors.New("no registration status")
		case r1.State == api.RegRegistered && r2.State == api.RegConflict:
			holder, loser = "t1", "t2"
		case r2.State == api.RegRegistered && r1.State == api.RegConflict:
			holder, loser = "t2", "t1"
		default:
			return fmt.Errorf("states %s and %s", r1.State, r2.State)
		}
		return nil
	})
	rev0 := etcdRevision(t, direct)
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		h, l := registrationOf(t, daemons[holder]), registrationOf(t, daemons[loser])
		if h == nil || l == nil || h.State != api.RegRegistered || l.State != api.RegConflict {
			t.Fatalf("registrations: %s %+v, %s %+v", holder, h, loser, l)
		}
		time.Sleep(200 * time.Millisecond)
	}
	grown := etcdRevision(t, direct) - rev0
	t.Logf("revision grew by %d in 8s of conflict", grown)
	if grown >= 50 {
		t.Errorf("revision grew by %d in 8s, want < 50: the daemons fight over the key", grown)
	}
	checkConflictReported(t, daemons[loser].cli, holder, registrationOf(t, daemons[holder]).LeaseID)

	if err := daemons[holder].stop(); err != nil {
		t.Fatalf("holder's Run: %v", err)
	}
	took := etcdtest.Eventually(t, 3*time.Second, loser+" registered", func() error {
		if reg := registrationOf(t, daemons[loser]); reg == nil || reg.State != api.RegRegistered {
			return fmt.Errorf("registration %+v", reg)
		}
		return nil
	})
	t.Logf("%s took the key %s after %s stopped", loser, took.Round(time.Millisecond), holder)
	l := registrationOf(t, daemons[loser])
	resp, err := direct.Get(t.Context(), "/sidecar/services/orders/orders-1")
	if err != nil || len(resp.Kvs) != 1 || fmt.Sprintf("%x", resp.Kvs[0].Lease) != l.LeaseID {
		t.Fatalf("key after the holder stopped: %+v %v; want lease %s", resp, err, l.LeaseID)
	}
}

// checkConflictReported checks what a daemon in conflict shows: the state
// and the holder in status, health 200 naming the conflict, the state
// metric, and 409 for a weight change.
func checkConflictReported(t *testing.T, c *client.Client, holderNode, holderLease string) {
	t.Helper()
	st, err := c.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	reg := st.Registration
	want := fmt.Sprintf("node %q under lease %s", holderNode, holderLease)
	if reg.State != api.RegConflict || !strings.Contains(reg.LastError, want) || reg.LeaseID == "" || reg.LeaseID == holderLease {
		t.Errorf("registration = %+v; want conflict, its own lease, last_error naming %s", reg, want)
	}
	var h api.Health
	if err := json.Unmarshal([]byte(get(t, c, "/v1/health", http.StatusOK)), &h); err != nil {
		t.Fatal(err)
	}
	if comp := h.Components["registration"]; !h.Healthy || comp.State != api.RegConflict || !strings.Contains(comp.Error, want) {
		t.Errorf("health = %+v; want healthy, registration conflict naming %s", h, want)
	}
	metrics := get(t, c, "/metrics", http.StatusOK)
	if !strings.Contains(metrics, `sidecar_registration_state{id="orders-1",service="orders",state="conflict"} 1`) {
		t.Errorf("metrics lack the conflict state:\n%s", grepLines(metrics, "sidecar_registration_state"))
	}
	var apiErr *client.APIError
	if err := c.SetWeight(t.Context(), 5); !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusConflict {
		t.Errorf("SetWeight in conflict = %v, want 409", err)
	}
}
