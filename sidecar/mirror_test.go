package sidecar

import (
	"fmt"
	"net/http"
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

// mirrorDaemon runs an embedded daemon mirroring /config/app/ into a new
// directory, and returns it, a client of its member and the directory.
func mirrorDaemon(t *testing.T, onChange func(dir string) OnChangeConfig) (*running, *clientv3.Client, string) {
	t.Helper()
	cfg := embeddedConfig(t)
	dir := filepath.Join(t.TempDir(), "app")
	cfg.Config = []MappingConfig{{Prefix: "/config/app/", Dir: dir}}
	if onChange != nil {
		cfg.Config[0].OnChange = onChange(dir)
	}
	r := startDaemon(t, cfg)
	cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.Embedded.ListenClientURLs, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return r, cli, dir
}

// TestConfigMirrorInDaemon: a config mapping runs in the daemon, shows in
// /v1/config and /v1/status; a directory that cannot be written makes
// /v1/health 503 with the mapping's error, and the daemon recovers by
// itself once it can write again.
func TestConfigMirrorInDaemon(t *testing.T) {
	r, cli, dir := mirrorDaemon(t, nil)
	if _, err := cli.Put(t.Context(), "/config/app/app.yaml", "port: 8080\n"); err != nil {
		t.Fatal(err)
	}
	etcdtest.Eventually(t, 5*time.Second, "file mirrored", func() error {
		b, err := os.ReadFile(filepath.Join(dir, "app.yaml"))
		if err != nil || string(b) != "port: 8080\n" {
			return fmt.Errorf("%q %v", b, err)
		}
		return nil
	})
	cm, err := r.cli.Config(t.Context())
	if err != nil || len(cm.Mappings) != 1 || cm.Mappings[0].Files != 1 || cm.Mappings[0].Revision == 0 || cm.Mappings[0].LastError != "" {
		t.Fatalf("/v1/config = %+v, %v", cm, err)
	}
	if st, err := r.cli.Status(t.Context()); err != nil || len(st.Config) != 1 || st.Config[0].Files != 1 {
		t.Fatalf("status config = %+v, %v", st.Config, err)
	}

	// A file where a directory must go: the mapping cannot write sub/x.
	blocker := filepath.Join(dir, "sub")
	if err := os.WriteFile(blocker, []byte("in the way"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(t.Context(), "/config/app/sub/x", "1"); err != nil {
		t.Fatal(err)
	}
	etcdtest.Eventually(t, 5*time.Second, "health 503 with the mapping's error", func() error {
		h, err := r.cli.Health(t.Context())
		if err != nil || h.Healthy || h.Components["config"].State != api.StateFailing || h.Components["config"].Error == "" {
			return fmt.Errorf("%+v %v", h, err)
		}
		return nil
	})
	etcdtest.Eventually(t, 5*time.Second, "lag grows while failing", func() error {
		m := get(t, r.cli, "/metrics", http.StatusOK)
		if lag := metricValue(m, `sidecar_config_lag_seconds{prefix="/config/app/"}`); lag < 0.5 {
			return fmt.Errorf("lag %v, want 0.5s or more", lag)
		}
		return nil
	})
	os.Remove(blocker)
	etcdtest.Eventually(t, 15*time.Second, "recovered by itself", func() error {
		h, err := r.cli.Health(t.Context())
		if err != nil || !h.Healthy || h.Components["config"].State != api.StateOK {
			return fmt.Errorf("%+v %v", h, err)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "sub", "x")); err != nil || string(b) != "1" {
			return fmt.Errorf("sub/x: %q %v", b, err)
		}
		return nil
	})
	if m := get(t, r.cli, "/metrics", http.StatusOK); metricValue(m, `sidecar_config_lag_seconds{prefix="/config/app/"}`) != 0 {
		t.Errorf("lag after recovery: %v, want 0", metricValue(m, `sidecar_config_lag_seconds{prefix="/config/app/"}`))
	}
}

// metricValue returns the value of the sample named series (name and
// labels as exposed), or -1 when there is none.
func metricValue(exposition, series string) float64 {
	for line := range strings.Lines(exposition) {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// TestConfigWatchStream: /v1/config?watch=true streams each batch once it
// is on disk, and the stream ends when the daemon stops.
func TestConfigWatchStream(t *testing.T) {
	r, cli, dir := mirrorDaemon(t, nil)
	st, err := r.cli.WatchConfig(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := cli.Put(t.Context(), "/config/app/x.conf", "1"); err != nil {
		t.Fatal(err)
	}
	b, err := st.Next()
	if err != nil || b.Prefix != "/config/app/" || fmt.Sprint(b.Changed, b.Deleted) != "[x.conf] []" || b.Revision == 0 {
		t.Fatalf("batch %+v, %v", b, err)
	}
	if data, err := os.ReadFile(filepath.Join(dir, "x.conf")); err != nil || string(data) != "1" {
		t.Fatalf("file when its batch arrived: %q %v", data, err)
	}
	start := time.Now()
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("shutdown took %s with a config stream open", took)
	}
}

// TestConfigReloadInDaemon: on_change.command runs after each batch that
// changed files (none for an empty initial sync), and the metrics count
// each reload, write and watched put.
func TestConfigReloadInDaemon(t *testing.T) {
	log := filepath.Join(t.TempDir(), "reloads")
	r, cli, _ := mirrorDaemon(t, func(dir string) OnChangeConfig {
		return OnChangeConfig{Command: []string{"sh", "-c", `ls "$0" | tr '\n' ' ' >> "$1"; echo >> "$1"`, dir, log}}
	})
	// Both puts must come through the watch, not the initial list: wait
	// for the first sync (an empty prefix) before writing.
	etcdtest.Eventually(t, 5*time.Second, "initial sync", func() error {
		if cm, err := r.cli.Config(t.Context()); err != nil || len(cm.Mappings) != 1 || cm.Mappings[0].Revision == 0 {
			return fmt.Errorf("/v1/config = %+v, %v", cm, err)
		}
		return nil
	})
	if _, err := cli.Put(t.Context(), "/config/app/a", "1"); err != nil {
		t.Fatal(err)
	}
	etcdtest.Eventually(t, 5*time.Second, "first reload", func() error {
		if b, _ := os.ReadFile(log); string(b) != "a \n" {
			return fmt.Errorf("reloads %q", b)
		}
		return nil
	})
	if _, err := cli.Put(t.Context(), "/config/app/b", "2"); err != nil {
		t.Fatal(err)
	}
	etcdtest.Eventually(t, 5*time.Second, "second reload", func() error {
		if b, _ := os.ReadFile(log); string(b) != "a \na b \n" {
			return fmt.Errorf("reloads %q", b)
		}
		return nil
	})
	metrics := get(t, r.cli, "/metrics", http.StatusOK)
	for _, want := range []string{
		`sidecar_config_reloads_total{prefix="/config/app/",result="ok"} 2`,
		`sidecar_config_files{prefix="/config/app/"} 2`,
		`sidecar_config_writes_total{prefix="/config/app/"} 2`,
		`sidecar_config_failing{prefix="/config/app/"} 0`,
		`sidecar_config_lag_seconds{prefix="/config/app/"} 0`,
		`sidecar_config_write_latency_seconds_count{prefix="/config/app/"} 2`, // both puts came through the watch
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestConfigSnapshotInDaemon: layout, owner and group reach the mapping:
// the files appear through ..data, owned as configured.
func TestConfigSnapshotInDaemon(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving files to another owner needs root")
	}
	cfg := embeddedConfig(t)
	dir := filepath.Join(t.TempDir(), "app")
	cfg.Config = []MappingConfig{{Prefix: "/config/app/", Dir: dir, Layout: "snapshot", Owner: "65534", Group: "65534"}}
	startDaemon(t, cfg)
	cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.Embedded.ListenClientURLs, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(t.Context(), "/config/app/db/pool", "8"); err != nil {
		t.Fatal(err)
	}
	etcdtest.Eventually(t, 5*time.Second, "file through ..data", func() error {
		if link, err := os.Readlink(filepath.Join(dir, "db")); err != nil || link != "..data/db" {
			return fmt.Errorf("db → %q, %v", link, err)
		}
		b, err := os.ReadFile(filepath.Join(dir, "db", "pool"))
		if err != nil || string(b) != "8" {
			return fmt.Errorf("%q %v", b, err)
		}
		return nil
	})
	fi, err := os.Stat(filepath.Join(dir, "db", "pool"))
	if st := fi.Sys().(*syscall.Stat_t); err != nil || st.Uid != 65534 || st.Gid != 65534 {
		t.Errorf("db/pool owned by %d:%d, want 65534:65534", st.Uid, st.Gid)
	}
}
