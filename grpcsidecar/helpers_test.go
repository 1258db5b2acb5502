package grpcsidecar

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/stats"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
	"github.com/sidecar-dev/sidecar/internal/record"
	"github.com/sidecar-dev/sidecar/sidecar"
)

// TestMain fails the package when goroutines outlive its tests.
func TestMain(m *testing.M) { etcdtest.RunWithLeakCheck(m, 10*time.Second) }

const (
	namespace = "/sidecar" // the daemon's default etcd.namespace
	service   = "orders"
)

// backend is a real gRPC server on loopback serving the health service,
// counting the calls and the connections it gets.
type backend struct {
	id    string
	addr  string
	calls atomic.Int64
	conns atomic.Int64
}

// TagRPC, HandleRPC, TagConn and HandleConn make backend a stats.Handler.
func (b *backend) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (b *backend) HandleRPC(_ context.Context, s stats.RPCStats) {
	if _, ok := s.(*stats.Begin); ok {
		b.calls.Add(1)
	}
}
func (b *backend) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (b *backend) HandleConn(_ context.Context, s stats.ConnStats) {
	if _, ok := s.(*stats.ConnBegin); ok {
		b.conns.Add(1)
	}
}

// startBackends starts n backends, stopped at cleanup.
func startBackends(t testing.TB, n int) []*backend {
	t.Helper()
	bs := make([]*backend, n)
	for i := range bs {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		b := &backend{id: fmt.Sprintf("%s-%d", service, i+1), addr: lis.Addr().String()}
		srv := grpc.NewServer(grpc.StatsHandler(b))
		healthpb.RegisterHealthServer(srv, health.NewServer())
		go srv.Serve(lis)
		t.Cleanup(srv.Stop)
		bs[i] = b
	}
	return bs
}

// register writes b's record with weight w, as the registry does.
func register(t testing.TB, cli *clientv3.Client, b *backend, w int) {
	t.Helper()
	put(t, cli, map[*backend]int{b: w})
}

// put writes the records of several backends in one transaction: one
// watch event.
func put(t testing.TB, cli *clientv3.Client, weights map[*backend]int) {
	t.Helper()
	var ops []clientv3.Op
	for b, w := range weights {
		v := record.Encode(record.Instance{ID: b.id, Addr: b.addr, Weight: w, Node: "test"})
		ops = append(ops, clientv3.OpPut(key(b), string(v)))
	}
	if _, err := cli.Txn(context.Background()).Then(ops...).Commit(); err != nil {
		t.Fatal(err)
	}
}

func key(b *backend) string { return namespace + "/services/" + service + "/" + b.id }

// daemon is a sidecar daemon in join mode on an etcd, in this process.
type daemon struct {
	cfg  sidecar.Config
	stop func() error
}

// startDaemon runs a daemon on the etcd at endpoint with its socket at
// socket, until the test ends or stop.
func startDaemon(t testing.TB, endpoint, socket string) *daemon {
	t.Helper()
	cfg := sidecar.Defaults()
	cfg.Name = "g1"
	cfg.DataDir = t.TempDir()
	cfg.Etcd.Endpoints = []string{endpoint}
	cfg.API.Socket = socket
	cfg.Log.Level = "error"
	d, err := sidecar.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-done
	}
	t.Cleanup(func() { stop() })
	select {
	case <-d.Ready():
	case err := <-done:
		t.Fatalf("daemon ended before ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("daemon not ready after 30s")
	}
	return &daemon{cfg: cfg, stop: stop}
}

// env is an etcd, a daemon on it and three backends registered with
// weights 1, 2 and 3.
type env struct {
	cli      *clientv3.Client
	etcdURL  string
	socket   string
	backends []*backend
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := etcdtest.StartEmbedded(t)
	ev := &env{cli: e.Client(t), etcdURL: e.ClientURL, backends: startBackends(t, 3)}
	ev.socket = filepath.Join(etcdtest.SocketDir(t), "s.sock")
	put(t, ev.cli, map[*backend]int{ev.backends[0]: 1, ev.backends[1]: 2, ev.backends[2]: 3})
	return ev
}

// dial returns a client of target through the weighted balancer, closed at
// cleanup.
func dial(t testing.TB, target string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	opts = append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(ServiceConfig),
	}, opts...)
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// calls makes n health checks through conn and returns how many each
// backend got meanwhile.
func calls(t testing.TB, conn *grpc.ClientConn, bs []*backend, n int) ([]int64, error) {
	t.Helper()
	before := counts(bs)
	hc := healthpb.NewHealthClient(conn)
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err != nil {
			return nil, err
		}
	}
	after := counts(bs)
	for i := range after {
		after[i] -= before[i]
	}
	return after, nil
}

func counts(bs []*backend) []int64 {
	c := make([]int64, len(bs))
	for i, b := range bs {
		c[i] = b.calls.Load()
	}
	return c
}

func conns(bs []*backend) []int64 {
	c := make([]int64, len(bs))
	for i, b := range bs {
		c[i] = b.conns.Load()
	}
	return c
}

// tolerancePP is the tolerance of the observed shares, in percentage
// points of the calls made.
const tolerancePP = 3.0

// sharesOff says how the shares of got differ from weights by more than
// tolerancePP, or returns nil.
func sharesOff(got []int64, weights []int) error {
	var n, total int64
	for i := range got {
		n += got[i]
		total += int64(weights[i])
	}
	for i := range got {
		share := 100 * float64(got[i]) / float64(n)
		want := 100 * float64(weights[i]) / float64(total)
		if share < want-tolerancePP || share > want+tolerancePP || (weights[i] == 0 && got[i] != 0) {
			return fmt.Errorf("calls %v over %d: share of %d is %.1f%%, want %.1f%% ± %.0f pp (weights %v)",
				got, n, i+1, share, want, tolerancePP, weights)
		}
	}
	return nil
}

// waitShares polls until 120 calls follow weights, then asserts it over
// 600 calls, and returns their counts.
func waitShares(t testing.TB, conn *grpc.ClientConn, bs []*backend, weights []int) []int64 {
	t.Helper()
	etcdtest.Eventually(t, 10*time.Second, fmt.Sprintf("shares follow weights %v", weights), func() error {
		got, err := calls(t, conn, bs, 120)
		if err != nil {
			return err
		}
		return sharesOff(got, weights)
	})
	got, err := calls(t, conn, bs, 600)
	if err != nil {
		t.Fatal(err)
	}
	if err := sharesOff(got, weights); err != nil {
		t.Fatal(err)
	}
	return got
}
