package grpcsidecar

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc/resolver"

	"github.com/sidecar-dev/sidecar/client"
	"github.com/sidecar-dev/sidecar/internal/retry"
)

// Scheme is the target scheme of the sidecar resolver: sidecar:///<service>.
const Scheme = "sidecar"

// Reconnection backoff of the sidecar resolver after the daemon went away:
// the socket is local, so it retries soon and often.
const (
	reconnectBase = 50 * time.Millisecond
	reconnectMax  = time.Second
)

func init() { resolver.Register(&Builder{}) }

// Builder builds resolvers of sidecar:///<service> targets that follow the
// local daemon's instance list. The zero Builder, registered for the
// "sidecar" scheme when the package is imported, dials
// [client.DefaultSocket]; pass another with grpc.WithResolvers. A Builder
// is safe for concurrent use and must not be changed once in use.
type Builder struct {
	// Socket is the daemon's unix socket. Default: $SIDECAR_SOCKET, else
	// the default socket path, read when a resolver is built.
	Socket string
	// Logger gets the resolvers' logs, with component=grpcsidecar.
	// Default: discard.
	Logger *slog.Logger
}

// Scheme returns "sidecar".
func (b *Builder) Scheme() string { return Scheme }

// Build starts following the instance list of the service target names.
func (b *Builder) Build(target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	name, err := serviceName(target)
	if err != nil {
		return nil, err
	}
	socket := b.Socket
	if socket == "" {
		socket = client.DefaultSocket()
	}
	log := logger(b.Logger).With("service", name, "socket", socket)
	ctx, cancel := context.WithCancel(context.Background())
	r := &sidecarResolver{
		cli:    client.New(socket),
		sink:   sink{cc: cc, service: name, log: log},
		cancel: cancel,
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.run(ctx)
	}()
	return r, nil
}

// logger returns l with component=grpcsidecar, or a discarding logger.
func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l.With("component", "grpcsidecar")
}

// sidecarResolver follows one service's watch stream on the daemon.
type sidecarResolver struct {
	cli    *client.Client
	sink   sink // used by run only
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// run follows the stream until ctx ends, opening it again with backoff
// whenever the daemon goes away or is not there.
func (r *sidecarResolver) run(ctx context.Context) {
	bo := retry.Backoff{Base: reconnectBase, Max: reconnectMax}
	for {
		err := r.follow(ctx, &bo)
		if ctx.Err() != nil {
			return
		}
		r.sink.fail(err)
		if !retry.Sleep(ctx, bo.Next()) {
			return
		}
	}
}

// follow opens the watch stream and hands each answer to the sink until
// the stream ends; it returns why. A first answer resets bo.
func (r *sidecarResolver) follow(ctx context.Context, bo *retry.Backoff) error {
	st, err := r.cli.WatchService(ctx, r.sink.service)
	if err != nil {
		return err
	}
	defer st.Close()
	for {
		svc, err := st.Next()
		if err != nil {
			if errors.Is(err, client.ErrDaemonGone) {
				r.sink.log.Debug("daemon went away, reconnecting", "err", err)
			}
			return err
		}
		bo.Reset()
		insts := make([]instance, len(svc.Instances))
		for i, in := range svc.Instances {
			insts[i] = instance{id: in.ID, addr: in.Addr, weight: int64(in.Weight)}
		}
		r.sink.update(insts, svc.Stale)
	}
}

// ResolveNow does nothing: the resolver is told of every change.
func (r *sidecarResolver) ResolveNow(resolver.ResolveNowOptions) {}

// Close stops following the stream and waits until it has stopped.
func (r *sidecarResolver) Close() {
	r.cancel()
	r.wg.Wait()
	r.cli.Close()
}
