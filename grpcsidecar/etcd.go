package grpcsidecar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/resolver"

	"github.com/sidecar-dev/sidecar/discovery"
	"github.com/sidecar-dev/sidecar/internal/record"
)

// EtcdScheme is the target scheme of the etcd resolver: etcd:///<service>.
// It is the scheme of etcd's own naming resolver too, whose targets name
// a key prefix instead; pass the builder with grpc.WithResolvers, which
// decides for that connection.
const EtcdScheme = "etcd"

// EtcdConfig configures the etcd resolver.
type EtcdConfig struct {
	// Namespace is the sidecars' etcd.namespace, such as /sidecar; the
	// instances of service S live at <Namespace>/services/S/<id>. Required.
	Namespace string
	// Logger gets the resolvers' logs, with component=grpcsidecar.
	// Default: discard.
	Logger *slog.Logger
}

// EtcdBuilder builds resolvers of etcd:///<service> targets that read the
// registry's records straight from etcd. It is safe for concurrent use.
type EtcdBuilder struct {
	cli    *clientv3.Client
	prefix string
	log    *slog.Logger
}

// NewEtcdBuilder returns a builder reading through cli, which it never
// closes. It starts nothing; each resolver it builds watches its service
// until gRPC closes it.
func NewEtcdBuilder(cli *clientv3.Client, cfg EtcdConfig) (*EtcdBuilder, error) {
	if cli == nil {
		return nil, errors.New("grpcsidecar: nil etcd client")
	}
	ns := strings.TrimRight(cfg.Namespace, "/")
	if ns == "" {
		return nil, fmt.Errorf("grpcsidecar: namespace %q: want the sidecars' etcd.namespace, such as /sidecar", cfg.Namespace)
	}
	return &EtcdBuilder{cli: cli, prefix: record.ServicesPrefix(ns), log: logger(cfg.Logger)}, nil
}

// Scheme returns "etcd".
func (b *EtcdBuilder) Scheme() string { return EtcdScheme }

// Build starts watching the service target names.
func (b *EtcdBuilder) Build(target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	name, err := serviceName(target)
	if err != nil {
		return nil, err
	}
	log := b.log.With("service", name, "prefix", b.prefix)
	cache, err := discovery.New(b.cli, discovery.Config{Prefix: b.prefix, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("grpcsidecar: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	snaps, err := cache.Subscribe(ctx, name)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("grpcsidecar: %w", err)
	}
	r := &etcdResolver{cancel: cancel}
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		if err := cache.Run(ctx); err != nil {
			log.Error("etcd watch stopped", "err", err)
		}
	}()
	go func() {
		defer r.wg.Done()
		s := sink{cc: cc, service: name, log: log}
		for snap := range snaps { // closes when ctx ends
			insts := make([]instance, len(snap.Instances))
			for i, in := range snap.Instances {
				insts[i] = instance{id: in.ID, addr: in.Addr, weight: int64(in.Weight)}
			}
			s.update(insts, snap.Stale)
		}
	}()
	return r, nil
}

// etcdResolver follows one service through its own discovery cache.
type etcdResolver struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// ResolveNow does nothing: the watch reports every change.
func (r *etcdResolver) ResolveNow(resolver.ResolveNowOptions) {}

// Close stops the watch and waits until it has stopped.
func (r *etcdResolver) Close() {
	r.cancel()
	r.wg.Wait()
}
