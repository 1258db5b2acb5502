package etcdclient_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/sidecar-dev/sidecar/internal/etcdclient"
)

// Reasons words each endpoint and field at fault for people, without the
// package's prefixes, however deep they are wrapped and joined.
func TestReasons(t *testing.T) {
	refused := func(ep string) error { return &etcdclient.ConnError{Endpoint: ep, Kind: etcdclient.KindRefused} }
	ca := filepath.Join(t.TempDir(), "ca.pem")
	tests := []struct {
		name string
		err  error
		want []string
	}{
		{"check", fmt.Errorf("etcdclient: check: %w", errors.Join(refused("http://a:2379"), refused("http://b:2379"))),
			[]string{"etcd endpoint http://a:2379: connection refused", "etcd endpoint http://b:2379: connection refused"}},
		{"validate", etcdclient.Config{Endpoints: []string{"https://127.0.0.1:2379"}, TLS: etcdclient.TLSConfig{CAFile: ca}}.Validate(),
			[]string{`etcd.tls.ca_file: "` + ca + `": open ` + ca + `: no such file or directory`}},
		{"other", errors.New("etcdclient: something else"), nil},
		{"nil", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := etcdclient.Reasons(tc.err); !slices.Equal(got, tc.want) {
				t.Fatalf("Reasons = %q, want %q", got, tc.want)
			}
		})
	}
}
