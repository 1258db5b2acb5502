package registry

import (
	"errors"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/sidecar-dev/sidecar/internal/etcdclient"
)

// inWords is err as Status.LastError shows it to people: without this
// package's prefixes, and etcd's NOSPACE alarm worded as
// etcdclient.RequestReason words it everywhere (what it means, what to do).
func inWords(err error) string {
	if errors.Is(err, rpctypes.ErrNoSpace) {
		return etcdclient.RequestReason(err)
	}
	return strings.ReplaceAll(err.Error(), "registry: ", "")
}
