package embedded

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/sidecar-dev/sidecar/internal/retry"
)

const (
	requestTimeout   = 5 * time.Second        // one membership request
	retryInterval    = 200 * time.Millisecond // between membership attempts, at first
	maxRetryInterval = 2 * time.Second        // between refused member adds, at most
)

// bootstrapConfig decides how this start forms or enters the cluster and
// returns etcd's configuration. A data dir that holds a member restarts it
// (etcd then ignores the initial cluster); otherwise Join adds the member to
// the running cluster first.
func (m *Member) bootstrapConfig(ctx context.Context) (*embed.Config, error) {
	c := m.cfg
	state, initial := c.InitialClusterState, c.InitialCluster
	switch {
	case hasMember(c.DataDir):
		if len(c.Join) > 0 {
			initial = clusterString(c.Name, c.InitialAdvertisePeerURLs)
			m.log.Info("restarting joined member from its data dir", "name", c.Name, "path", c.DataDir)
		}
	case len(c.Join) > 0:
		var err error
		if initial, err = m.join(ctx); err != nil {
			return nil, err
		}
	}
	return c.embedConfig(m.zl, initial, state), nil
}

// join adds this node to the cluster at c.Join as a learner and returns the
// initial cluster to start with. A member with the same peer URLs that never
// started (an earlier attempt stopped between adding and starting) is
// reused. While the cluster already has a learner (its default limit is one),
// join waits for it to be promoted.
func (m *Member) join(ctx context.Context) (string, error) {
	c := m.cfg
	if err := dialAny(ctx, c.Join); err != nil {
		return "", fmt.Errorf("embedded: join: no member of the cluster reachable: %w", err)
	}
	cli, err := m.newClient(c.Join)
	if err != nil {
		return "", fmt.Errorf("embedded: join %s: %w", strings.Join(c.Join, ","), err)
	}
	defer cli.Close()
	bo := retry.Backoff{Base: retryInterval, Max: maxRetryInterval}
	for {
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		resp, err := cli.MemberAddAsLearner(rctx, c.InitialAdvertisePeerURLs)
		cancel()
		switch {
		case err == nil:
			m.log.Info("added learner to cluster", "name", c.Name, "member_id", fmt.Sprintf("%x", resp.Member.ID),
				"join", c.Join)
			return initialCluster(resp.Members, resp.Member.ID, c.Name), nil
		case errors.Is(err, rpctypes.ErrPeerURLExist), errors.Is(err, rpctypes.ErrMemberExist):
			// The ID hashes the peer URLs and the second: a re-add within
			// the same second reports the ID, later ones the peer URLs.
			return m.reuseMember(ctx, cli)
		case !retryableAdd(err):
			return "", fmt.Errorf("embedded: join %s: add member %s: %w",
				strings.Join(c.Join, ","), strings.Join(c.InitialAdvertisePeerURLs, ","), m.requestError(ctx, err))
		}
		if reason := m.refusedAdd(ctx, cli, err); m.setWaiting(reason) {
			m.log.Warn("waiting to join the cluster", "name", c.Name, "reason", reason)
		}
		if !retry.Sleep(ctx, bo.Next()) {
			return "", fmt.Errorf("%w: %s", m.ctxError(ctx, "join", ""), m.Waiting())
		}
	}
}

// retryableAdd reports whether a refused member add may succeed later: the
// cluster has a learner already (the default limit is one); the member asked
// has not been connected to a quorum for long enough (etcd wants 5s); or the
// new ID, a hash of the peer URLs and the current second, is that of a member
// removed within the same second (etcd says "member not found").
func retryableAdd(err error) bool {
	return errors.Is(err, rpctypes.ErrTooManyLearners) || errors.Is(err, rpctypes.ErrUnhealthy) ||
		errors.Is(err, rpctypes.ErrMemberNotEnoughStarted) || errors.Is(err, rpctypes.ErrMemberNotFound)
}

// dialAny returns nil if a TCP connection to one of the endpoints succeeds,
// else every dial error (refused, timeout, ...), each naming its address. The
// etcd client would only report that its request timed out.
func dialAny(ctx context.Context, endpoints []string) error {
	errs := make([]error, len(endpoints))
	var wg sync.WaitGroup
	for i, ep := range endpoints {
		wg.Go(func() {
			u, err := url.Parse(ep)
			if err != nil {
				errs[i] = err
				return
			}
			d := net.Dialer{Timeout: requestTimeout}
			conn, err := d.DialContext(ctx, "tcp", u.Host)
			if err != nil {
				errs[i] = fmt.Errorf("%s: %w", ep, err)
				return
			}
			conn.Close()
		})
	}
	wg.Wait()
	if slices.Contains(errs, nil) {
		return nil
	}
	return errors.Join(errs...)
}

