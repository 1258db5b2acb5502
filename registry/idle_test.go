package registry_test

import (
	"context"
	"maps"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
	"github.com/sidecar-dev/sidecar/registry"
)

// callCounter counts the gRPC calls and streams a client starts.
type callCounter struct {
	mu    sync.Mutex
	calls map[string]int
}

func (c *callCounter) add(method string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[method]++
}

func (c *callCounter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.calls)
}

func (c *callCounter) options() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			c.add(method)
			return invoker(ctx, method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			c.add("stream " + method)
			return streamer(ctx, desc, cc, method, opts...)
		}),
	}
}

// TestIdleTraffic: once registered, the registrar sends nothing but
// keep-alives on the stream it has: no polling requests, no new streams.
func TestIdleTraffic(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	counter := &callCounter{calls: map[string]int{}}
	cli := newClient(t, e.ClientURL, counter.options()...)
	h := start(t, cli, testConfig("orders-1"))
	st, _ := waitState(t, h, 5*time.Second, "registered", isRegistered)
	before := counter.snapshot()
	t.Logf("calls to register: %v", before)
	if before["/etcdserverpb.Lease/LeaseGrant"] != 1 || before["/etcdserverpb.KV/Txn"] != 1 {
		t.Errorf("registering took %v; want one grant and one put", before)
	}
	// Three more keep-alives: more than a TTL of idleness.
	waitState(t, h, 5*time.Second, "3 keep-alives", func(s registry.Status) bool { return s.KeepAlives >= st.KeepAlives+3 })
	if after := counter.snapshot(); !maps.Equal(before, after) {
		t.Errorf("idle registrar made requests: before %v, after %v", before, after)
	}
}
