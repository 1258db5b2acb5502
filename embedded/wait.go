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
)

// probeTimeout bounds each question asked to find out why the cluster
// refuses this member: a member list, a dial, a status.
const probeTimeout = 500 * time.Millisecond

// Waiting returns what the member's start-up waits for, in the user's words
// (for example "joining via http://10.0.0.13:2379: etcd refuses to add a
// member while etcd02 is down"), or "" when it does not wait: before Run,
// once it serves, after a failed start. It never waits on etcd.
func (m *Member) Waiting() string {
	if p := m.waiting.Load(); p != nil {
		return *p
	}
	return ""
}

// setWaiting records what start-up waits for ("" for nothing) and reports
// whether that changed.
func (m *Member) setWaiting(reason string) bool {
	old := m.waiting.Swap(&reason)
	return old == nil || *old != reason
}

// refusedAdd explains why the cluster refused to add this member, naming
// the voting members that are down when that is the cause.
func (m *Member) refusedAdd(ctx context.Context, cli *clientv3.Client, err error) string {
	why := "etcd refuses to add a member: " + err.Error()
	switch {
	case errors.Is(err, rpctypes.ErrTooManyLearners):
		why = "the cluster already has a learner (etcd allows one); waiting until it is promoted"
	case errors.Is(err, rpctypes.ErrUnhealthy), errors.Is(err, rpctypes.ErrMemberNotEnoughStarted):
		why = "etcd refuses to add a member until every voting member has been up and connected for 5s"
		if down := downMembers(ctx, cli); len(down) > 0 {
			why = "etcd refuses to add a member while " + andList(down) + " " + isAre(len(down)) + " down"
		}
	case errors.Is(err, rpctypes.ErrMemberNotFound):
		if w := m.Waiting(); w != "" {
			return w // a transient refusal: keep the reason known so far
		}
	}
	return fmt.Sprintf("joining via %s: %s", strings.Join(m.cfg.Join, ", "), why)
}

// downMembers lists the voting members whose client URLs do not answer a
// status request within probeTimeout, each named by its name, or its ID
// when it never started; nil when the list cannot be had.
func downMembers(ctx context.Context, cli *clientv3.Client) []string {
	lctx, cancel := context.WithTimeout(ctx, probeTimeout)
	resp, err := cli.MemberList(lctx, clientv3.WithSerializable())
	cancel()
	if err != nil {
		return nil
	}
	var mu sync.Mutex
	var down []string
	var wg sync.WaitGroup
	for _, mb := range resp.Members {
		if mb.IsLearner {
			continue
		}
		wg.Go(func() {
			if !answers(ctx, cli, mb.ClientURLs) {
				mu.Lock()
				down = append(down, memberName(mb))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(down)
	return down
}

// answers reports whether one of urls answers a status request within
// probeTimeout. A member that never started has none.
func answers(ctx context.Context, cli *clientv3.Client, urls []string) bool {
	for _, u := range urls {
		if err := dialProbe(ctx, u); err != nil {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, probeTimeout)
		_, err := cli.Status(sctx, u)
		cancel()
		if err == nil {
			return true
		}
	}
	return false
}

// dialProbe connects to the host of endpoint within probeTimeout: a refused
// connection is known at once, where a status request would retry until its
// deadline.
func dialProbe(ctx context.Context, endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return err
	}
	d := net.Dialer{Timeout: probeTimeout}
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return err
	}
	return conn.Close()
}

func memberName(mb *pb.Member) string {
	if mb.Name != "" {
		return mb.Name
	}
	return fmt.Sprintf("%x (added, never started)", mb.ID)
}

// andList joins names as "a", "a and b", "a, b and c".
func andList(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

func isAre(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}
