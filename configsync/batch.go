package configsync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// maxBatchEvents bounds the events of watch responses that queued up
// while a batch was written, taken together as the next batch (more wait
// in the watch's own buffer).
const maxBatchEvents = 10000

// Batch is one set of changes on disk; paths are relative to the
// mapping's directory, sorted, each in one list: the last change to it.
type Batch struct {
	Prefix   string
	Revision int64    // the etcd revision the directory reflects after it
	Changed  []string // written (created or updated)
	Deleted  []string // removed
	// Latency is the time from the arrival of the batch's first watch
	// response to its files on disk; 0 for a list. (etcd does not stamp
	// events with the time of the put.)
	Latency time.Duration
}

// builder collects a batch's changes, and its first failure.
type builder struct {
	last             map[string]bool // rel path → written (true) or removed (false)
	writes, removals int64
	err              error
}

// note records the result of one write: its path when it changed the
// disk, its error as the batch's failure if it is the first.
func (b *builder) note(rel string, changed bool, err error) {
	b.fail(err)
	if changed {
		b.set(rel, true)
		b.writes++
	}
}

// noteDelete records the result of one removal, as note does.
func (b *builder) noteDelete(rel string, removed bool, err error) {
	b.fail(err)
	if removed {
		b.set(rel, false)
		b.removals++
	}
}

// fail records err as the batch's failure, unless it has one.
func (b *builder) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

func (b *builder) set(rel string, written bool) {
	if b.last == nil {
		b.last = map[string]bool{}
	}
	b.last[rel] = written
}

// batch returns the changes as a Batch.
func (b *builder) batch(prefix string, rev int64) Batch {
	out := Batch{Prefix: prefix, Revision: rev}
	for rel, written := range b.last {
		if written {
			out.Changed = append(out.Changed, rel)
		} else {
			out.Deleted = append(out.Deleted, rel)
		}
	}
	slices.Sort(out.Changed)
	slices.Sort(out.Deleted)
	return out
}

// publish counts a batch that changed the disk and hands it to OnBatch;
// arrived is when its first watch response came (zero for a list).
func (m *Mapping) publish(b *builder, rev int64, arrived time.Time) {
	if b.writes+b.removals == 0 {
		return
	}
	m.mu.Lock()
	m.st.Writes += b.writes
	m.st.Removals += b.removals
	m.mu.Unlock()
	if m.cfg.OnBatch == nil {
		return
	}
	out := b.batch(m.cfg.Prefix, rev)
	if !arrived.IsZero() {
		out.Latency = time.Since(arrived)
	}
	m.cfg.OnBatch(out)
}

// inbox reads a watch on a goroutine of its own, so that the responses
// that arrive while a batch is written wait in one place, and the next
// take hands them all over as one batch. (clientv3 hands responses over
// one at a time through an unbuffered channel: a non-blocking drain of it
// finds one at most.)
type inbox struct {
	ready chan struct{} // cap 1: events or an error are waiting
	space chan struct{} // cap 1: take emptied the buffer
	done  chan struct{} // closed when the reader returns

	mu      sync.Mutex
	evs     []*clientv3.Event
	arrived time.Time // of the first response in evs
	err     error     // why the watch ended; handed over after evs
}

// startInbox starts reading wch, a watch from rev+1, until it ends (its
// context is cancelled) or fails.
func startInbox(wch clientv3.WatchChan, rev int64) *inbox {
	in := &inbox{ready: make(chan struct{}, 1), space: make(chan struct{}, 1), done: make(chan struct{})}
	go in.read(wch, rev)
	return in
}

func (in *inbox) read(wch clientv3.WatchChan, rev int64) {
	defer close(in.done)
	for {
		resp, ok := <-wch
		err := watchErr(resp, ok, rev)
		in.mu.Lock()
		if err != nil {
			in.err = err
		} else if len(resp.Events) > 0 {
			if len(in.evs) == 0 {
				in.arrived = time.Now()
			}
			in.evs = append(in.evs, resp.Events...)
		}
		full := len(in.evs) >= maxBatchEvents
		in.mu.Unlock()
		signal(in.ready)
		if err != nil {
			return
		}
		if full {
			<-in.space // bounded memory: the watch's own buffer holds the rest
		}
	}
}

// watchErr says why a watch response ends the watch, or nil.
func watchErr(resp clientv3.WatchResponse, ok bool, rev int64) error {
	switch {
	case !ok:
		return errors.New("configsync: watch closed")
	case resp.CompactRevision != 0:
		return fmt.Errorf("%w: at %d, compacted at %d", errCompacted, rev+1, resp.CompactRevision)
	case resp.Err() != nil:
		return fmt.Errorf("configsync: watch: %w", resp.Err())
	}
	return nil
}

// take waits for events and returns all that arrived, ending at a
// revision boundary (each response holds whole revisions), with the
// arrival time of the first; after the last of them, why the watch ended.
func (in *inbox) take(ctx context.Context) (evs []*clientv3.Event, arrived time.Time, err error) {
	for {
		in.mu.Lock()
		evs, arrived, err = in.evs, in.arrived, in.err
		if len(evs) > 0 {
			in.evs = nil
			err = nil
		}
		in.mu.Unlock()
		if len(evs) > 0 {
			signal(in.space)
			return evs, arrived, nil
		}
		if err != nil {
			return nil, arrived, err
		}
		select {
		case <-ctx.Done():
			return nil, arrived, ctx.Err()
		case <-in.ready:
		}
	}
}

// signal sends on a channel of capacity 1 without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// lastPerKey returns the last event of each key in evs, in the order of
// those: a key changed many times in one batch is written once.
func lastPerKey(evs []*clientv3.Event) []*clientv3.Event {
	if len(evs) < 2 {
		return evs
	}
	seen := make(map[string]struct{}, len(evs))
	out := make([]*clientv3.Event, 0, len(evs))
	for i := len(evs) - 1; i >= 0; i-- {
		if _, dup := seen[string(evs[i].Kv.Key)]; !dup {
			seen[string(evs[i].Kv.Key)] = struct{}{}
			out = append(out, evs[i])
		}
	}
	slices.Reverse(out)
	return out
}
