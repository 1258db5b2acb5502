package election

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/internal/retry"
)

// readTimeout bounds each read of Observe's.
const readTimeout = 5 * time.Second

var errWatchClosed = errors.New("election: watch closed")

// Leader is an election's leader.
type Leader struct {
	Value string // the candidate's value
	Key   string // the leader's key
	Fence int64  // the leader key's creation revision
}

// Current reads the leader of the election at prefix: nil, nil when there
// is none.
func Current(ctx context.Context, cli *clientv3.Client, prefix string) (*Leader, error) {
	resp, err := cli.Get(ctx, prefix+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return nil, fmt.Errorf("election: leader of %s: %w", prefix, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	kv := resp.Kvs[0]
	return &Leader{Value: string(kv.Value), Key: string(kv.Key), Fence: kv.CreateRevision}, nil
}

// Observe sends the leader of the election at prefix now, then each time
// it changes (another leader, or a new value), with nil meaning "no
// leader". It lists the prefix at a revision, then watches the prefix from
// the next one, with a leader required; after a compaction, a failed
// watch or an outage it lists again (with backoff), and sends what
// changed meanwhile. Changes within one revision come as one. When the
// leader's key goes (resigned, its lease expired), nil comes first, then
// the next candidate if there is one, so that a hand-over is seen as such.
// The channel closes when ctx ends.
func Observe(ctx context.Context, cli *clientv3.Client, prefix string) <-chan *Leader {
	ch := make(chan *Leader)
	o := &observer{cli: cli, pfx: prefix + "/", ch: ch}
	go o.run(ctx)
	return ch
}

// observer keeps the candidates' keys of one election, to know its leader.
type observer struct {
	cli  *clientv3.Client
	pfx  string
	ch   chan<- *Leader
	keys map[string]*mvccpb.KeyValue
	sent bool    // something was sent
	last *Leader // what was sent last
}

func (o *observer) run(ctx context.Context) {
	defer close(o.ch)
	bo := retry.Backoff{Base: 100 * time.Millisecond, Max: 2 * time.Second}
	for {
		rev, err := o.list(ctx)
		if err == nil {
			var watched bool
			watched, err = o.watch(ctx, rev)
			if watched {
				bo.Reset()
			}
		}
		if ctx.Err() != nil || !retry.Sleep(ctx, bo.Next()) {
			return
		}
	}
}

// list reads every candidate's key, sends the leader if it changed, and
// returns the revision read at.
func (o *observer) list(ctx context.Context) (int64, error) {
	gctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), readTimeout)
	defer cancel()
	resp, err := o.cli.Get(gctx, o.pfx, clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	o.keys = make(map[string]*mvccpb.KeyValue, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		o.keys[string(kv.Key)] = kv
	}
	if !o.publish(ctx) {
		return 0, ctx.Err()
	}
	return resp.Header.Revision, nil
}

// watch applies the prefix's changes after rev, sending the leader after
// each revision that changed it, until the watch fails or ctx ends. It
// reports whether any change came.
func (o *observer) watch(ctx context.Context, rev int64) (bool, error) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	watched, gone := false, false
	for wr := range o.cli.Watch(wctx, o.pfx, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
		if err := wr.Err(); err != nil {
			return watched, err
		}
		for i, ev := range wr.Events {
			watched = true
			key := string(ev.Kv.Key)
			if ev.Type == mvccpb.DELETE {
				delete(o.keys, key)
				gone = gone || (o.last != nil && o.last.Key == key)
			} else {
				o.keys[key] = ev.Kv
			}
			if i+1 < len(wr.Events) && wr.Events[i+1].Kv.ModRevision == ev.Kv.ModRevision {
				continue // the rest of this revision first
			}
			if gone && !o.send(ctx, nil) || !o.publish(ctx) {
				return watched, ctx.Err()
			}
			gone = false
		}
	}
	if err := ctx.Err(); err != nil {
		return watched, err
	}
	return watched, errWatchClosed
}

// publish sends the leader when it differs from what was sent last; it
// reports false when ctx ended first.
func (o *observer) publish(ctx context.Context) bool {
	var first *mvccpb.KeyValue
	for _, kv := range o.keys {
		if first == nil || kv.CreateRevision < first.CreateRevision {
			first = kv
		}
	}
	var cur *Leader
	if first != nil {
		cur = &Leader{Value: string(first.Value), Key: string(first.Key), Fence: first.CreateRevision}
	}
	if o.sent && equal(cur, o.last) {
		return true
	}
	return o.send(ctx, cur)
}

// send sends l (nil: no leader) and remembers it as sent; it reports false
// when ctx ended first.
func (o *observer) send(ctx context.Context, l *Leader) bool {
	var out *Leader
	if l != nil {
		c := *l
		out = &c // the receiver's own copy
	}
	select {
	case o.ch <- out:
		o.sent, o.last = true, l
		return true
	case <-ctx.Done():
		return false
	}
}

func equal(a, b *Leader) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