// reuseMember finds the member that already has this node's peer URLs. It is
// reused when it never started; a started one belongs to another node or to
// this node's lost data dir.
func (m *Member) reuseMember(ctx context.Context, cli *clientv3.Client) (string, error) {
	c := m.cfg
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	resp, err := cli.MemberList(rctx)
	cancel()
	if err != nil {
		return "", fmt.Errorf("embedded: join %s: list members: %w", strings.Join(c.Join, ","), m.requestError(ctx, err))
	}
	own := slices.Sorted(slices.Values(c.InitialAdvertisePeerURLs))
	for _, mb := range resp.Members {
		if !slices.ContainsFunc(mb.PeerURLs, func(u string) bool { return slices.Contains(own, u) }) {
			continue
		}
		switch {
		case mb.Name != "":
			return "", fmt.Errorf("embedded: join: peer URLs %s belong to started member %q (%x), but data dir %s holds no member; if that was this node, remove it (etcdctl member remove %x) and start again",
				strings.Join(mb.PeerURLs, ","), mb.Name, mb.ID, c.DataDir, mb.ID)
		case !slices.Equal(slices.Sorted(slices.Values(mb.PeerURLs)), own):
			return "", fmt.Errorf("embedded: join: unstarted member %x has peer URLs %s, not this node's %s; remove it (etcdctl member remove %x) and start again",
				mb.ID, strings.Join(mb.PeerURLs, ","), strings.Join(own, ","), mb.ID)
		}
		m.log.Info("reusing unstarted member", "name", c.Name, "member_id", fmt.Sprintf("%x", mb.ID))
		return initialCluster(resp.Members, mb.ID, c.Name), nil
	}
	return "", fmt.Errorf("embedded: join %s: peer URLs %s reported as taken, but no member has them",
		strings.Join(c.Join, ","), strings.Join(own, ","))
}

// initialCluster builds the initial-cluster string of a member joining as
// self: every member with its peer URLs, this one under name. Other members
// that never started have no name yet; etcd matches members by peer URL, so
// their ID stands in.
func initialCluster(members []*pb.Member, self uint64, name string) string {
	var parts []string
	for _, mb := range members {
		n := mb.Name
		switch {
		case mb.ID == self:
			n = name
		case n == "":
			n = fmt.Sprintf("%x", mb.ID)
		}
		parts = append(parts, clusterString(n, mb.PeerURLs))
	}
	return strings.Join(parts, ",")
}

// promote asks the other members to promote this learner until the local
// member sees itself as a voting member. A learner catches up first, so the
// leader refuses promotion for a while.
func (m *Member) promote(ctx context.Context) error {
	s := m.etcd.Server
	id := uint64(s.MemberID())
	var endpoints []string
	for _, mb := range s.Cluster().Members() {
		if uint64(mb.ID) != id {
			endpoints = append(endpoints, mb.ClientURLs...)
		}
	}
	endpoints = append(endpoints, m.cfg.Join...)
	slices.Sort(endpoints)
	cli, err := m.newClient(slices.Compact(endpoints))
	if err != nil {
		return fmt.Errorf("embedded: promote learner %x: %w", id, err)
	}
	defer cli.Close()
	var last error
	m.setWaiting(fmt.Sprintf("joining via %s: added as a learner; waiting to be promoted to a voting member once it has caught up with the leader",
		strings.Join(m.cfg.Join, ", ")))
	for s.IsLearner() {
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		_, err := cli.MemberPromote(rctx, id)
		cancel()
		switch {
		case err == nil:
			m.log.Info("promoted learner to voting member", "name", m.cfg.Name, "member_id", fmt.Sprintf("%x", id))
		case errors.Is(err, rpctypes.ErrMemberNotFound):
			return m.removedError()
		case !errors.Is(err, rpctypes.ErrMemberNotLearner):
			last = m.requestError(ctx, err)
		}
		select {
		case <-time.After(retryInterval):
		case <-s.StopNotify():
			return m.stoppedError()
		case <-ctx.Done():
			err := m.ctxError(ctx, fmt.Sprintf("promote learner %x", id), "")
			if last != nil {
				err = fmt.Errorf("%w (last error: %w)", err, last)
			}
			return err
		}
	}
	return nil
}

// newClient returns a client of endpoints (other members' client URLs) for
// membership calls, with the member's client TLS (see TLS); like every etcd
// client of the sidecar it ignores HTTP(S)_PROXY.
func (m *Member) newClient(endpoints []string) (*clientv3.Client, error) {
	tlsCfg, err := m.cfg.ClientTLS.clientConfig()
	if err != nil {
		return nil, fmt.Errorf("client TLS: %w", err)
	}
	return clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: requestTimeout,
		TLS:         tlsCfg,
		Logger:      zap.NewNop(), // its retry warnings would repeat what Run reports
		DialOptions: []grpc.DialOption{grpc.WithNoProxy()},
	})
}

// requestError replaces a bare deadline error of one request with what it
// means.
func (m *Member) requestError(ctx context.Context, err error) error {
	switch {
	case errors.Is(context.Cause(ctx), errStartTimeout):
		return fmt.Errorf("start_timeout %s ran out: %w", m.cfg.StartTimeout, err)
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		return fmt.Errorf("no answer within %s (is the cluster reachable and does it have a leader?): %w", requestTimeout, err)
	}
	return err
}
