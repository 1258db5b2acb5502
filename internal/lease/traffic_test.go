package lease_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
	"github.com/sidecar-dev/sidecar/internal/lease"
)

// countingStream counts the keep-alive requests sent on a client stream.
type countingStream struct {
	grpc.ClientStream
	n *atomic.Int64
}

func (s countingStream) SendMsg(m any) error {
	if _, ok := m.(*pb.LeaseKeepAliveRequest); ok {
		s.n.Add(1)
	}
	return s.ClientStream.SendMsg(m)
}

// TestOneKeepAlivePerInterval: a session sends one keep-alive per TTL/3,
// on its own stream only: the concurrency.Session it carries starts none
// (two would double the traffic and let a crashed holder's lease outlive
// its last counted renewal).
func TestOneKeepAlivePerInterval(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	var sends atomic.Int64
	count := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		cs, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			return nil, err
		}
		return countingStream{cs, &sends}, nil
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{e.ClientURL}, DialTimeout: 5 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithStreamInterceptor(count)},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	s, err := lease.New(t.Context(), cli, lease.Config{TTL: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	time.Sleep(3500 * time.Millisecond) // requests at 0, 1, 2 and 3 s
	if n := sends.Load(); n < 3 || n > 5 {
		t.Errorf("%d keep-alive requests in 3.5 s with a 3 s TTL, want 4 (one per second)", n)
	} else {
		t.Logf("%d keep-alive requests in 3.5 s with a 3 s TTL", n)
	}
}
