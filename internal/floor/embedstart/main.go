// Command embedstart is the floor for sidecar's start-up benchmark: a bare
// program that starts a new single-member etcd cluster with
// go.etcd.io/etcd/server/v3/embed, with the member settings the sidecar
// uses for its default embedded member (the embedded package's defaults),
// waits for ReadyNotify, reads once with clientv3 and prints "ready". The
// benchmark times exec → that line, as it times `sidecar run` → the first
// healthy /v1/health. It is not a sidecar and does nothing else.
package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/sidecar-dev/sidecar/embedded"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: embedstart DATA_DIR CLIENT_URL PEER_URL")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2], os.Args[3]); err != nil {
		fmt.Fprintln(os.Stderr, "embedstart:", err)
		os.Exit(1)
	}
}

func run(dir, clientURL, peerURL string) error {
	curl, err := url.Parse(clientURL)
	if err != nil {
		return err
	}
	purl, err := url.Parse(peerURL)
	if err != nil {
		return err
	}
	// What embedded.Config.embedConfig sets for a default single member;
	// everything else is embed's default, as in the sidecar.
	ec := embed.NewConfig()
	ec.Name = "floor"
	ec.Dir = dir
	ec.ListenClientUrls, ec.AdvertiseClientUrls = []url.URL{*curl}, []url.URL{*curl}
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = []url.URL{*purl}, []url.URL{*purl}
	ec.InitialCluster = ec.Name + "=" + peerURL
	ec.InitialClusterToken = embedded.DefaultInitialClusterToken
	ec.ClusterState = embed.ClusterStateFlagNew
	ec.TickMs = uint(embedded.DefaultHeartbeatInterval / time.Millisecond)
	ec.ElectionMs = uint(embedded.DefaultElectionTimeout / time.Millisecond)
	ec.SnapshotCount = embedded.DefaultSnapshotCount
	ec.AutoCompactionMode = embed.CompactorModePeriodic
	ec.AutoCompactionRetention = embedded.DefaultAutoCompactionRetention.String()
	ec.QuotaBackendBytes = embedded.DefaultQuotaBackendBytes
	ec.Logger = "zap"
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())

	e, err := embed.StartEtcd(ec)
	if err != nil {
		return err
	}
	defer e.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		return err
	case <-ctx.Done():
		return nil
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{clientURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	// A linearizable read that needs a leader, as the sidecar's check does.
	if _, err := cli.Get(clientv3.WithRequireLeader(ctx), "floor", clientv3.WithCountOnly()); err != nil {
		return err
	}
	fmt.Println("ready")
	<-ctx.Done()
	return nil
}
