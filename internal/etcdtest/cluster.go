package etcdtest

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Cluster is a cluster of etcd server processes (go tool server) on
// loopback, each a Server that can be killed, paused and restarted on its
// own. Its methods are not safe for concurrent use.
type Cluster struct {
	Members []*Server

	t testing.TB
}

// StartCluster starts size plain-HTTP members named m0, m1, ... on free
// loopback ports as one new cluster, waits until each answers a
// linearizable read, and kills them at test cleanup. opts.Args are added to
// every member's flags; opts.Name, Host and TLS are ignored.
func StartCluster(t testing.TB, size int, opts ServerOptions) *Cluster {
	t.Helper()
	bin := ServerBinary(t)
	c := &Cluster{t: t}
	var initial []string
	for i := 0; i < size; i++ {
		dir := t.TempDir()
		o := ServerOptions{Name: fmt.Sprintf("m%d", i), Host: "127.0.0.1", Args: opts.Args}
		s := &Server{t: t, opts: o, DataDir: filepath.Join(dir, "data"), LogFile: filepath.Join(dir, "etcd.log")}
		t.Cleanup(s.cleanup)
		s.setPorts(freePortOn(t, o.Host), freePortOn(t, o.Host))
		initial = append(initial, o.Name+"="+s.PeerURL)
		c.Members = append(c.Members, s)
	}
	for _, s := range c.Members {
		for i, a := range s.args {
			if strings.HasPrefix(a, "--initial-cluster=") {
				s.args[i] = "--initial-cluster=" + strings.Join(initial, ",")
			}
		}
		if err := s.start(bin); err != nil {
			t.Fatalf("etcdtest: start etcd %s: %v", s.opts.Name, err)
		}
	}
	errs := make([]error, size)
	var wg sync.WaitGroup
	for i, s := range c.Members {
		wg.Go(func() { errs[i] = s.waitReady() })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("etcdtest: cluster member m%d not ready: %v", i, err)
		}
	}
	return c
}

// ClientURLs returns the members' client URLs, in member order.
func (c *Cluster) ClientURLs() []string {
	urls := make([]string, len(c.Members))
	for i, s := range c.Members {
		urls[i] = s.ClientURL
	}
	return urls
}

// Client returns a client of every member, closed at test cleanup.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   c.ClientURLs(),
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("etcdtest: cluster client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Leader returns the index in Members of the running member that reports
// itself as leader, or -1 when none does.
func (c *Cluster) Leader(t testing.TB) int {
	t.Helper()
	cli := c.Client(t)
	for i, s := range c.Members {
		if !s.Running() {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := cli.Status(ctx, s.ClientURL)
		cancel()
		if err == nil && st.Leader != 0 && st.Leader == st.Header.MemberId {
			return i
		}
	}
	return -1
}
