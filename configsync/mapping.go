package configsync

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/internal/etcdpage"
	"github.com/sidecar-dev/sidecar/internal/retry"
)

// Tuning of a mapping's reads and retries.
const (
	pageSize       = 500             // keys per range request of a (re)list
	requestTimeout = 5 * time.Second // bounds one range request
	backoffBase    = 100 * time.Millisecond
	backoffMax     = 10 * time.Second // a directory that cannot be written is listed again this often
)

// errCompacted ends a watch whose start revision was compacted: the
// mapping lists again at a new revision and diffs.
var errCompacted = errors.New("configsync: watch revision compacted")

// Status is a snapshot of a mapping, as /v1/config shows it.
type Status struct {
	Prefix, Dir string
	Revision    int64  // the etcd revision the directory reflects; 0 before the first sync
	Files       int    // files mirrored now
	Rejected    int    // keys under the prefix refused now (bad path, too large)
	LastError   string // why the last sync or write failed; "" once it succeeds
	Writes      int64  // files written since Run started
	Removals    int64  // files removed since Run started
	// Behind is when the directory stopped following etcd's changes (a
	// failed watch, list or write; Run's start before the first sync);
	// zero while the mapping follows its watch.
	Behind time.Time
}

// Mapping keeps one directory equal to one etcd prefix. Build it with New
// and call Run once; Status is safe for concurrent use, also with Run.
type Mapping struct {
	cli *clientv3.Client
	cfg Config
	log *slog.Logger

	// Used by Run's goroutine only.
	files   map[string]struct{} // rel paths mirrored
	kept    map[string]struct{} // rel paths of refused values: the file keeps its last good content
	refused map[string]string   // key → why, for keys refused now
	logged  map[string]struct{} // refused keys logged once already

	mu sync.Mutex
	st Status
}

// New checks cfg (see Config.Validate), fills defaults and returns a mapping. It starts nothing
// and touches neither etcd nor the disk.
func New(cli *clientv3.Client, cfg Config) (*Mapping, error) {
	if cli == nil {
		return nil, errors.New("configsync: nil etcd client")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("configsync: mapping %q → %q: %w", cfg.Prefix, cfg.Dir, err)
	}
	cfg = cfg.withDefaults()
	if !strings.HasSuffix(cfg.Prefix, "/") {
		cfg.Prefix += "/" // a prefix names a directory of keys: /config/app covers /config/app/x, not /config/app2
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Mapping{
		cli: cli, cfg: cfg, log: log.With("component", "configsync", "prefix", cfg.Prefix, "dir", cfg.Dir),
		logged: map[string]struct{}{},
		st:     Status{Prefix: cfg.Prefix, Dir: cfg.Dir},
	}, nil
}

// Status returns a snapshot of the mapping.
func (m *Mapping) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st
}

// Run mirrors the prefix until ctx ends, then returns nil. It lists the
// prefix at one revision R, writes the files and removes those the
// directory holds beyond them, then watches from R+1 and applies each watch
// response as it comes. After a compacted watch, a failed write or an
// unreachable etcd it lists and diffs again, for ever, with capped,
// jittered backoff; meanwhile the files stay as they were.
func (m *Mapping) Run(ctx context.Context) error {
	bo := retry.Backoff{Base: backoffBase, Max: backoffMax}
	m.behind()
	for ctx.Err() == nil {
		err := m.session(ctx, &bo)
		switch {
		case ctx.Err() != nil:
		case errors.Is(err, errCompacted):
			m.behind()
			m.log.Info("watch compacted; listing again")
		default:
			m.failed(err)
			retry.Sleep(ctx, bo.Next())
		}
	}
	return nil
}

// session opens the directory, syncs it with a list and follows the watch
// until something fails; it returns why.
func (m *Mapping) session(ctx context.Context, bo *retry.Backoff) error {
	uid, gid := -1, -1
	if o := m.cfg.Owner; o != nil {
		uid, gid = o.UID, o.GID
	}
	d, err := openStore(m.cfg.Layout, m.cfg.Dir, m.cfg.FileMode, uid, gid)
	if err != nil {
		return err
	}
	defer d.Close()
	rev, err := m.sync(ctx, d)
	if err != nil {
		return err
	}
	bo.Reset()
	return m.follow(ctx, d, rev)
}

// failed records err as the mapping's last error and logs it.
func (m *Mapping) failed(err error) {
	m.behind()
	m.mu.Lock()
	first := m.st.LastError == ""
	m.st.LastError = err.Error()
	m.mu.Unlock()
	if first {
		m.log.Warn("config mapping not in sync; keeping the files as they are and retrying", "err", err)
	} else {
		m.log.Debug("config mapping retry failed", "err", err)
	}
}

// sync lists the prefix at one revision, page by page, writes each file
// that differs, and then removes the files the directory holds that etcd
// does not (unless deleted keys are kept). It returns the revision.
func (m *Mapping) sync(ctx context.Context, d store) (int64, error) {
	m.files, m.kept, m.refused = map[string]struct{}{}, map[string]struct{}{}, map[string]string{}
	if err := d.Begin(); err != nil {
		return 0, err
	}
	var b builder
	rev, err := m.list(ctx, d, &b)
	if err != nil {
		d.Abort() // a partial list is not etcd's state
		return 0, err
	}
	if b.err == nil {
		m.prune(d, &b)
	}
	if err := cmp.Or(b.err, d.Commit()); err != nil {
		return 0, err
	}
	m.synced(rev)
	maps.DeleteFunc(m.logged, func(key string, _ struct{}) bool { _, now := m.refused[key]; return !now })
	m.log.Info("config mapping in sync", "rev", rev, "files", len(m.files), "written", b.writes, "removed", b.removals, "rejected", len(m.refused))
	m.publish(&b, rev, time.Time{})
	return rev, nil
}

