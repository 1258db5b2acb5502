package etcdtest

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// RootPassword is the password of user root made by EnableAuth.
const RootPassword = "rootpw"

// Grant is a permission of EnableAuth's user on a prefix and its keys.
type Grant struct {
	Prefix string
	Perm   clientv3.PermissionType
}

// EnableAuth makes user root (password RootPassword, role root) and user
// (password pass, with a role of its name that has grants) on the cluster
// cli talks to, enables auth, and returns a client of cli's endpoints as
// root, closed at test cleanup. cli is unauthenticated (it may not be
// used for requests after).
func EnableAuth(t testing.TB, cli *clientv3.Client, user, pass string, grants ...Grant) *clientv3.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	type step struct {
		what string
		do   func() error
	}
	steps := []step{
		{"add user root", func() error { _, err := cli.UserAdd(ctx, "root", RootPassword); return err }},
		{"add role root", func() error { _, err := cli.RoleAdd(ctx, "root"); return err }},
		{"grant root", func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err }},
		{"add role " + user, func() error { _, err := cli.RoleAdd(ctx, user); return err }},
	}
	for _, g := range grants {
		steps = append(steps, step{"grant " + g.Prefix, func() error {
			_, err := cli.RoleGrantPermission(ctx, user, g.Prefix, clientv3.GetPrefixRangeEnd(g.Prefix), g.Perm)
			return err
		}})
	}
	steps = append(steps,
		step{"add user " + user, func() error { _, err := cli.UserAdd(ctx, user, pass); return err }},
		step{"grant role " + user, func() error { _, err := cli.UserGrantRole(ctx, user, user); return err }},
		step{"enable auth", func() error { _, err := cli.AuthEnable(ctx); return err }},
	)
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("etcdtest: auth setup: %s: %v", s.what, err)
		}
	}
	root, err := clientv3.New(clientv3.Config{
		Endpoints: cli.Endpoints(), DialTimeout: 5 * time.Second,
		Username: "root", Password: RootPassword, Logger: zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("etcdtest: root client: %v", err)
	}
	t.Cleanup(func() { root.Close() })
	return root
}
