package chaos

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// Helpers of the config mirroring scenarios (config_*_test.go).

// cfgPrefix is the etcd prefix the config scenarios mirror.
const cfgPrefix = "/cfg/app/"

// cfgMapping is one `config:` mapping of a sidecar: prefix into dir with
// layout (files or snapshot).
type cfgMapping struct {
	prefix, dir, layout string
}

// cfgYAML is a sidecar configuration named name, in join mode through
// endpoints (a YAML list), that mirrors each mapping.
func cfgYAML(t *testing.T, name, endpoints string, maps ...cfgMapping) string {
	var b strings.Builder
	fmt.Fprintf(&b, "name: %s\ndata_dir: %s\netcd: {endpoints: %s}\nconfig:\n", name, t.TempDir(), endpoints)
	for _, m := range maps {
		fmt.Fprintf(&b, "  - {prefix: %q, dir: %q, layout: %s}\n", m.prefix, m.dir, m.layout)
	}
	return b.String()
}

// cfgStartMirror starts a sidecar through w's proxies mirroring cfgPrefix
// into a new directory with layout, and returns it and the directory.
func cfgStartMirror(t *testing.T, w *world, layout string) (*sidecarProc, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "app")
	p := startSidecar(t, cfgYAML(t, "mirror", w.endpoints(false), cfgMapping{cfgPrefix, dir, layout}))
	return p, dir
}

// cfgMappings returns the mappings of the sidecar's GET /v1/config.
func (p *sidecarProc) cfgMappings() ([]api.ConfigMapping, error) {
	var cm api.ConfigMappings
	code, err := p.get("/v1/config", &cm)
	if err == nil && code != 200 {
		err = fmt.Errorf("GET /v1/config: status %d", code)
	}
	return cm.Mappings, err
}

// cfgWait waits until check passes on the sidecar's mappings, failing at
// once if the sidecar exited, and returns how long it took.
func (p *sidecarProc) cfgWait(t *testing.T, within time.Duration, what string, check func([]api.ConfigMapping) error) time.Duration {
	t.Helper()
	return etcdtest.Eventually(t, within, what, func() error {
		if p.exited() {
			t.Fatalf("sidecar exited: %v\n%s", p.err, p.log)
		}
		mm, err := p.cfgMappings()
		if err != nil {
			return err
		}
		return check(mm)
	})
}

// cfgWaitRevision waits until every mapping of the sidecar shows rev or
// later without an error, and returns the mappings and how long it took.
func (p *sidecarProc) cfgWaitRevision(t *testing.T, rev int64, within time.Duration) ([]api.ConfigMapping, time.Duration) {
	t.Helper()
	var got []api.ConfigMapping
	took := p.cfgWait(t, within, fmt.Sprintf("config mappings at revision %d", rev), func(mm []api.ConfigMapping) error {
		for _, m := range mm {
			if m.Revision < rev || m.LastError != "" {
				return fmt.Errorf("%+v", m)
			}
		}
		got = mm
		return nil
	})
	return got, took
}

// cfgEtcd returns etcd's keys under prefix, by their path relative to the
// prefix, with their values, and the revision of the read.
func (w *world) cfgEtcd(t *testing.T, prefix string) (map[string][]byte, int64, error) {
	c, cancel := ctx(t)
	defer cancel()
	resp, err := w.cli.Get(c, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("list %s: %w", prefix, err)
	}
	kvs := map[string][]byte{}
	for _, kv := range resp.Kvs {
		kvs[strings.TrimPrefix(string(kv.Key), prefix)] = kv.Value
	}
	return kvs, resp.Header.Revision, nil
}

// cfgScan reads every mirrored file under dir by its path relative to dir:
// the regular files of the files layout (temporary files are an error), or
// what the snapshot layout's ..data link points to.
func cfgScan(dir, layout string) (map[string][]byte, error) {
	root := dir
	if layout == "snapshot" {
		target, err := os.Readlink(filepath.Join(dir, "..data"))
		if err != nil {
			return nil, fmt.Errorf("snapshot: %w", err)
		}
		root = filepath.Join(dir, target)
	}
	files := map[string][]byte{}
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if layout == "snapshot" && p == dir {
			return nil
		}
		if strings.HasPrefix(e.Name(), "..") && layout == "files" {
			return fmt.Errorf("%s: a temporary or reserved name left", p)
		}
		if !e.Type().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		b, err := os.ReadFile(p)
		files[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", dir, err)
	}
	return files, nil
}

// cfgSame reports how the directory's files differ from etcd's keys: a
// missing, extra or different file each give a line.
func cfgSame(files, kvs map[string][]byte) error {
	var diff []string
	for _, k := range slices.Sorted(maps.Keys(kvs)) {
		b, ok := files[k]
		switch {
		case !ok:
			diff = append(diff, k+": missing")
		case !bytes.Equal(b, kvs[k]):
			diff = append(diff, fmt.Sprintf("%s: %d bytes, not etcd's %d", k, len(b), len(kvs[k])))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(files)) {
		if _, ok := kvs[k]; !ok {
			diff = append(diff, k+": on disk, not in etcd")
		}
	}
	if len(diff) > 0 {
		return errors.New(strings.Join(diff, "; "))
	}
	return nil
}

// cfgConverge waits until the directory holds exactly etcd's keys under
// prefix, with the mapping at etcd's revision, and returns how long that
// took.
func (p *sidecarProc) cfgConverge(t *testing.T, w *world, dir, layout string, within time.Duration) time.Duration {
	t.Helper()
	return etcdtest.Eventually(t, within, "directory equal to etcd", func() error {
		if p.exited() {
			t.Fatalf("sidecar exited: %v\n%s", p.err, p.log)
		}
		kvs, rev, err := w.cfgEtcd(t, cfgPrefix)
		if err != nil {
			return err
		}
		mm, err := p.cfgMappings()
		if err != nil {
			return err
		}
		if len(mm) != 1 || mm[0].Revision < rev || mm[0].LastError != "" {
			return fmt.Errorf("mapping %+v, etcd at revision %d", mm, rev)
		}
		files, err := cfgScan(dir, layout)
		if err != nil {
			return err
		}
		return cfgSame(files, kvs)
	})
}

// cfgSeal is a self-checking value of key: "key seq\n", padding up to
// about size bytes, then the SHA-256 of all that, so that a reader can
// tell a whole value from a torn or mixed one.
func cfgSeal(key string, seq, size int) []byte {
	v := fmt.Appendf(nil, "%s %d\n", key, seq)
	for len(v) < size {
		v = append(v, byte('a'+(seq+len(v))%26))
	}
	sum := sha256.Sum256(v)
	return append(v, fmt.Sprintf("%x", sum)...)
}

// cfgOpen checks that b is a whole cfgSeal value of key and returns its
// sequence number.
func cfgOpen(key string, b []byte) (int, error) {
	const hexLen = 2 * sha256.Size
	if len(b) <= hexLen {
		return 0, fmt.Errorf("%s: %d bytes: empty or cut short", key, len(b))
	}
	body, sum := b[:len(b)-hexLen], b[len(b)-hexLen:]
	if want := sha256.Sum256(body); fmt.Sprintf("%x", want) != string(sum) {
		return 0, fmt.Errorf("%s: %d bytes: checksum mismatch (torn or mixed)", key, len(b))
	}
	line, _, _ := bytes.Cut(body, []byte("\n"))
	name, seq, _ := strings.Cut(string(line), " ")
	n, err := strconv.Atoi(seq)
	if name != key || err != nil {
		return 0, fmt.Errorf("%s: holds the value of %q seq %q", key, name, seq)
	}
	return n, nil
}
