package sidecar

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/naming/endpoints"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/client"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// outage is a way of making etcd silent without closing anything, and of
// ending that silence.
type outage struct {
	endpoint   string // what the daemon dials
	seed       *clientv3.Client
	cut, heal  func()
	silentKind string
}

func blackholed(t *testing.T) outage {
	e := etcdtest.StartEmbedded(t)
	p := etcdtest.StartProxy(t, e.ClientURL)
	return outage{endpoint: p.URL(), seed: e.Client(t), cut: p.Blackhole, heal: p.Heal, silentKind: "blackholed link"}
}

func paused(t *testing.T) outage {
	s := etcdtest.StartServer(t, etcdtest.ServerOptions{})
	return outage{endpoint: s.ClientURL, seed: s.Client(t), cut: s.Pause, heal: s.Resume, silentKind: "SIGSTOPped etcd"}
}

// healthProber asks /v1/health every 50ms with a 1s bound until stopped,
// and records the slowest answer and every request that got none.
type healthProber struct {
	mu      sync.Mutex
	slowest time.Duration
	failed  []string
	n       int
}

func probeHealth(t *testing.T, c *client.Client) (*healthProber, func()) {
	hp := &healthProber{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			rctx, rcancel := context.WithTimeout(ctx, time.Second)
			start := time.Now()
			_, err := c.Health(rctx)
			took := time.Since(start)
			rcancel()
			hp.mu.Lock()
			hp.n++
			hp.slowest = max(hp.slowest, took)
			if err != nil && ctx.Err() == nil {
				hp.failed = append(hp.failed, fmt.Sprintf("after %s: %v", took, err))
			}
			hp.mu.Unlock()
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return hp, func() { cancel(); <-done }
}

// etcdView is what the daemon says about etcd now, through its socket.
type etcdView struct {
	healthy, etcdOK, connected, stale bool
	reason                            string
}

func view(t *testing.T, c *client.Client, service string) (etcdView, error) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	h, err := c.Health(ctx)
	if err != nil {
		return etcdView{}, err
	}
	st, err := c.Status(ctx)
	if err != nil {
		return etcdView{}, err
	}
	svc, err := c.Service(ctx, service)
	if err != nil {
		return etcdView{}, err
	}
	return etcdView{
		healthy: h.Healthy, etcdOK: h.Components["etcd"].State == api.StateOK,
		connected: st.Etcd.Connected, stale: svc.Stale, reason: st.Etcd.LastError,
	}, nil
}

// TestSilentEtcdSeenInSeconds: a blackholed link or a SIGSTOPped etcd, with
// and without a registered service: /v1/health answers every request within
// 1s throughout; within 3s health is 503 with etcd unavailable, status says
// connected:false with the reason, and discovery answers are stale; within
// 1s of etcd answering again all of it clears.
func TestSilentEtcdSeenInSeconds(t *testing.T) {
	for _, tc := range []struct {
		name    string
		outage  func(*testing.T) outage
		service bool
	}{
		{"blackhole", blackholed, false},
		{"blackhole with service", blackholed, true},
		{"sigstop", paused, false},
		{"sigstop with service", paused, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.outage(t)
			em, _ := endpoints.NewManager(o.seed, "/sidecar/services/billing")
			if err := em.AddEndpoint(t.Context(), "/sidecar/services/billing/b1", endpoints.Endpoint{Addr: "10.0.0.9:9000"}); err != nil {
				t.Fatal(err)
			}
			cfg := Defaults()
			cfg.Name, cfg.DataDir = "t1", t.TempDir()
			cfg.Etcd.Endpoints = []string{o.endpoint}
			cfg.API.Socket = shortDir(t) + "/s.sock"
			cfg.Log.Level = "error"
			if tc.service {
				cfg = withService(cfg, "orders", 8080)
				cfg.Service.TTL = 5 * time.Second // longer than the outage: health is 200 again at once
			}
			r := startDaemon(t, cfg)
			if tc.service {
				waitFor(t, "registered", 5*time.Second, func() bool { return registered(t, r.cli) })
			}
			etcdtest.Eventually(t, 3*time.Second, "fresh before the outage", func() error {
				v, err := view(t, r.cli, "billing")
				if err != nil || !v.healthy || !v.connected || v.stale {
					return fmt.Errorf("%+v %v", v, err)
				}
				return nil
			})
			hp, stopProbe := probeHealth(t, r.cli)
			o.cut()
			took := etcdtest.Eventually(t, 3*time.Second, "503, connected:false and stale after the "+o.silentKind, func() error {
				v, err := view(t, r.cli, "billing")
				if err != nil || v.healthy || v.etcdOK || v.connected || !v.stale || v.reason == "" {
					return fmt.Errorf("%+v %v", v, err)
				}
				return nil
			})
			time.Sleep(time.Second)
			o.heal()
			back := etcdtest.Eventually(t, time.Second, "all clear after the "+o.silentKind+" ended", func() error {
				v, err := view(t, r.cli, "billing")
				if err != nil || !v.healthy || !v.etcdOK || !v.connected || v.stale || v.reason != "" {
					return fmt.Errorf("%+v %v", v, err)
				}
				return nil
			})
			stopProbe()
			t.Logf("seen after %s, clear %s after the end; %d health requests, slowest %s", took, back, hp.n, hp.slowest)
			if len(hp.failed) > 0 || hp.slowest > time.Second {
				t.Errorf("health requests without an answer within 1s: %q (slowest %s)", hp.failed, hp.slowest)
			}
		})
	}
}

// TestHealthCallerHangsUp: a health caller that goes away mid-request does
// not change the answer of the next one.
func TestHealthCallerHangsUp(t *testing.T) {
	r := startDaemon(t, embeddedConfig(t))
	for range 20 {
		ctx, cancel := context.WithCancel(t.Context())
		go func() { time.Sleep(time.Millisecond); cancel() }()
		_, _ = r.cli.Health(ctx)
	}
	h, err := r.cli.Health(t.Context())
	if err != nil || !h.Healthy {
		t.Fatalf("health after callers hung up = %+v, %v", h, err)
	}
	if m := get(t, r.cli, "/metrics", http.StatusOK); !strings.Contains(m, "sidecar_etcd_up 1") {
		t.Errorf("sidecar_etcd_up is not 1 after callers hung up")
	}
}

// TestStreamsCannotStarveHealth: one local user holding as many streams as
// the socket takes connections still leaves /v1/health answering.
func TestStreamsCannotStarveHealth(t *testing.T) {
	cfg := embeddedConfig(t)
	startDaemon(t, cfg)
	codes := map[string]int{}
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range maxConns {
		c, err := net.Dial("unix", cfg.SocketPath())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET /v1/services/orders?watch=true HTTP/1.1\r\nHost: sidecar\r\n\r\n")
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatalf("stream %d: %v", len(conns), err)
		}
		codes[strings.TrimSpace(line)]++
	}
	if codes["HTTP/1.1 200 OK"] != maxStreams || codes["HTTP/1.1 503 Service Unavailable"] != maxConns-maxStreams {
		t.Errorf("answers to %d stream requests: %v", maxConns, codes)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if h, err := client.New(cfg.SocketPath()).Health(ctx); err != nil || !h.Healthy {
		t.Fatalf("health with %d streams open = %+v, %v", maxStreams, h, err)
	}
}
