package lease

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/internal/retry"
)

// maxUnanswered bounds the requests in flight on one stream; past it the
// stream is given up and another opened. The session is lost long before
// (a deadline is at most three intervals after the newest answered send).
const maxUnanswered = 64

var (
	errTooManyUnanswered = errors.New("lease: too many keep-alive requests unanswered")
	errUnrequested       = errors.New("lease: keep-alive answer without a request")
)

// keepAlive keeps the lease alive until ctx ends (the session is lost or
// closed), opening a new stream after each failure, with backoff.
func (s *Session) keepAlive(ctx context.Context) {
	bo := retry.Backoff{Base: 50 * time.Millisecond, Max: s.interval}
	for ctx.Err() == nil {
		answered, err := s.stream(ctx)
		if ctx.Err() != nil {
			return
		}
		if answered {
			bo.Reset()
		}
		s.log.Debug("keep-alive stream ended; opening another", "err", err)
		retry.Sleep(ctx, bo.Next())
	}
}

// stream sends a keep-alive request at once and then every interval on
// one gRPC stream that requires a leader, and applies the answers as they
// come, until the stream fails or ctx ends. It reports whether any answer
// came, and why the stream ended.
//
// etcd serves a stream's requests one after the other and answers them in
// order, so the n-th answer is to the n-th request: the send times wait in
// a queue that the answers consume. A request's send time is taken before
// it is queued and sent, so it is never later than the real send.
func (s *Session) stream(ctx context.Context) (answered bool, err error) {
	sctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	st, err := pb.NewLeaseClient(s.cli.ActiveConnection()).LeaseKeepAlive(sctx)
	if err != nil {
		return false, err
	}
	sent := make(chan time.Time, maxUnanswered)
	var (
		wg   sync.WaitGroup
		rerr error
		got  atomic.Bool
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer cancel() // ends the sends too
		rerr = s.receive(st, sent, &got)
	}()
	serr := s.send(sctx, st, sent)
	cancel()
	wg.Wait()
	if rerr != nil {
		return got.Load(), rerr
	}
	return got.Load(), serr
}

// send sends a request now and every interval until ctx ends or a send
// fails.
func (s *Session) send(ctx context.Context, st pb.Lease_LeaseKeepAliveClient, sent chan<- time.Time) error {
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	req := &pb.LeaseKeepAliveRequest{ID: int64(s.id)}
	for {
		select {
		case sent <- time.Now():
		default:
			return errTooManyUnanswered
		}
		if err := st.Send(req); err != nil {
			return err
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// receive applies each answer with the send time of its request, until
// the stream fails or the session is lost.
func (s *Session) receive(st pb.Lease_LeaseKeepAliveClient, sent <-chan time.Time, got *atomic.Bool) error {
	for {
		resp, err := st.Recv()
		if err != nil {
			return err
		}
		var t time.Time
		select {
		case t = <-sent:
		default:
			return errUnrequested
		}
		got.Store(true)
		if !s.ack(t, resp.TTL) {
			return nil
		}
	}
}
