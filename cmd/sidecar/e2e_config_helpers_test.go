package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// Helpers of the config mirroring end-to-end tests (e2e_config_test.go).

// e2eMirror is a `sidecar run` mirroring mirrorPrefix into dir, and a client
// of its etcd.
type e2eMirror struct {
	p    *daemonProc
	yaml string
	dir  string
	etcd *clientv3.Client
}

// startMirror runs `sidecar run` in join mode through etcdURL with one
// config mapping of mirrorPrefix into a new directory; mapping holds extra
// fields of the mapping, indented for it.
func startMirror(t *testing.T, etcdURL string, etcd *clientv3.Client, mapping string) *e2eMirror {
	t.Helper()
	m := &e2eMirror{dir: filepath.Join(t.TempDir(), "app"), etcd: etcd}
	m.yaml = fmt.Sprintf(`
name: mirror
data_dir: %s
etcd: {endpoints: [%s]}
config:
  - prefix: %s
    dir: %s
%s
log: {level: debug}
`, t.TempDir(), etcdURL, mirrorPrefix, m.dir, mapping)
	m.p = startProc(t, m.yaml)
	return m
}

// restart starts the daemon again with the same configuration, after the
// old one exited.
func (m *e2eMirror) restart(t *testing.T) {
	t.Helper()
	m.p = startProc(t, m.yaml)
}

// signal sends sig to the daemon; SIGSTOP also registers a SIGCONT for the
// cleanup, so that a stopped daemon can still be shut down.
func (m *e2eMirror) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if sig == syscall.SIGSTOP {
		proc := m.p.cmd.Process
		t.Cleanup(func() { proc.Signal(syscall.SIGCONT) })
		if err := etcdtest.StopProcess(proc.Pid); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := m.p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// mapping returns the one mapping of `sidecar config --json`.
func (m *e2eMirror) mapping(t *testing.T) (api.ConfigMapping, error) {
	t.Helper()
	out, err := m.p.cli(t, "config", "--json")
	if err != nil {
		return api.ConfigMapping{}, err
	}
	var cm api.ConfigMappings
	if err := json.Unmarshal([]byte(out), &cm); err != nil || len(cm.Mappings) != 1 {
		return api.ConfigMapping{}, fmt.Errorf("config --json: %v: %s", err, out)
	}
	return cm.Mappings[0], nil
}

// waitRevision waits until `sidecar config --json` shows the mapping at
// rev or later without an error, and returns it.
func (m *e2eMirror) waitRevision(t *testing.T, rev int64, within time.Duration) api.ConfigMapping {
	t.Helper()
	var got api.ConfigMapping
	etcdtest.Eventually(t, within, fmt.Sprintf("sidecar config at revision %d", rev), func() error {
		select {
		case err := <-m.p.done:
			m.p.done <- err
			t.Fatalf("daemon exited: %v\n%s", err, m.p.stderr)
		default:
		}
		cm, err := m.mapping(t)
		if err != nil || cm.Revision < rev || cm.LastError != "" {
			return fmt.Errorf("%+v %v", cm, err)
		}
		got = cm
		return nil
	})
	return got
}

// inSync asserts that the directory holds exactly what etcd holds under
// the prefix now, and no temporary file anywhere. Call it once the mapping
// shows etcd's revision: a directory that reflects revision R has every
// file of R, and no other.
func (m *e2eMirror) inSync(t *testing.T) {
	t.Helper()
	resp, err := m.etcd.Get(t.Context(), mirrorPrefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][32]byte{}
	for _, kv := range resp.Kvs {
		want[strings.TrimPrefix(string(kv.Key), mirrorPrefix)] = sha256.Sum256(kv.Value)
	}
	files, temps := scanMirror(t, m.dir)
	if len(temps) > 0 {
		t.Errorf("temporary files left: %v", temps)
	}
	for rel, sum := range want {
		b, ok := files[rel]
		if !ok {
			t.Errorf("%s: missing", rel)
		} else if sha256.Sum256(b) != sum {
			t.Errorf("%s: %d bytes, not etcd's value", rel, len(b))
		}
	}
	for rel := range files {
		if _, ok := want[rel]; !ok {
			t.Errorf("%s: on disk, not in etcd", rel)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// isTemp reports whether name is one of configsync's temporary files.
func isMirrorTemp(name string) bool { return strings.HasPrefix(name, "..sidecar-tmp-") }

// scanDir reads every regular file under dir: the files by their path
// relative to dir, and the temporary files apart.
func scanMirror(t *testing.T, dir string) (files map[string][]byte, temps []string) {
	t.Helper()
	files = map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if isMirrorTemp(e.Name()) {
			temps = append(temps, rel)
			return nil
		}
		b, err := os.ReadFile(p)
		files[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatalf("scan %s: %v", dir, err)
	}
	return files, temps
}

// hasTemp reports whether a temporary file is anywhere under dir now.
func hasMirrorTemp(dir string) bool {
	found := false
	filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err == nil && isMirrorTemp(e.Name()) {
			found = true
			return fs.SkipAll
		}
		return nil
	})
	return found
}

// sealedFile is "<rel> <round>\n", noise up to size bytes, then the SHA-256
// of all that: a file can be checked to be one whole value of its key.
func sealedFile(noise *rand.ChaCha8, rel string, round, size int) []byte {
	v := fmt.Appendf(nil, "%s %d\n", rel, round)
	if n := size - len(v); n > 0 {
		v = append(v, make([]byte, n)...)
		noise.Read(v[len(v)-n:])
	}
	sum := sha256.Sum256(v)
	return append(v, sum[:]...)
}

// openSealedFile checks that b is a whole sealedFile of rel and returns
// its round.
func openSealedFile(rel string, b []byte) (int, error) {
	if len(b) <= sha256.Size {
		return 0, fmt.Errorf("%s: %d bytes: empty or cut short", rel, len(b))
	}
	body, sum := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], sum) {
		return 0, fmt.Errorf("%s: %d bytes: checksum mismatch (torn or partly written)", rel, len(b))
	}
	line, _, _ := bytes.Cut(body, []byte("\n"))
	name, round, _ := strings.Cut(string(line), " ")
	n, err := strconv.Atoi(round)
	if name != rel || err != nil {
		return 0, fmt.Errorf("%s: holds the value of %q round %q", rel, name, round)
	}
	return n, nil
}

