package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// TestE2EServicesPick: `sidecar services NAME` says "1 instance", --pick
// prints the weighted pick's host:port (or JSON), and with every instance
// at weight 0 --pick fails saying there is nothing to pick.
func TestE2EServicesPick(t *testing.T) {
	srv := etcdtest.StartServer(t, etcdtest.ServerOptions{})
	cli := srv.Client(t)
	p := startOrders(t, cli, srv.ClientURL)

	out, err := p.cli(t, "services", "orders")
	if err != nil || !strings.HasPrefix(out, "orders: 1 instance at revision ") {
		t.Fatalf("services orders:\n%s %v\nwant it to start with %q", out, err, "orders: 1 instance at revision ")
	}
	if out, err := p.cli(t, "services", "orders", "--pick"); err != nil || out != "127.0.0.1:8080\n" {
		t.Fatalf("services orders --pick: %q %v, want 127.0.0.1:8080", out, err)
	}
	out, err = p.cli(t, "services", "orders", "--pick", "--json")
	var in api.Instance
	if err != nil || json.Unmarshal([]byte(out), &in) != nil || in.ID != "orders-node-a-8080" || in.Weight != 100 {
		t.Fatalf("services orders --pick --json: %s %v", out, err)
	}

	if _, err := p.cli(t, "weight", "0"); err != nil {
		t.Fatal(err)
	}
	want := "sidecar: service orders has no instance to pick: none is registered with a weight above 0"
	etcdtest.Eventually(t, 10*time.Second, "--pick refused at weight 0", func() error {
		_, err := p.cli(t, "services", "orders", "--pick")
		if err == nil || !strings.HasPrefix(err.Error(), "exit status 1: "+want) {
			return fmt.Errorf("services orders --pick at weight 0: %v, want exit 1 and %q", err, want)
		}
		return nil
	})
	_, err = p.cli(t, "services", "--pick")
	if err == nil || !strings.HasPrefix(err.Error(), "exit status 2: sidecar: --watch and --pick need a service NAME") {
		t.Fatalf("services --pick without a name: %v, want exit 2", err)
	}
}
