package configsync_test

import (
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

func TestMain(m *testing.M) { etcdtest.RunWithLeakCheck(m, 10*time.Second) }
