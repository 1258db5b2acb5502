package configsync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// maxBatchEvents bounds the events of watch responses that queued up
// while a batch was written, taken together as the next batch.
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

// builder collects a batch's changes, and the error of the last one.
type builder struct {
	last             map[string]bool // rel path → written (true) or removed (false)
	writes, removals int64
	err              error
}

// note records the result of one write: its path when it changed the
// disk, its error in b.err.
func (b *builder) note(rel string, changed bool, err error) {
	b.err = err
	if changed {
		b.set(rel, true)
		b.writes++
	}
}

// noteDelete records the result of one removal, as note does.
func (b *builder) noteDelete(rel string, removed bool, err error) {
	b.err = err
	if removed {
		b.set(rel, false)
		b.removals++
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

// receive waits for a watch response with events, then takes the ones
// already queued behind it too (up to maxBatchEvents events), so that a
// burst written while the last batch went to disk becomes one batch.
// Each response holds whole revisions, so the events end at a revision
// boundary. rev is the revision the directory reflects; arrived is when
// the first response came.
func receive(ctx context.Context, wch clientv3.WatchChan, rev int64) (evs []*clientv3.Event, arrived time.Time, err error) {
	for len(evs) < maxBatchEvents {
		var resp clientv3.WatchResponse
		var ok bool
		if len(evs) == 0 {
			select {
			case <-ctx.Done():
				return nil, arrived, ctx.Err()
			case resp, ok = <-wch:
				arrived = time.Now()
			}
		} else {
			select {
			case resp, ok = <-wch:
			default:
				return evs, arrived, nil
			}
		}
		switch {
		case !ok:
			return nil, arrived, errors.New("configsync: watch closed")
		case resp.CompactRevision != 0:
			return nil, arrived, fmt.Errorf("%w: at %d, compacted at %d", errCompacted, rev+1, resp.CompactRevision)
		case resp.Err() != nil:
			return nil, arrived, fmt.Errorf("configsync: watch: %w", resp.Err())
		}
		evs = append(evs, resp.Events...)
	}
	return evs, arrived, nil
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
