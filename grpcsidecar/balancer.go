package grpcsidecar

import (
	"fmt"
	"sync"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/base"
	"google.golang.org/grpc/balancer/endpointsharding"
	"google.golang.org/grpc/balancer/pickfirst"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
)

// Name is the registered name of the weighted balancer.
const Name = "sidecar_weighted"

// ServiceConfig selects the weighted balancer; pass it with
// grpc.WithDefaultServiceConfig.
const ServiceConfig = `{"loadBalancingConfig":[{"` + Name + `":{}}]}`

func init() { balancer.Register(builder{}) }

type builder struct{}

func (builder) Name() string { return Name }

// Build returns the balancer: endpointsharding with a pick_first child per
// endpoint, whose aggregated state the balancer turns into a weighted
// picker.
func (builder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	b := &weighted{ClientConn: cc, service: opts.Target.Endpoint()}
	child := balancer.Get(pickfirst.Name).Build
	b.Balancer = endpointsharding.NewBalancer(b, opts, child, endpointsharding.Options{})
	return b
}

// weighted is the balancer. It is the endpointsharding balancer (embedded
// Balancer) and, towards it, the ClientConn (embedded ClientConn, whose
// UpdateState it intercepts).
type weighted struct {
	balancer.Balancer
	balancer.ClientConn
	service string // for messages

	mu          sync.Mutex // guards the fields below; UpdateState may come from several goroutines
	last        *picker    // the last weighted picker, whose round-robin state the next one takes over
	resolverErr error      // the resolver's error since its last list, for calls when there is no endpoint
}

// UpdateClientConnState passes the endpoints on, with pick_first's health
// listener enabled as round_robin does (for outlier detection and
// client-side health checks).
func (b *weighted) UpdateClientConnState(ccs balancer.ClientConnState) error {
	b.mu.Lock()
	b.resolverErr = nil
	b.mu.Unlock()
	return b.Balancer.UpdateClientConnState(balancer.ClientConnState{
		ResolverState: pickfirst.EnableHealthListener(ccs.ResolverState),
	})
}

// ResolverError keeps err for the calls made while there is no endpoint,
// and passes it on.
func (b *weighted) ResolverError(err error) {
	b.mu.Lock()
	b.resolverErr = err
	b.mu.Unlock()
	b.Balancer.ResolverError(err)
}

// UpdateState receives endpointsharding's aggregated state, which comes
// after every endpoint list and every child's state change, and hands gRPC
// a picker over the READY children with a weight above 0.
func (b *weighted) UpdateState(state balancer.State) {
	children := endpointsharding.ChildStatesFromPicker(state.Picker)
	var ready []entry
	var waiting bool                // a child with weight > 0 is connecting
	var failed balancer.Picker      // a failing child with weight > 0, for its error
	var drained = len(children) > 0 // every child has weight 0
	for _, cs := range children {
		w := endpointWeight(cs.Endpoint)
		if w == 0 {
			continue
		}
		drained = false
		switch cs.State.ConnectivityState {
		case connectivity.Ready:
			e := entry{weight: w, child: cs.State.Picker}
			e.id, _ = endpointID(cs.Endpoint)
			if len(cs.Endpoint.Addresses) > 0 {
				e.addr = cs.Endpoint.Addresses[0].Addr
			}
			ready = append(ready, e)
		case connectivity.Connecting, connectivity.Idle:
			waiting = true
		case connectivity.TransientFailure:
			if failed == nil {
				failed = cs.State.Picker
			}
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case len(ready) > 0:
		b.last = newPicker(ready, b.last)
		b.ClientConn.UpdateState(balancer.State{ConnectivityState: connectivity.Ready, Picker: b.last})
	case waiting:
		b.ClientConn.UpdateState(balancer.State{ConnectivityState: connectivity.Connecting, Picker: base.NewErrPicker(balancer.ErrNoSubConnAvailable)})
	case failed != nil:
		b.ClientConn.UpdateState(balancer.State{ConnectivityState: connectivity.TransientFailure, Picker: failed})
	case drained:
		b.fail(fmt.Sprintf("grpcsidecar: every instance of %q has weight 0 (drained)", b.service))
	case b.resolverErr != nil:
		b.fail(b.resolverErr.Error())
	default:
		b.fail(fmt.Sprintf("grpcsidecar: no instance of %q is registered", b.service))
	}
}

// fail makes every call fail with Unavailable and msg (calls with
// WaitForReady wait for the next state instead).
func (b *weighted) fail(msg string) {
	p := base.NewErrPicker(status.Error(codes.Unavailable, msg))
	b.ClientConn.UpdateState(balancer.State{ConnectivityState: connectivity.TransientFailure, Picker: p})
}
