package lease_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
	"github.com/sidecar-dev/sidecar/internal/lease"
)

// pauseHelperEnv names the etcd endpoint of the helper process of
// TestPausedPastDeadline; TestMain runs the helper when it is set.
const pauseHelperEnv = "LEASE_TEST_PAUSE_HELPER"

// pauseHelper holds a session and, every few milliseconds, takes the time,
// looks at Lost and prints "act T" (it may act, having checked at or after
// T) or "lost T", then exits.
func pauseHelper(endpoint string) int {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := lease.New(ctx, cli, lease.Config{TTL: ttl})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("ready")
	for {
		now := time.Now()
		select {
		case <-s.Lost():
			fmt.Println("lost", now.UnixNano())
			return 0
		default:
			fmt.Println("act", now.UnixNano())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPausedPastDeadline: a process stopped (SIGSTOP) past its deadline
// sees Lost closed on its first look after it continues, before it acts.
func TestPausedPastDeadline(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), pauseHelperEnv+"="+e.ClientURL)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 4096)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	if l := nextLine(t, lines, 10*time.Second); l != "ready" {
		t.Fatalf("helper: %s", l)
	}
	time.Sleep(ttl / 2) // some keep-alives acknowledged
	if err := etcdtest.StopProcess(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	time.Sleep(ttl + 500*time.Millisecond) // past any deadline the helper can have
	resumed := time.Now()
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	for {
		l := nextLine(t, lines, 2*time.Second)
		verb, ns, _ := strings.Cut(l, " ")
		n, err := strconv.ParseInt(ns, 10, 64)
		if err != nil {
			t.Fatalf("helper: %s", l)
		}
		at := time.Unix(0, n)
		switch {
		case verb == "lost":
			t.Logf("helper saw the loss on a look %s after it was continued", at.Sub(resumed))
			return
		case !at.Before(resumed):
			t.Fatalf("helper acted on a look %s after it was continued, past its deadline", at.Sub(resumed))
		}
	}
}

func nextLine(t *testing.T, lines <-chan string, wait time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatal("helper exited")
		}
		return l
	case <-time.After(wait):
		t.Fatalf("no line from the helper within %s", wait)
		return ""
	}
}
