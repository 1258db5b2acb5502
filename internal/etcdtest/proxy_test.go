package etcdtest_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// echoServer echoes every connection until cleanup.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

// roundTrip writes msg and reads it back within wait.
func roundTrip(c net.Conn, msg string, wait time.Duration) (string, error) {
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	return readN(c, len(msg), wait)
}

func readN(c net.Conn, n int, wait time.Duration) (string, error) {
	_ = c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, n)
	_, err := io.ReadFull(c, buf)
	return string(buf), err
}

func TestProxy(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // runs last
	p := etcdtest.StartProxy(t, echoServer(t))
	if !strings.HasPrefix(p.URL(), "http://127.0.0.1:") {
		t.Errorf("URL() = %q", p.URL())
	}
	dial := func() net.Conn {
		t.Helper()
		c, err := net.DialTimeout("tcp", p.Addr(), time.Second)
		if err != nil {
			t.Fatalf("dial proxy: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	c1 := dial()
	if got, err := roundTrip(c1, "a", time.Second); err != nil || got != "a" {
		t.Fatalf("forwarding: got %q, %v", got, err)
	}

	p.Blackhole()
	if _, err := roundTrip(c1, "b", 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("blackholed connection: want a read timeout, got %v", err)
	}
	c2 := dial() // accepted, but nothing is forwarded
	if _, err := roundTrip(c2, "c", 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("connection made while blackholed: want a read timeout, got %v", err)
	}

	p.Heal() // held bytes arrive, as TCP would retransmit them
	if got, err := readN(c1, 1, time.Second); err != nil || got != "b" {
		t.Fatalf("after heal, old connection: got %q, %v", got, err)
	}
	if got, err := readN(c2, 1, time.Second); err != nil || got != "c" {
		t.Fatalf("after heal, connection made while blackholed: got %q, %v", got, err)
	}

	p.Drop()
	if _, err := readN(c1, 1, 2*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("dropped connection: want EOF or reset, got %v", err)
	}
	if c, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		c.Close()
		t.Fatalf("dial while dropped succeeded")
	}

	p.Heal()
	if got, err := roundTrip(dial(), "d", time.Second); err != nil || got != "d" {
		t.Fatalf("after heal from drop: got %q, %v", got, err)
	}
	p.Close()
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

func TestProxyReset(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // runs last
	p := etcdtest.StartProxy(t, echoServer(t))
	dial := func() net.Conn {
		t.Helper()
		c, err := net.DialTimeout("tcp", p.Addr(), time.Second)
		if err != nil {
			t.Fatalf("dial proxy: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	open := dial()
	if got, err := roundTrip(open, "a", time.Second); err != nil || got != "a" {
		t.Fatalf("forwarding: got %q, %v", got, err)
	}

	p.Reset()
	if _, err := readN(open, 1, 2*time.Second); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("connection open at Reset: want a reset, got %v", err)
	}
	for i := range 3 { // each new connection is reset after its first bytes
		if _, err := roundTrip(dial(), "hello", 2*time.Second); !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("connection %d made while resetting: want a reset, got %v", i, err)
		}
	}

	p.Heal()
	if got, err := roundTrip(dial(), "b", time.Second); err != nil || got != "b" {
		t.Fatalf("after heal from reset: got %q, %v", got, err)
	}
	p.Close()
}

func TestProxyEtcd(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	p := etcdtest.StartProxy(t, e.ClientURL)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{p.URL()}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	get := func(wait time.Duration) error {
		ctx, cancel := context.WithTimeout(t.Context(), wait)
		defer cancel()
		_, err := cli.Get(ctx, "k")
		return err
	}
	if err := get(5 * time.Second); err != nil {
		t.Fatalf("get through proxy: %v", err)
	}
	p.Blackhole()
	if err := get(500 * time.Millisecond); err == nil {
		t.Fatalf("get through a blackholed proxy succeeded")
	}
	p.Heal()
	if err := get(5 * time.Second); err != nil {
		t.Fatalf("get after heal: %v", err)
	}
}
