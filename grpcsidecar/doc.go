// Package grpcsidecar lets a Go gRPC client balance its calls over a
// service's registered instances by their weights: a resolver that turns
// the instance list into gRPC endpoints, each carrying its weight, and a
// balancer that picks among them by smooth weighted round robin.
//
// # Use
//
//	import "github.com/sidecar-dev/sidecar/grpcsidecar"
//
//	conn, err := grpc.NewClient("sidecar:///orders",
//		grpc.WithTransportCredentials(insecure.NewCredentials()),
//		grpc.WithDefaultServiceConfig(grpcsidecar.ServiceConfig))
//
// Importing the package registers the "sidecar" resolver scheme (reading
// the daemon's socket from SIDECAR_SOCKET, else the default socket path)
// and the "sidecar_weighted" balancer. A [Builder] passed with
// grpc.WithResolvers names another socket. Apps without a sidecar use
// [NewEtcdBuilder] (target etcd:///orders), which reads the same records
// straight from etcd with its own watch.
//
// # Resolvers
//
// The sidecar resolver follows GET /v1/services/{name}?watch=true on the
// local daemon's unix socket, so the app needs no etcd credentials. Each
// instance becomes one resolver.Endpoint whose attributes carry its weight
// (grpc-go's experimental/balancer/weight) and its instance id. When the
// daemon goes away (stopped, crashed, restarted) the resolver keeps the
// last list and reconnects with capped, jittered backoff; it reports an
// error to gRPC only while it has never had a list. A stale answer (the
// daemon cannot reach etcd) never replaces a list the resolver has.
// Instances sharing one address become one endpoint with the sum of their
// weights.
//
// The etcd resolver reads <namespace>/services/<name>/ through a
// discovery.Cache of its own (a list, then a watch; compaction and
// outages handled there), with the same rules for stale answers. While
// etcd has never answered it reports nothing: calls wait, bounded by their
// deadline.
//
// # Balancer
//
// "sidecar_weighted" gives each endpoint a pick_first child through
// balancer/endpointsharding and picks among the READY children with a
// weight above 0 by nginx's smooth weighted round robin: over any run of
// sum-of-weights picks each instance gets exactly its weight, evenly
// interleaved; ties go to the first instance id. A weight-0 instance keeps
// its connection (calls in flight finish) but gets no new calls. When no
// instance has a weight above 0, calls fail with Unavailable, as the
// daemon's own pick answers 404: drained means never picked. A new list
// rebuilds the picker at once, so a removed instance gets no call after
// the watch event that removed it, and a weight change keeps every
// connection: endpointsharding keys its children by address, only the
// picker changes. An endpoint without grpcsidecar's attributes (another
// resolver) counts with its weight attribute, or 1 when it has none.
//
// # Experimental grpc-go APIs
//
// The package relies on these grpc-go (v1.83) APIs, which grpc-go marks
// experimental and may change in a later release:
//   - google.golang.org/grpc/balancer and google.golang.org/grpc/resolver
//     ("All APIs in this package are experimental"): the Builder, Balancer,
//     Picker, ClientConn and Resolver interfaces, resolver.Endpoint, and
//     resolver.Address (a type marked EXPERIMENTAL on its own);
//   - google.golang.org/grpc/balancer/base: NewErrPicker;
//   - google.golang.org/grpc/balancer/endpointsharding: NewBalancer,
//     ChildStatesFromPicker (the whole package is EXPERIMENTAL);
//   - google.golang.org/grpc/balancer/pickfirst: EnableHealthListener;
//   - google.golang.org/grpc/experimental/balancer/weight: Set,
//     FromEndpoint, EndpointInfo;
//   - google.golang.org/grpc/attributes: WithValue, Value.
//
// The service config JSON (loadBalancingConfig) and grpc.WithResolvers are
// stable.
package grpcsidecar
