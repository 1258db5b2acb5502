package main

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/sidecar-dev/sidecar/client"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// failoverTTL is the session TTL of both sides of BenchmarkElectionFailover:
// the smallest the sidecar allows, as a team wanting fast failover sets it.
const failoverTTL = 2 * time.Second

// BenchmarkElectionFailover: the leader's sidecar is SIGKILLed while a
// candidate waits on another sidecar; from the kill until the candidate's
// elected event (p50_ms, p99_ms; goal ≤ TTL + 600 ms), beside the floor:
// a bare concurrency.Election whose leader's client stops without
// revoking (its keep-alives stop, as in a crash), from then until the
// waiting Campaign returns. Both use a 2 s TTL. The crash comes at a
// varying phase of the keep-alive cycle. Each round starts one new
// candidate on each side, which campaigns behind the new leader; that is
// not timed.
//
//	go test -run '^$' -bench ElectionFailover -benchtime 20x ./cmd/sidecar
func BenchmarkElectionFailover(b *testing.B) {
	srv := etcdtest.StartServer(b, etcdtest.ServerOptions{})
	yaml := func() string {
		return joinYAML(b, srv.ClientURL) + fmt.Sprintf("coordination: {ttl: %s}\n", failoverTTL)
	}
	const floorPrefix = "/floor/elections/failover"
	leader := newCandidate(b, yaml(), "failover", "0")
	bareLeader := newBareCandidate(b, srv.ClientURL, floorPrefix, "0")
	<-leader.elected
	<-bareLeader.elected
	waiter := newCandidate(b, yaml(), "failover", "1")
	bareWaiter := newBareCandidate(b, srv.ClientURL, floorPrefix, "1")
	var got, floor []time.Duration
	for i := 0; b.Loop(); i++ {
		time.Sleep(phase(i))
		killed := time.Now()
		leader.cmd.Process.Kill()
		leader.cmd.Wait()
		got = append(got, electedAfter(b, waiter.elected, killed))
		leader, waiter = waiter, newCandidate(b, yaml(), "failover", fmt.Sprint(i+2))

		time.Sleep(phase(i))
		crashed := time.Now()
		bareLeader.cli.Close() // keep-alives stop; the lease is not revoked
		floor = append(floor, electedAfter(b, bareWaiter.elected, crashed))
		bareLeader, bareWaiter = bareWaiter, newBareCandidate(b, srv.ClientURL, floorPrefix, fmt.Sprint(i+2))
	}
	stopBench(leader.cmd)
	stopBench(waiter.cmd)
	reportWithFloor(b, got, floor)
	b.ReportMetric(ms(failoverTTL), "ttl_ms")
}

// electedAfter is how long after crashed elected received.
func electedAfter(b *testing.B, elected <-chan time.Time, crashed time.Time) time.Duration {
	select {
	case at := <-elected:
		return at.Sub(crashed)
	case <-time.After(failoverTTL + 10*time.Second):
		b.Fatalf("no new leader %s after the crash", failoverTTL+10*time.Second)
		return 0
	}
}

// phase is the pause before round i's crash: 300 ms and a varying part of
// the keep-alive period (TTL/3), so that crashes fall all along it.
func phase(i int) time.Duration {
	return 300*time.Millisecond + time.Duration(i*137%700)*time.Millisecond
}

// candidate is a sidecar daemon with one campaign through it.
type candidate struct {
	cmd     *exec.Cmd
	c       *client.Client
	elected chan time.Time // when the campaign's elected event came
}

// newCandidate starts a sidecar and campaigns in election name through it,
// with value; elected receives once it leads.
func newCandidate(b *testing.B, yaml, name, value string) *candidate {
	b.Helper()
	cmd, c, _ := startBench(b, yaml)
	cd := &candidate{cmd: cmd, c: c, elected: make(chan time.Time, 1)}
	b.Cleanup(func() { stopBench(cmd) })
	go func() {
		h, err := c.Campaign(context.Background(), name, value, nil)
		if err != nil {
			return // its sidecar was stopped first
		}
		cd.elected <- time.Now()
		_ = h // held until its sidecar is killed
	}()
	time.Sleep(300 * time.Millisecond) // its campaign's key is in etcd
	return cd
}

// bareCandidate is a bare concurrency.Election campaign on a client of its
// own, for the floor of BenchmarkElectionFailover.
type bareCandidate struct {
	cli     *clientv3.Client
	elected chan time.Time
}

// newBareCandidate campaigns in the election at prefix with value on a new
// client and a session of failoverTTL; elected receives once it leads.
func newBareCandidate(b *testing.B, endpoint, prefix, value string) *bareCandidate {
	b.Helper()
	cd := &bareCandidate{cli: benchClient(b, endpoint), elected: make(chan time.Time, 1)}
	b.Cleanup(func() { cd.cli.Close() })
	go func() {
		s, err := concurrency.NewSession(cd.cli, concurrency.WithTTL(int(failoverTTL.Seconds())))
		if err != nil {
			return // closed first
		}
		if concurrency.NewElection(s, prefix).Campaign(context.Background(), value) == nil {
			cd.elected <- time.Now()
		}
	}()
	time.Sleep(300 * time.Millisecond) // its campaign's key is in etcd
	return cd
}

func benchClient(b *testing.B, endpoint string) *clientv3.Client {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	return cli
}
