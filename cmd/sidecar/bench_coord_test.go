package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/sidecar-dev/sidecar/client"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// Lock figures for the README, against a real etcd process, each beside
// its floor in the same run: an in-process concurrency.Mutex on a session
// of its own (what the sidecar does per hold), on the same etcd.
//
//	go test -run '^$' -bench 'LockAcquire|LockHandOff' -benchtime 100x ./cmd/sidecar

// BenchmarkLockAcquire: an uncontended lock through the socket, from the
// request until the acquired event (p50_ms, p99_ms), beside the floor: a
// new session (lease grant) and Mutex.Lock (floor_p50_ms, floor_p99_ms).
// Each hold is given up before the next; that is not timed.
func BenchmarkLockAcquire(b *testing.B) {
	srv := etcdtest.StartServer(b, etcdtest.ServerOptions{})
	cmd, c, _ := startBench(b, joinYAML(b, srv.ClientURL))
	defer stopBench(cmd)
	cli := srv.Client(b)
	var got, floor []time.Duration
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		h, err := c.Lock(context.Background(), fmt.Sprintf("bench%d", i%4), nil)
		if err != nil {
			b.Fatal(err)
		}
		got = append(got, time.Since(start))
		h.Close()

		start = time.Now()
		s, m, err := floorLock(cli, fmt.Sprintf("/floor/locks/bench%d", i%4))
		if err != nil {
			b.Fatal(err)
		}
		floor = append(floor, time.Since(start))
		m.Unlock(context.Background())
		s.Close()
	}
	reportWithFloor(b, got, floor)
}

// floorLock takes a lock the bare way: a session of its own, Mutex.Lock.
func floorLock(cli *clientv3.Client, prefix string) (*concurrency.Session, *concurrency.Mutex, error) {
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(5))
	if err != nil {
		return nil, nil, err
	}
	m := concurrency.NewMutex(s, prefix)
	if err := m.Lock(context.Background()); err != nil {
		s.Close()
		return nil, nil, err
	}
	return s, m, nil
}

// BenchmarkLockHandOff: a holder and a waiter; from the holder giving up
// (closing its stream) until the waiter's acquired event, beside the
// floor: from Mutex.Unlock until the waiting Mutex.Lock returns.
func BenchmarkLockHandOff(b *testing.B) {
	srv := etcdtest.StartServer(b, etcdtest.ServerOptions{})
	cmd, c, _ := startBench(b, joinYAML(b, srv.ClientURL))
	defer stopBench(cmd)
	cli := srv.Client(b)
	var got, floor []time.Duration
	for i := 0; b.Loop(); i++ {
		got = append(got, sidecarHandOff(b, c, fmt.Sprintf("handoff%d", i)))
		floor = append(floor, floorHandOff(b, cli, fmt.Sprintf("/floor/locks/handoff%d", i)))
	}
	reportWithFloor(b, got, floor)
}

func sidecarHandOff(b *testing.B, c *client.Client, name string) time.Duration {
	first, err := c.Lock(context.Background(), name, nil)
	if err != nil {
		b.Fatal(err)
	}
	acquired := make(chan time.Time, 1)
	go func() {
		h, err := c.Lock(context.Background(), name, nil)
		if err != nil {
			b.Error(err)
			acquired <- time.Time{}
			return
		}
		acquired <- time.Now()
		h.Close()
	}()
	time.Sleep(150 * time.Millisecond) // the waiter's watch is live (etcd starts delivering a new watch within 100 ms)
	start := time.Now()
	first.Close()
	return (<-acquired).Sub(start)
}

func floorHandOff(b *testing.B, cli *clientv3.Client, prefix string) time.Duration {
	s1, m1, err := floorLock(cli, prefix)
	if err != nil {
		b.Fatal(err)
	}
	defer s1.Close()
	acquired := make(chan time.Time, 1)
	go func() {
		s2, m2, err := floorLock(cli, prefix)
		if err != nil {
			b.Error(err)
			acquired <- time.Time{}
			return
		}
		acquired <- time.Now()
		m2.Unlock(context.Background())
		s2.Close()
	}()
	time.Sleep(150 * time.Millisecond)
	start := time.Now()
	m1.Unlock(context.Background())
	return (<-acquired).Sub(start)
}

// reportWithFloor reports p50/p99 of got and of floor, in ms.
func reportWithFloor(b *testing.B, got, floor []time.Duration) {
	reportQuantiles(b, got)
	f50, f99 := quantiles(floor)
	b.ReportMetric(f50, "floor_p50_ms")
	b.ReportMetric(f99, "floor_p99_ms")
}

// BenchmarkElectionResign: a leader and a waiting candidate; from the
// leader giving up (closing its stream: the sidecar resigns) until the
// candidate's elected event, beside the floor: from Election.Resign
// until the waiting Election.Campaign returns.
//
//	go test -run '^$' -bench ElectionResign -benchtime 100x ./cmd/sidecar
func BenchmarkElectionResign(b *testing.B) {
	srv := etcdtest.StartServer(b, etcdtest.ServerOptions{})
	cmd, c, _ := startBench(b, joinYAML(b, srv.ClientURL))
	defer stopBench(cmd)
	cli := srv.Client(b)
	var got, floor []time.Duration
	for i := 0; b.Loop(); i++ {
		got = append(got, sidecarResign(b, c, fmt.Sprintf("resign%d", i)))
		floor = append(floor, floorResign(b, cli, fmt.Sprintf("/floor/elections/resign%d", i)))
	}
	reportWithFloor(b, got, floor)
}

func sidecarResign(b *testing.B, c *client.Client, name string) time.Duration {
	leader, err := c.Campaign(context.Background(), name, "a", nil)
	if err != nil {
		b.Fatal(err)
	}
	elected := make(chan time.Time, 1)
	go func() {
		h, err := c.Campaign(context.Background(), name, "b", nil)
		if err != nil {
			b.Error(err)
			elected <- time.Time{}
			return
		}
		elected <- time.Now()
		h.Close()
	}()
	time.Sleep(150 * time.Millisecond) // the candidate's watch is live
	start := time.Now()
	leader.Close()
	return (<-elected).Sub(start)
}

func floorResign(b *testing.B, cli *clientv3.Client, prefix string) time.Duration {
	campaign := func(value string) (*concurrency.Session, *concurrency.Election, error) {
		s, err := concurrency.NewSession(cli, concurrency.WithTTL(5))
		if err != nil {
			return nil, nil, err
		}
		e := concurrency.NewElection(s, prefix)
		if err := e.Campaign(context.Background(), value); err != nil {
			s.Close()
			return nil, nil, err
		}
		return s, e, nil
	}
	s1, e1, err := campaign("a")
	if err != nil {
		b.Fatal(err)
	}
	defer s1.Close()
	elected := make(chan time.Time, 1)
	go func() {
		s2, e2, err := campaign("b")
		if err != nil {
			b.Error(err)
			elected <- time.Time{}
			return
		}
		elected <- time.Now()
		e2.Resign(context.Background())
		s2.Close()
	}()
	time.Sleep(150 * time.Millisecond)
	start := time.Now()
	e1.Resign(context.Background())
	return (<-elected).Sub(start)
}
