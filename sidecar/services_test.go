package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/v3/naming/endpoints"
	etcdresolver "go.etcd.io/etcd/client/v3/naming/resolver"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/client"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// withService adds a service registration to cfg.
func withService(cfg Config, name string, port int) Config {
	cfg.Service.Name, cfg.Service.Address, cfg.Service.Port = name, "127.0.0.1", port
	cfg.Service.TTL = 2 * time.Second
	cfg.Service.Metadata = map[string]string{"version": "v1"}
	return cfg
}

// waitFor is etcdtest.Eventually for a condition without an error.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	etcdtest.Eventually(t, d, what, func() error {
		if !cond() {
			return errors.New("not yet")
		}
		return nil
	})
}

func registered(t *testing.T, c *client.Client) bool {
	st, err := c.Status(t.Context())
	return err == nil && st.Registration != nil && st.Registration.State == api.RegRegistered
}

func TestRegistrationAndDiscoveryAPI(t *testing.T) {
	cfg := withService(embeddedConfig(t), "orders", 8080)
	r := startDaemon(t, cfg)
	ctx := t.Context()
	waitFor(t, "registered", 5*time.Second, func() bool { return registered(t, r.cli) })

	names, err := r.cli.Services(ctx)
	if err != nil || len(names) != 1 || names[0] != "orders" {
		t.Fatalf("services = %q, %v", names, err)
	}
	s, err := r.cli.Service(ctx, "orders")
	if err != nil || len(s.Instances) != 1 || s.Stale || s.Revision == 0 {
		t.Fatalf("service = %+v, %v", s, err)
	}
	in := s.Instances[0]
	if in.ID != "orders-t1-8080" || in.Addr != "127.0.0.1:8080" || in.Weight != 100 || in.Node != "t1" || in.Metadata["version"] != "v1" {
		t.Fatalf("instance = %+v", in)
	}
	if s, err := r.cli.Service(ctx, "nobody"); err != nil || len(s.Instances) != 0 {
		t.Fatalf("unknown service = %+v, %v; want 200 with no instances", s, err)
	}

	stream, err := r.cli.WatchService(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if first, err := stream.Next(); err != nil || len(first.Instances) != 1 || first.Instances[0].Weight != 100 {
		t.Fatalf("first stream line = %+v, %v", first, err)
	}
	if err := r.cli.SetWeight(ctx, 0); err != nil {
		t.Fatal(err)
	}
	for {
		next, err := stream.Next()
		if err != nil {
			t.Fatal(err)
		}
		if len(next.Instances) == 1 && next.Instances[0].Weight == 0 {
			break
		}
	}
	var apiErr *client.APIError
	if _, err := r.cli.Pick(ctx, "orders"); !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound {
		t.Fatalf("pick of a drained service = %v, want 404", err)
	}
	if err := r.cli.SetWeight(ctx, 7); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pick after weight 7", 5*time.Second, func() bool {
		in, err := r.cli.Pick(ctx, "orders")
		return err == nil && in.Weight == 7
	})
	if st, _ := r.cli.Status(ctx); st.Registration.Weight != 7 || st.Registration.LeaseID == "" || st.Registration.TTLRemainingS <= 0 {
		t.Fatalf("status registration = %+v", st.Registration)
	}
	metrics := get(t, r.cli, "/metrics", http.StatusOK)
	if !strings.Contains(metrics, `sidecar_registration_state{id="orders-t1-8080",service="orders",state="registered"} 1`) {
		t.Errorf("metrics lack the registration state:\n%s", grepLines(metrics, "sidecar_registration"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestBadServiceRequests(t *testing.T) {
	r := startDaemon(t, withService(embeddedConfig(t), "orders", 8080))
	noSvc := startDaemon(t, embeddedConfig(t))
	put := func(c *client.Client, body string) int {
		resp, err := c.Do(t.Context(), http.MethodPut, "/v1/registration/weight", strings.NewReader(body), 400, 404, 413)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	tests := []struct {
		name string
		c    *client.Client
		body string
		want int
	}{
		{"negative weight", r.cli, `{"weight":-1}`, 400},
		{"weight too big", r.cli, `{"weight":10001}`, 400},
		{"weight missing", r.cli, `{}`, 400},
		{"weight a string", r.cli, `{"weight":"5"}`, 400},
		{"unknown field", r.cli, `{"weight":5,"x":1}`, 400},
		{"body over 1 MiB", r.cli, `{"weight":` + strings.Repeat(" ", 2<<20) + `5}`, 413},
		{"no service registered", noSvc.cli, `{"weight":5}`, 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := put(tc.c, tc.body); got != tc.want {
				t.Fatalf("code = %d, want %d", got, tc.want)
			}
		})
	}
	for _, path := range []string{"/v1/services/bad%20name", "/v1/services/..%2Fetc", "/v1/services/-x/pick", "/v1/services/orders?watch=maybe"} {
		get(t, r.cli, path, http.StatusBadRequest)
	}
	if h, err := r.cli.Health(t.Context()); err != nil || !h.Healthy {
		t.Fatalf("unhealthy after bad requests: %+v %v", h, err)
	}
}

// Join mode against an in-process etcd: shutdown revokes the lease, so the
// key is gone at once and no lease is left.
func TestShutdownDeregisters(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	cfg := withService(embeddedConfig(t), "orders", 8080)
	cfg.Etcd.Endpoints = []string{e.ClientURL}
	r := startDaemon(t, cfg)
	waitFor(t, "registered", 5*time.Second, func() bool { return registered(t, r.cli) })
	key := "/sidecar/services/orders/orders-t1-8080"
	resp, err := cli.Get(t.Context(), key)
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease == 0 {
		t.Fatalf("key before stop: %+v %v", resp, err)
	}
	var ep endpoints.Endpoint
	if err := json.Unmarshal(resp.Kvs[0].Value, &ep); err != nil || ep.Addr != "127.0.0.1:8080" {
		t.Fatalf("value %s is not in the endpoints format: %v", resp.Kvs[0].Value, err)
	}
	if err := r.stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	resp, err = cli.Get(context.Background(), key)
	if err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("key after stop: %+v %v", resp.Kvs, err)
	}
	leases, err := cli.Leases(context.Background())
	if err != nil || len(leases.Leases) != 0 {
		t.Fatalf("leases after stop: %+v %v", leases, err)
	}
}

// Discovery keeps answering from its cache, marked stale, while etcd is down.
func TestDiscoveryStaleWhileEtcdDown(t *testing.T) {
	srv := etcdtest.StartServer(t, etcdtest.ServerOptions{})
	other := srv.Client(t)
	em, _ := endpoints.NewManager(other, "/sidecar/services/billing")
	if err := em.AddEndpoint(t.Context(), "/sidecar/services/billing/b1", endpoints.Endpoint{Addr: "10.0.0.9:9000"}); err != nil {
		t.Fatal(err)
	}
	r := startDaemon(t, joinConfig(t, srv))
	if s, err := r.cli.Service(t.Context(), "billing"); err != nil || s.Stale || len(s.Instances) != 1 || s.Instances[0].Weight != 100 {
		t.Fatalf("before outage: %+v %v", s, err)
	}
	srv.Stop()
	waitFor(t, "stale answer", 20*time.Second, func() bool {
		s, err := r.cli.Service(t.Context(), "billing")
		return err == nil && s.Stale && len(s.Instances) == 1
	})
	srv.Restart()
	waitFor(t, "fresh answer", 20*time.Second, func() bool {
		s, err := r.cli.Service(t.Context(), "billing")
		return err == nil && !s.Stale
	})
}

// A gRPC client using etcd's own naming resolver reaches the service the
// sidecar registered (target etcd:////sidecar/services/<name>).
func TestGRPCResolverInterop(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go gs.Serve(lis)
	defer gs.Stop()

	cfg := withService(embeddedConfig(t), "greeter", lis.Addr().(*net.TCPAddr).Port)
	cfg.Etcd.Endpoints = []string{e.ClientURL}
	r := startDaemon(t, cfg)
	waitFor(t, "registered", 5*time.Second, func() bool { return registered(t, r.cli) })

	cli := e.Client(t)
	builder, err := etcdresolver.NewBuilder(cli)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("etcd:////sidecar/services/greeter",
		grpc.WithResolvers(builder), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health check through etcd's resolver: %v %v", resp, err)
	}
}

// A failing check keeps the instance out of etcd: the health stays 200
// (the app's problem), status says critical, and a weight change is kept
// for later with 409.
func TestCriticalCheck(t *testing.T) {
	cfg := withService(embeddedConfig(t), "orders", etcdtest.FreePort(t)) // nobody listens there
	cfg.Service.Check = CheckConfig{TCP: net.JoinHostPort("127.0.0.1", fmt.Sprint(cfg.Service.Port)),
		Interval: 100 * time.Millisecond, Timeout: 100 * time.Millisecond, FailuresBeforeCritical: 1}
	r := startDaemon(t, cfg)
	waitFor(t, "critical", 5*time.Second, func() bool {
		st, err := r.cli.Status(t.Context())
		return err == nil && st.Registration.State == api.RegCritical
	})
	if h, err := r.cli.Health(t.Context()); err != nil || !h.Healthy || h.Components["registration"].State != api.RegCritical {
		t.Fatalf("health with a critical check = %+v, %v; want 200 naming critical", h, err)
	}
	var apiErr *client.APIError
	if err := r.cli.SetWeight(t.Context(), 5); !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusConflict {
		t.Fatalf("SetWeight while critical = %v, want 409", err)
	}
	if s, err := r.cli.Service(t.Context(), "orders"); err != nil || len(s.Instances) != 0 {
		t.Fatalf("critical instance listed: %+v %v", s, err)
	}
}
