package embedded

import (
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// TestMain fails the package when goroutines outlive its tests.
func TestMain(m *testing.M) { etcdtest.RunWithLeakCheck(m, 10*time.Second) }
