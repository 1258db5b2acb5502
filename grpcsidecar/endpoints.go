package grpcsidecar

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"

	"google.golang.org/grpc/experimental/balancer/weight"
	"google.golang.org/grpc/resolver"

	"github.com/sidecar-dev/sidecar/internal/names"
)

// instance is what the resolvers take from a service's instance list.
type instance struct {
	id     string
	addr   string
	weight int64
}

// idKey is the key of the endpoint attribute that holds the instance id;
// its presence says the endpoint comes from grpcsidecar's resolvers.
type idKey struct{}

// endpoints turns instances into resolver endpoints, sorted by instance
// id, each with its weight and id as attributes. Instances that share an
// address become one endpoint, with the first id and the sum of the
// weights (capped at math.MaxUint32).
func endpoints(insts []instance) []resolver.Endpoint {
	insts = slices.SortedFunc(slices.Values(insts), func(a, b instance) int { return strings.Compare(a.id, b.id) })
	byAddr := make(map[string]int, len(insts)) // addr -> index in out
	var out []instance
	for _, in := range insts {
		if i, ok := byAddr[in.addr]; ok {
			out[i].weight += in.weight
			continue
		}
		byAddr[in.addr] = len(out)
		out = append(out, in)
	}
	eps := make([]resolver.Endpoint, len(out))
	for i, in := range out {
		ep := resolver.Endpoint{Addresses: []resolver.Address{{Addr: in.addr}}}
		ep.Attributes = ep.Attributes.WithValue(idKey{}, in.id)
		eps[i] = weight.Set(ep, weight.EndpointInfo{Weight: uint32(min(max(in.weight, 0), math.MaxUint32))})
	}
	return eps
}

// endpointID returns the instance id of ep, and whether ep has one.
func endpointID(ep resolver.Endpoint) (string, bool) {
	id, ok := ep.Attributes.Value(idKey{}).(string)
	return id, ok
}

// endpointWeight is the one rule for an endpoint's weight: the weight
// attribute; for an endpoint of another resolver that sets none, 1.
func endpointWeight(ep resolver.Endpoint) int64 {
	w := int64(weight.FromEndpoint(ep).Weight)
	if _, ours := endpointID(ep); !ours && w == 0 {
		return 1
	}
	return w
}

// serviceName returns the service a target names: its path without the
// leading slash (sidecar:///orders names orders).
func serviceName(target resolver.Target) (string, error) {
	name := target.Endpoint()
	if !names.Valid(name) {
		return "", fmt.Errorf("grpcsidecar: target %q: service %q: want a name of %s, as in %s:///orders",
			target.String(), name, names.Pattern, target.URL.Scheme)
	}
	return name, nil
}

// errNoList: the resolver has never had an instance list and the answer it
// got comes from a cache that cannot reach etcd and knows no instance.
var errNoList = errors.New("etcd unreachable and no instance known yet")

// sink hands instance lists to gRPC by the resolvers' common rules: a
// stale answer never replaces a list, and errors reach gRPC only while
// there has never been a list. Its methods are called from one goroutine.
type sink struct {
	cc      resolver.ClientConn
	service string
	log     *slog.Logger
	have    bool // a list was handed to gRPC
	failing bool // fail was called after the last update: logged once
}

// update hands a new instance list to gRPC, unless it is stale and a list
// was handed over before.
func (s *sink) update(insts []instance, stale bool) {
	if stale && s.have {
		s.log.Debug("stale answer, keeping the list", "instances", len(insts))
		return
	}
	if stale && len(insts) == 0 {
		s.fail(errNoList)
		return
	}
	s.have, s.failing = true, false
	// The error says whether the balancer accepted the list (an empty one
	// it does not); the resolver has nothing better to offer either way.
	_ = s.cc.UpdateState(resolver.State{Endpoints: endpoints(insts)})
	s.log.Debug("instance list", "instances", len(insts), "stale", stale)
}

// fail reports err to gRPC while there has never been a list; afterwards
// the list stays and err is only logged.
func (s *sink) fail(err error) {
	if s.have {
		if !s.failing {
			s.log.Info("instance list not updated, keeping the last one", "err", err)
		}
		s.failing = true
		return
	}
	s.cc.ReportError(fmt.Errorf("grpcsidecar: service %q: %w", s.service, err))
}
