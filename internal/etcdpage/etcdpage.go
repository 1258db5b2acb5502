// Package etcdpage reads a key range of etcd in pages, all at the revision
// of the first page, so that a large prefix is read consistently with
// bounded memory. It is the one paginated reader of the sidecar (discovery
// lists, config mirroring); it is not a cache and does not retry.
package etcdpage

import (
	"context"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Reader reads ranges in pages. The zero value is not usable: set Client,
// PageSize and Timeout.
type Reader struct {
	Client   *clientv3.Client
	PageSize int64         // keys per request
	Timeout  time.Duration // bounds each request
}

// Range reads the keys in [key, end) in pages, all at the revision of the
// first page (or at rev when it is not 0), calling page with each page's
// keys in order. page returns the key to continue from, or "" for the key
// after the page's last. Range returns the revision read, or the first
// error of a request or of page. extra options are added to each request
// (e.g. clientv3.WithKeysOnly()).
func (r Reader) Range(ctx context.Context, key, end string, rev int64, extra []clientv3.OpOption, page func([]*mvccpb.KeyValue) (string, error)) (int64, error) {
	for {
		opts := append([]clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(r.PageSize)}, extra...)
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		rctx, cancel := context.WithTimeout(ctx, r.Timeout)
		resp, err := r.Client.Get(rctx, key, opts...)
		cancel()
		if err != nil {
			return 0, err
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		next, err := page(resp.Kvs)
		if err != nil {
			return 0, err
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return rev, nil
		}
		if next == "" {
			next = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
		}
		key = next
	}
}

// Prefix reads every key under prefix, as Range.
func (r Reader) Prefix(ctx context.Context, prefix string, rev int64, extra []clientv3.OpOption, page func([]*mvccpb.KeyValue) (string, error)) (int64, error) {
	return r.Range(ctx, prefix, clientv3.GetPrefixRangeEnd(prefix), rev, extra, page)
}
