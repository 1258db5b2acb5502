// Command listwrite is the floor for sidecar's initial-sync benchmark: a
// bare program that reads every key under a prefix with clientv3, in pages
// of 500 all at the revision of the first page, and writes each value
// atomically and durably into a directory (a temporary file in it, chmod
// 0644, fsync, rename, fsync of the directory), at the key minus the
// prefix. It then prints "synced" and waits for SIGTERM, so the benchmark
// can read its peak RSS as it reads the sidecar's. It refuses keys with a
// '/' after the prefix; it is not a sidecar and does nothing else.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

const pageSize = 500 // keys per range request, as the sidecar's mappings

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: listwrite ENDPOINT PREFIX DIR")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	n, err := run(ctx, os.Args[1], os.Args[2], os.Args[3])
	if err != nil {
		fmt.Fprintln(os.Stderr, "listwrite:", err)
		os.Exit(1)
	}
	fmt.Println("synced", n)
	<-ctx.Done()
}

// run writes every key under prefix into dir and returns how many.
func run(ctx context.Context, endpoint, prefix, dir string) (int, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	d, err := os.Open(dir)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	n, key, end, rev := 0, prefix, clientv3.GetPrefixRangeEnd(prefix), int64(0)
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(pageSize)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := cli.Get(ctx, key, opts...)
		if err != nil {
			return n, err
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			if err := write(d, strings.TrimPrefix(string(kv.Key), prefix), kv.Value); err != nil {
				return n, err
			}
			n++
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return n, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// write replaces the file name in the directory d with data, atomically
// and durably.
func write(d *os.File, name string, data []byte) error {
	if name == "" || strings.Contains(name, "/") {
		return fmt.Errorf("key %q: not a file name", name)
	}
	f, err := os.CreateTemp(d.Name(), ".tmp")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(d.Name(), name))
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	return d.Sync()
}
