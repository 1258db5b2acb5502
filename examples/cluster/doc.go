// Package cluster is an example, not a library: a three-node cluster of
// sidecars on loopback, each embedding one etcd member (etcd01.yaml ..
// etcd03.yaml, or the same nodes as etcd.conf environment files,
// etcd01.env .. etcd03.env), and a fourth node that joins it (etcd04.yaml).
// README.md walks through it; cluster_test.go runs it with the built binary.
package cluster
