package etcdclient

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"

	"github.com/sidecar-dev/sidecar/internal/retry"
)

// Watch streams and auth tokens. etcd checks a watch stream's auth token
// each time a watch is created on the stream, and the token is the one the
// stream opened with. clientv3 shares one stream among the watches whose
// contexts carry the same outgoing metadata, and keeps it open while any of
// them lives. A simple token (etcd's default) is unknown to a member
// --auth-token-ttl after its last use there, and before that member has
// applied the authentication that issued it at another member. Once the
// stream's token is unknown to its member, every watch created on that
// stream is refused, for as long as the stream stays open
// (etcd-io/etcd#12385): a lock waiter, a config mapping watching again
// after a compaction, a newly asked service. clientv3 does not recover.
const (
	// streamGenKey is outgoing metadata that names a watch's stream
	// generation; a new generation is a new stream, for which clientv3
	// authenticates anew.
	streamGenKey = "sidecar-stream-gen"
	// tokenAttempts bounds how often a watch is created again, each time
	// on a new stream, when etcd refuses the stream's token.
	tokenAttempts = 5
	tokenBackoff  = 50 * time.Millisecond // times the attempt number
)

// tokenWatcher is the Watcher of a client that authenticates with a
// password: it tags each watch's context with a stream generation, one per
// set of outgoing metadata, and when etcd refuses a new watch for its
// stream's token it moves that set to the next generation and creates the
// watch again there. Watches already on the old stream go on (etcd does
// not check them again) and it closes with the last of them.
type tokenWatcher struct {
	clientv3.Watcher

	mu   sync.Mutex
	gens map[string]uint64 // by the stream key of the caller's metadata
}

// watchTokens makes cli's watches recover from refused stream tokens.
func watchTokens(cli *clientv3.Client) {
	cli.Watcher = &tokenWatcher{Watcher: cli.Watcher, gens: map[string]uint64{}}
}

// Watch is clientv3's Watch, created again on a new stream while etcd
// refuses the stream's token (at most tokenAttempts times; the last
// refusal is then delivered). Its channel closes when the watch ends.
func (w *tokenWatcher) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	out := make(chan clientv3.WatchResponse)
	go w.relay(ctx, out, key, opts)
	return out
}

// RequestProgress asks for progress on the stream of ctx's current
// generation, the one the caller's newest watch with ctx's metadata is on.
func (w *tokenWatcher) RequestProgress(ctx context.Context) error {
	base := streamKey(ctx)
	return w.Watcher.RequestProgress(w.tag(ctx, w.gen(base)))
}

// relay creates the watch and forwards its responses to out until it
// ends or ctx does.
func (w *tokenWatcher) relay(ctx context.Context, out chan<- clientv3.WatchResponse, key string, opts []clientv3.OpOption) {
	defer close(out)
	wch, first, ok := w.create(ctx, key, opts)
	for ok {
		select {
		case out <- first:
		case <-ctx.Done():
			go drain(wch) // clientv3 closes it now that ctx ended
			return
		}
		first, ok = <-wch
	}
}

// create opens the watch and returns its channel and first response (ok
// false: the channel closed first). A first response that refuses the
// stream's token moves to a new stream and creates the watch again.
func (w *tokenWatcher) create(ctx context.Context, key string, opts []clientv3.OpOption) (clientv3.WatchChan, clientv3.WatchResponse, bool) {
	base := streamKey(ctx)
	for attempt := 1; ; attempt++ {
		gen := w.gen(base)
		wch := w.Watcher.Watch(w.tag(ctx, gen), key, opts...)
		first, ok := <-wch
		if !ok || !first.Canceled || !IsTokenRefusal(first.Err()) || attempt == tokenAttempts {
			return wch, first, ok
		}
		w.next(base, gen)
		drain(wch) // closes after the refusal
		if !retry.Sleep(ctx, time.Duration(attempt)*tokenBackoff) {
			return wch, first, true // deliver the refusal; the channel then reads closed
		}
	}
}

func (w *tokenWatcher) gen(base string) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gens[base]
}

// next moves base to the generation after gen, unless another refusal
// already did.
func (w *tokenWatcher) next(base string, gen uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.gens[base] == gen {
		w.gens[base] = gen + 1
	}
}

func (w *tokenWatcher) tag(ctx context.Context, gen uint64) context.Context {
	return metadata.AppendToOutgoingContext(ctx, streamGenKey, strconv.FormatUint(gen, 10))
}

// streamKey names the set of outgoing metadata of ctx, as clientv3's
// stream key does.
func streamKey(ctx context.Context) string {
	md, _ := metadata.FromOutgoingContext(ctx)
	return fmt.Sprintf("%+v", map[string][]string(md)) // fmt sorts map keys
}

func drain(wch clientv3.WatchChan) {
	for range wch {
	}
}

// IsTokenRefusal reports whether err is etcd refusing a request's auth
// token: one the member does not know (expired, or issued by another
// member and not yet applied here) or one older than the auth store.
// clientv3 refreshes the token and retries unary requests so refused; a
// watch refused so ends with the error, whose text is then the gRPC
// error's (clientv3 does not map a watch's cancel reason back), so the
// text is compared too.
func IsTokenRefusal(err error) bool {
	return isEtcdError(err, rpctypes.ErrGRPCInvalidAuthToken) || isEtcdError(err, rpctypes.ErrGRPCAuthOldRevision)
}

// IsRefusal reports whether err is etcd refusing a request it received
// for the caller's credentials: a token refusal (IsTokenRefusal) or
// permission denied. etcd answered, so it is no sign of an outage.
func IsRefusal(err error) bool {
	return IsTokenRefusal(err) || isEtcdError(err, rpctypes.ErrGRPCPermissionDenied)
}

// isEtcdError reports whether err is the etcd error grpcErr: as a client
// error or a gRPC status (also wrapped), or as the gRPC error's text.
func isEtcdError(err, grpcErr error) bool {
	if err == nil {
		return false
	}
	return errors.Is(rpctypes.Error(err), rpctypes.Error(grpcErr)) || err.Error() == grpcErr.Error()
}