// list writes every key of the prefix at one revision, noting what
// changed, and the first write that failed, in b; it returns the revision,
// or why etcd could not be read.
func (m *Mapping) list(ctx context.Context, d store, b *builder) (int64, error) {
	r := etcdpage.Reader{Client: m.cli, PageSize: pageSize, Timeout: requestTimeout}
	rev, err := r.Prefix(ctx, m.cfg.Prefix, 0, nil, func(kvs []*mvccpb.KeyValue) (string, error) {
		for _, kv := range kvs {
			b.note(m.put(d, kv))
		}
		return "", nil
	})
	if err != nil {
		return 0, fmt.Errorf("configsync: list %q: %w", m.cfg.Prefix, err)
	}
	return rev, nil
}

// prune removes the files of the directory that are not mirrored keys,
// noting them, and a failure, in b.
func (m *Mapping) prune(d store, b *builder) {
	if m.cfg.OnDelete == OnDeleteKeep {
		return
	}
	have, err := d.Files()
	if err != nil {
		b.fail(err)
		return
	}
	for _, rel := range have {
		_, mirrored := m.files[rel]
		_, kept := m.kept[rel]
		if !mirrored && !kept {
			removed, err := d.Remove(rel)
			b.noteDelete(rel, removed, err)
		}
	}
}

// follow watches from rev+1 and applies the responses as they come,
// those that queued up meanwhile as one batch, until the watch fails, a
// write fails, or ctx ends.
func (m *Mapping) follow(ctx context.Context, d store, rev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	in := startInbox(m.cli.Watch(wctx, m.cfg.Prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1)), rev)
	defer func() {
		cancel()
		<-in.done
	}()
	for {
		evs, arrived, err := in.take(ctx)
		if err != nil {
			return err
		}
		var b builder
		if err := m.apply(d, lastPerKey(evs), &b); err != nil {
			return err // the next session lists and diffs: nothing is lost
		}
		rev = evs[len(evs)-1].Kv.ModRevision
		m.synced(rev)
		m.log.Debug("config batch on disk", "rev", rev, "events", len(evs), "written", b.writes, "removed", b.removals, "took", time.Since(arrived))
		m.publish(&b, rev, arrived)
	}
}

// apply writes or removes the file of each event, in order, as one batch,
// noting what changed on disk in b, and returns the first failure. What
// a failure does to the rest of the batch is the layout's to say (see
// Dir.Commit and Snapshot.Commit); the next session lists and diffs again.
func (m *Mapping) apply(d store, evs []*clientv3.Event, b *builder) error {
	if err := d.Begin(); err != nil {
		return err
	}
	for _, ev := range evs {
		if ev.Type == clientv3.EventTypePut {
			b.note(m.put(d, ev.Kv))
		} else {
			b.noteDelete(m.delete(d, string(ev.Kv.Key)))
		}
	}
	return cmp.Or(b.err, d.Commit())
}

// put mirrors one key: it writes the file when the key maps to a path and
// its value is not too large, and otherwise records it as refused. A value
// over MaxFileBytes leaves the file with its last good content, if any.
func (m *Mapping) put(d store, kv *mvccpb.KeyValue) (rel string, changed bool, err error) {
	key := string(kv.Key)
	rel, err = RelPath(key, m.cfg.Prefix)
	if err == nil && int64(len(kv.Value)) > m.cfg.MaxFileBytes {
		m.kept[rel] = struct{}{}
		err = fmt.Errorf("%w: value of %d bytes is over max_file_bytes (%d)", ErrRefused, len(kv.Value), m.cfg.MaxFileBytes)
	}
	if err != nil {
		m.refuse(key, err)
		return "", false, nil
	}
	delete(m.refused, key)
	delete(m.kept, rel)
	m.files[rel] = struct{}{} // mirrored, or its last good content kept when the write fails
	changed, err = d.Write(rel, kv.Value)
	return rel, changed, err
}

// delete removes the file of a deleted key, unless deleted keys are kept.
func (m *Mapping) delete(d store, key string) (rel string, removed bool, err error) {
	delete(m.refused, key)
	delete(m.logged, key)
	rel, err = RelPath(key, m.cfg.Prefix)
	if err != nil || m.cfg.OnDelete == OnDeleteKeep {
		return "", false, nil
	}
	if removed, err = d.Remove(rel); err != nil {
		return rel, false, err
	}
	delete(m.files, rel)
	delete(m.kept, rel)
	return rel, removed, nil
}

// refuse records a key that is not mirrored, logging it the first time.
// A key is logged again only after it was deleted or a re-list no longer
// found it refused, so logged holds no more keys than etcd does.
func (m *Mapping) refuse(key string, why error) {
	if _, seen := m.logged[key]; !seen {
		m.logged[key] = struct{}{}
		m.log.Warn("config key refused; not written", "key", shortKey(key), "err", why)
	}
	m.refused[key] = why.Error()
}

// behind records that the directory stopped following etcd, unless it
// had already.
func (m *Mapping) behind() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.st.Behind.IsZero() {
		m.st.Behind = time.Now()
	}
}

// synced publishes the revision the directory reflects now.
func (m *Mapping) synced(rev int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.st.Revision, m.st.Files, m.st.Rejected = rev, len(m.files), len(m.refused)
	m.st.Behind = time.Time{}
	if m.st.LastError != "" {
		m.log.Info("config mapping recovered", "rev", rev)
	}
	m.st.LastError = ""
}
