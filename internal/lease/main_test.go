package lease_test

import (
	"os"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/internal/etcdclient"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

func TestMain(m *testing.M) {
	if ep := os.Getenv(pauseHelperEnv); ep != "" {
		os.Exit(pauseHelper(ep))
	}
	etcdtest.RunWithLeakCheck(m, 10*time.Second)
}

// newClient is the daemon's kind of client of endpoint, closed at cleanup.
func newClient(t *testing.T, endpoint string) *clientv3.Client {
	t.Helper()
	cli, err := etcdclient.New(t.Context(), etcdclient.Config{Endpoints: []string{endpoint}})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}
