package registry

import (
	"fmt"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// TestInWords: what a registration's last error says has no package
// prefix, and NOSPACE says what it means and what to do.
func TestInWords(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("registry: grant lease: %w", rpctypes.ErrNoLeader), "grant lease: etcdserver: no leader"},
		{fmt.Errorf("registry: deregister: %w", fmt.Errorf("registry: revoke lease 1: %w", rpctypes.ErrLeaseNotFound)),
			"deregister: revoke lease 1: etcdserver: requested lease not found"},
		{fmt.Errorf("registry: grant lease: %w", rpctypes.ErrNoSpace), "etcd is out of space (NOSPACE alarm): "},
	}
	for _, tc := range tests {
		if got := inWords(tc.err); !strings.HasPrefix(got, tc.want) || strings.Contains(got, "registry:") {
			t.Errorf("inWords(%q) = %q, want it to start with %q", tc.err, got, tc.want)
		}
	}
}
