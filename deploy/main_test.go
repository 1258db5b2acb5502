package deploy_test

import (
	"io"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// bin is the sidecar binary built once for the package's tests.
var bin struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bin.dir != "" {
		os.RemoveAll(bin.dir)
	}
	os.Exit(code)
}

// sidecarBinary builds cmd/sidecar once and returns its path.
func sidecarBinary(t *testing.T) string {
	t.Helper()
	bin.once.Do(func() {
		if bin.dir, bin.err = os.MkdirTemp("", "deploytest"); bin.err != nil {
			return
		}
		bin.path, bin.err = etcdtest.BuildSidecarOnce(bin.dir)
	})
	if bin.err != nil {
		t.Fatal(bin.err)
	}
	return bin.path
}

// healthStatus asks GET /v1/health at addr (host:port) and returns the
// status code.
func healthStatus(addr string) (int, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/v1/health")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// repoFile reads a file of the repository, relative to this directory.
func repoFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
