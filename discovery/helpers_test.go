package discovery_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/naming/endpoints"

	"github.com/sidecar-dev/sidecar/discovery"
	"github.com/sidecar-dev/sidecar/internal/etcdclient"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

const prefix = "/sidecar/services"

// newClient builds a client the way the daemon does (internal/etcdclient:
// reconnect backoff capped under a second, keep-alive pings), closed at
// cleanup.
func newClient(t testing.TB, endpoint string) *clientv3.Client {
	t.Helper()
	cli, err := etcdclient.New(context.Background(), etcdclient.Config{Endpoints: []string{endpoint}})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// startCache runs a cache on cli until cleanup, which fails the test if Run
// returns an error or does not return.
func startCache(t testing.TB, cli *clientv3.Client, cfg discovery.Config) *discovery.Cache {
	t.Helper()
	if cfg.Prefix == "" {
		cfg.Prefix = prefix
	}
	c, err := discovery.New(cli, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return 10s after its context ended")
		}
	})
	return c
}

// register writes an instance as the registry does, with endpoints.Manager.
func register(t testing.TB, cli *clientv3.Client, service, id, addr string, weight int, node string, md map[string]string) int64 {
	t.Helper()
	target := prefix + "/" + service
	m, err := endpoints.NewManager(cli, target)
	if err != nil {
		t.Fatal(err)
	}
	meta := map[string]any{"id": id, "weight": weight, "node": node, "metadata": md}
	if err := m.AddEndpoint(t.Context(), target+"/"+id, endpoints.Endpoint{Addr: addr, Metadata: meta}); err != nil {
		t.Fatalf("register %s/%s: %v", service, id, err)
	}
	return currentRev(t, cli)
}

func currentRev(t testing.TB, cli *clientv3.Client) int64 {
	t.Helper()
	resp, err := cli.Get(t.Context(), "rev-probe", clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

func put(t testing.TB, cli *clientv3.Client, key, value string) int64 {
	t.Helper()
	resp, err := cli.Put(t.Context(), key, value)
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return resp.Header.Revision
}

func del(t testing.TB, cli *clientv3.Client, key string) int64 {
	t.Helper()
	resp, err := cli.Delete(t.Context(), key)
	if err != nil {
		t.Fatalf("delete %s: %v", key, err)
	}
	return resp.Header.Revision
}

// eventually is etcdtest.Eventually, the project's one poll helper.
func eventually(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	etcdtest.Eventually(t, timeout, what, f)
}

// get calls Get with a 5s bound and fails the test on error.
func get(t testing.TB, c *discovery.Cache, service string) discovery.Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	snap, err := c.Get(ctx, service)
	if err != nil {
		t.Fatalf("Get %s: %v", service, err)
	}
	return snap
}

// next receives from ch until a snapshot satisfies ok, failing the test
// after timeout or when ch closes.
func next(t testing.TB, ch <-chan discovery.Snapshot, timeout time.Duration, what string, ok func(discovery.Snapshot) bool) discovery.Snapshot {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var last discovery.Snapshot
	for {
		select {
		case s, open := <-ch:
			if !open {
				t.Fatalf("%s: channel closed; last snapshot %s", what, describe(last))
			}
			if ok(s) {
				return s
			}
			last = s
		case <-timer.C:
			t.Fatalf("%s: not within %s; last snapshot %s", what, timeout, describe(last))
		}
	}
}

// describe renders a snapshot compactly: rev, stale and id=weight pairs.
func describe(s discovery.Snapshot) string {
	var b strings.Builder
	fmt.Fprintf(&b, "rev=%d stale=%v [", s.Revision, s.Stale)
	for i, in := range s.Instances {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", in.ID, in.Weight)
	}
	b.WriteByte(']')
	return b.String()
}

// ids returns the instance ids of s joined by commas.
func ids(s discovery.Snapshot) string {
	out := make([]string, len(s.Instances))
	for i, in := range s.Instances {
		out[i] = in.ID
	}
	return strings.Join(out, ",")
}

func weightOf(s discovery.Snapshot, id string) int {
	for _, in := range s.Instances {
		if in.ID == id {
			return in.Weight
		}
	}
	return -1
}

// metric sums the samples of the Prometheus metric name (any labels) that
// the etcd member at clientURL serves on /metrics. An embedded member's
// metrics are process-wide, so tests that read them do not run in
// parallel.
func metric(t testing.TB, clientURL, name string) float64 {
	t.Helper()
	resp, err := http.Get(clientURL + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	var sum float64
	found := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metrics: %q: %v", line, err)
		}
		sum += v
		found = true
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("metrics: %v", err)
	}
	if !found {
		t.Fatalf("metrics: no %s", name)
	}
	return sum
}

var errNotYet = errors.New("not yet")
