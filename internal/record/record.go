// Package record is the value of a registered instance's key in etcd: the
// JSON that etcd's client/v3/naming/endpoints writes, so that gRPC clients
// using etcd's naming resolver read it, with sidecar's metadata in it:
//
//	{"Op":0,"Addr":"10.0.0.5:8080","Metadata":{"id":"orders-web-1-8080","weight":100,"node":"web-1","metadata":{"zone":"a"}}}
//
// The registry encodes it and discovery decodes it; neither knows the
// format otherwise. A record written by another tool may lack the
// metadata, or carry metadata of another shape: it decodes with the
// default weight and the id taken from its key.
package record

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
)

// DefaultWeight is the weight of an instance whose record has none.
const DefaultWeight = 100

// MaxDecodedWeight bounds the weights accepted from etcd, so that sums of
// many weights cannot overflow. Writers have their own, lower, limit.
const MaxDecodedWeight = math.MaxInt32

// Instance is one instance's record, decoded.
type Instance struct {
	ID       string
	Addr     string // host:port callers dial
	Weight   int    // 0: listed, never picked
	Node     string // the node name of the sidecar that wrote it; "" when unknown
	Metadata map[string]string
}

// meta is the Metadata object of a record; its field order is the order
// on the wire.
type meta struct {
	ID       string            `json:"id"`
	Weight   int               `json:"weight"`
	Node     string            `json:"node"`
	Metadata map[string]string `json:"metadata"`
}

// wire has the fields, in order, of the value that
// endpoints.Manager.AddEndpoint writes (naming/endpoints/internal.Update);
// its JSON is byte for byte the same.
type wire struct {
	Op       uint8 // endpoints.Add
	Addr     string
	Metadata any
}

// ServicesPrefix is where the instances of every service live under an
// etcd namespace such as "/sidecar" (SPEC §4): namespace + "/services".
func ServicesPrefix(namespace string) string { return namespace + "/services" }

// Encode returns the value to store for in. A nil Metadata is written as
// null, an empty one as {}.
func Encode(in Instance) []byte {
	md := meta{ID: in.ID, Weight: in.Weight, Node: in.Node, Metadata: in.Metadata}
	b, _ := json.Marshal(wire{Addr: in.Addr, Metadata: md}) // cannot fail: strings, ints and a map of strings
	return b
}

// decodedMeta is meta as read: the weight may be missing and metadata
// values may be other JSON than strings.
type decodedMeta struct {
	Weight   *int64                     `json:"weight"`
	Node     string                     `json:"node"`
	Metadata map[string]json.RawMessage `json:"metadata"`
}

// Decode parses the value stored at key. The instance's ID is the last
// element of key (the "id" in the metadata is informational: the key
// decides); a record without "weight" has DefaultWeight; metadata values
// that are not strings keep their JSON text.
func Decode(key string, value []byte) (Instance, error) {
	var up struct {
		Addr     string
		Metadata json.RawMessage
	}
	if err := json.Unmarshal(value, &up); err != nil {
		return Instance{}, fmt.Errorf("record: %w", err)
	}
	if up.Addr == "" {
		return Instance{}, errors.New("record: no Addr")
	}
	in := Instance{ID: key[strings.LastIndexByte(key, '/')+1:], Addr: up.Addr, Weight: DefaultWeight}
	if len(up.Metadata) == 0 || up.Metadata[0] != '{' {
		return in, nil // no metadata, or another tool's kind of metadata
	}
	var md decodedMeta
	if err := json.Unmarshal(up.Metadata, &md); err != nil {
		return Instance{}, fmt.Errorf("record: metadata: %w", err)
	}
	if md.Weight != nil {
		if *md.Weight < 0 || *md.Weight > MaxDecodedWeight {
			return Instance{}, fmt.Errorf("record: weight %d out of range 0..%d", *md.Weight, MaxDecodedWeight)
		}
		in.Weight = int(*md.Weight)
	}
	in.Node = md.Node
	if len(md.Metadata) > 0 {
		in.Metadata = make(map[string]string, len(md.Metadata))
		for k, v := range md.Metadata {
			var s string
			if json.Unmarshal(v, &s) != nil {
				s = string(v) // not a string: keep its JSON text
			}
			in.Metadata[k] = s
		}
	}
	return in, nil
}
