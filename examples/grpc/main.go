// Command grpc is the example of weighted gRPC balancing: it serves the
// gRPC health service on some addresses, and calls a service through the
// sidecar's resolver and the weighted balancer, printing where the calls
// went.
//
//	go run ./examples/grpc serve 127.0.0.1:50051 127.0.0.1:50052 127.0.0.1:50053
//	go run ./examples/grpc call -n 600 sidecar:///orders
//
// The walk-through is in README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/sidecar-dev/sidecar/grpcsidecar"
)

const usage = `usage:
  grpc serve ADDR...            serve the gRPC health service on each ADDR
  grpc call [-n N] TARGET       make N calls to TARGET (e.g. sidecar:///orders), print the shares`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "grpc:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch args[0] {
	case "serve":
		if len(args) < 2 {
			return errors.New(usage)
		}
		return serve(ctx, args[1:])
	case "call":
		fs := flag.NewFlagSet("call", flag.ContinueOnError)
		n := fs.Int("n", 600, "number of calls")
		if err := fs.Parse(args[1:]); err != nil || fs.NArg() != 1 {
			return errors.New(usage)
		}
		return call(ctx, fs.Arg(0), *n, out)
	}
	return errors.New(usage)
}

// serve runs a gRPC server with the health service on each address until
// ctx ends.
func serve(ctx context.Context, addrs []string) error {
	for _, a := range addrs {
		lis, err := net.Listen("tcp", a)
		if err != nil {
			return err
		}
		srv := grpc.NewServer()
		healthpb.RegisterHealthServer(srv, health.NewServer())
		go srv.Serve(lis)
		defer srv.Stop()
		log.Printf("serving grpc.health.v1.Health on %s", lis.Addr())
	}
	<-ctx.Done()
	return nil
}

// call makes n health checks to target through the weighted balancer and
// writes how many calls each server address got.
func call(ctx context.Context, target string, n int, out io.Writer) error {
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(grpcsidecar.ServiceConfig))
	if err != nil {
		return err
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	got := map[string]int{}
	for range n {
		var p peer.Peer
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := hc.Check(cctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p))
		cancel()
		if err != nil {
			return fmt.Errorf("call %s: %w", target, err)
		}
		got[p.Addr.String()]++
	}
	addrs := make([]string, 0, len(got))
	for a := range got {
		addrs = append(addrs, a)
	}
	slices.Sort(addrs)
	for _, a := range addrs {
		fmt.Fprintf(out, "%s\t%d calls\t%.1f%%\n", a, got[a], 100*float64(got[a])/float64(n))
	}
	return nil
}