// roundOf returns the round in the first line of the file at path, or -1.
func roundOf(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return -1
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil {
		return -1
	}
	_, round, _ := strings.Cut(strings.TrimSpace(line), " ")
	n, err := strconv.Atoi(round)
	if err != nil {
		return -1
	}
	return n
}

// putConfig puts each value under mirrorPrefix and returns the highest
// revision.
func putConfig(t *testing.T, cli *clientv3.Client, kvs map[string][]byte) int64 {
	t.Helper()
	var rev int64
	for rel, v := range kvs {
		resp, err := cli.Put(t.Context(), mirrorPrefix+rel, string(v))
		if err != nil {
			t.Fatalf("put %s: %v", rel, err)
		}
		rev = max(rev, resp.Header.Revision)
	}
	return rev
}

// fileStamp is what must not change about a file nobody changed in etcd:
// its bytes and its mtime (a rewrite with the same bytes shows there).
type fileStamp struct {
	sum   [32]byte
	mtime time.Time
}

func (s fileStamp) String() string {
	return fmt.Sprintf("sha256 %x… mtime %s", s.sum[:6], s.mtime.Format(time.RFC3339Nano))
}

func (s fileStamp) same(o fileStamp) bool { return s.sum == o.sum && s.mtime.Equal(o.mtime) }

func sameStamps(a, b map[string]fileStamp) bool {
	return maps.EqualFunc(a, b, fileStamp.same)
}

// unchangedFor asserts, again and again for d, that the files are as in
// before and that `sidecar config` answers at once, with rev or later.
func (m *e2eMirror) unchangedFor(t *testing.T, d time.Duration, before map[string]fileStamp, rev int64) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		start := time.Now()
		cm, err := m.mapping(t)
		if took := time.Since(start); err != nil || took > 3*time.Second || cm.Revision < rev || cm.Files != len(before) || cm.LagS <= 0 {
			t.Fatalf("sidecar config while etcd is away: %+v, %v, after %s (want the old files and a lag)", cm, err, took)
		}
		if now := fileStamps(t, m.dir); !sameStamps(now, before) {
			t.Fatalf("files changed while etcd was away:\nbefore %v\nnow    %v", before, now)
		}
	}
}

// fileStamps stamps every file under dir, by its path relative to dir.
func fileStamps(t *testing.T, dir string) map[string]fileStamp {
	t.Helper()
	out := map[string]fileStamp{}
	files, _ := scanMirror(t, dir)
	for rel, b := range files {
		fi, err := os.Stat(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		out[rel] = fileStamp{sha256.Sum256(b), fi.ModTime()}
	}
	return out
}
