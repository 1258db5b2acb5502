// Package etcdtest starts real etcd servers for tests: an in-process member
// built on etcd's embed package, and etcd server processes run as the
// module's Go tool (go tool server). It is imported only by tests.
//
// Nothing here mocks etcd: every helper starts a real server on free
// loopback ports and stops it, and removes its data, when the test ends.
package etcdtest
