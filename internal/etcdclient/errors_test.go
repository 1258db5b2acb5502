package etcdclient_test

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/sidecar-dev/sidecar/internal/etcdclient"
)

func TestConnErrorMessages(t *testing.T) {
	ep := "127.0.0.1:2379"
	cases := []struct {
		name string
		err  *etcdclient.ConnError
		want string
	}{
		{"refused", &etcdclient.ConnError{Endpoint: ep, Kind: etcdclient.KindRefused, Err: syscall.ECONNREFUSED},
			"etcd endpoint 127.0.0.1:2379: connection refused"},
		{"timeout", &etcdclient.ConnError{Endpoint: ep, Kind: etcdclient.KindTimeout, Timeout: 5 * time.Second, Err: context.DeadlineExceeded},
			"etcd endpoint 127.0.0.1:2379: no response within 5s"},
		{"auth", &etcdclient.ConnError{Endpoint: ep, Kind: etcdclient.KindAuth, User: "root", Err: rpctypes.ErrAuthFailed},
			`etcd endpoint 127.0.0.1:2379: authentication failed for user "root": invalid user ID or password`},
		{"auth without user", &etcdclient.ConnError{Endpoint: ep, Kind: etcdclient.KindAuth, Err: rpctypes.ErrUserEmpty},
			`etcd endpoint 127.0.0.1:2379: authentication failed (no user name configured): user name is empty`},
		{"tls", &etcdclient.ConnError{Endpoint: ep, Kind: etcdclient.KindTLS, Err: errors.New("remote error: tls: certificate required")},
			"etcd endpoint 127.0.0.1:2379: TLS handshake failed: remote error: tls: certificate required"},
		{"dns", &etcdclient.ConnError{Endpoint: ep, Kind: etcdclient.KindDNS, Err: errors.New("lookup etcd: no such host")},
			"etcd endpoint 127.0.0.1:2379: DNS lookup failed: lookup etcd: no such host"},
		{"unavailable", &etcdclient.ConnError{Endpoint: ep, Kind: etcdclient.KindUnavailable, Err: rpctypes.ErrNoLeader},
			"etcd endpoint 127.0.0.1:2379: unavailable: etcdserver: no leader"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("Error() = %q, want %q", got, tc.want)
			}
			if !errors.Is(tc.err, tc.err.Err) {
				t.Errorf("does not unwrap to %v", tc.err.Err)
			}
		})
	}
}

func TestKindString(t *testing.T) {
	want := map[etcdclient.Kind]string{
		etcdclient.KindRefused: "refused", etcdclient.KindTLS: "tls", etcdclient.KindAuth: "auth",
		etcdclient.KindTimeout: "timeout", etcdclient.KindDNS: "dns", etcdclient.KindUnavailable: "unavailable",
		etcdclient.Kind(0): "Kind(0)",
	}
	for k, s := range want {
		if k.String() != s {
			t.Errorf("Kind(%d).String() = %q, want %q", int(k), k.String(), s)
		}
	}
}

func TestPermanent(t *testing.T) {
	conn := func(k etcdclient.Kind) error {
		return &etcdclient.ConnError{Endpoint: "e", Kind: k, Err: errors.New("x")}
	}
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"plain", errors.New("boom"), false},
		{"cancelled", fmt.Errorf("etcdclient: check: %w", context.Canceled), false},
		{"refused", conn(etcdclient.KindRefused), false},
		{"timeout", conn(etcdclient.KindTimeout), false},
		{"dns", conn(etcdclient.KindDNS), false},
		{"unavailable", conn(etcdclient.KindUnavailable), false},
		{"tls", conn(etcdclient.KindTLS), true},
		{"auth wrapped", fmt.Errorf("etcdclient: authenticate: %w", conn(etcdclient.KindAuth)), true},
		{"joined, one tls", errors.Join(conn(etcdclient.KindRefused), conn(etcdclient.KindTLS)), true},
		{"joined, all transient", errors.Join(conn(etcdclient.KindRefused), conn(etcdclient.KindTimeout)), false},
		{"invalid config", errors.Join(&etcdclient.FieldError{Field: "etcd.endpoints", Reason: "empty"}), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := etcdclient.Permanent(tc.err); got != tc.want {
				t.Errorf("Permanent(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

// TestRequestReason: a request's failure in the user's words, whatever
// wrapped it on the way: NOSPACE with what to do, etcd's own message for
// other etcd errors, the error as is otherwise.
func TestRequestReason(t *testing.T) {
	other := errors.New("something else")
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"nospace", fmt.Errorf("lock: acquire /sidecar/locks/x: lease: grant: %w", rpctypes.ErrNoSpace),
			"etcd is out of space (NOSPACE alarm): " + etcdclient.NoSpaceAdvice},
		{"etcd error", fmt.Errorf("lock: acquire: %w", rpctypes.ErrLeaseNotFound), "etcdserver: requested lease not found"},
		{"other", other, "something else"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := etcdclient.RequestReason(tc.err); got != tc.want {
				t.Errorf("RequestReason = %q, want %q", got, tc.want)
			}
		})
	}
}
