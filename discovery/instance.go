package discovery

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"go.etcd.io/etcd/client/v3/naming/endpoints"

	"github.com/sidecar-dev/sidecar/internal/names"
)

// DefaultWeight is the weight of an instance whose record has none.
const DefaultWeight = 100

// maxWeight bounds the weights accepted from etcd, so that sums of many
// weights cannot overflow.
const maxWeight = math.MaxInt32

// Instance is one registered instance of a service. Metadata is shared with
// the cache: treat it as read-only.
type Instance struct {
	ID       string            `json:"id"`
	Addr     string            `json:"addr"`
	Weight   int               `json:"weight"` // 0: listed, never picked
	Node     string            `json:"node,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

func checkName(name string) error {
	if !names.Valid(name) {
		return fmt.Errorf("%w %q: want %s", ErrBadName, name, names.Pattern)
	}
	return nil
}

// recordMeta is the Metadata object of the records the registry writes.
type recordMeta struct {
	ID       string                     `json:"id"` // informational; the key decides
	Weight   *int64                     `json:"weight"`
	Node     string                     `json:"node"`
	Metadata map[string]json.RawMessage `json:"metadata"`
}

// parseInstance decodes the value of the key of instance id.
func parseInstance(id string, value []byte) (Instance, error) {
	var raw json.RawMessage
	ep := endpoints.Endpoint{Metadata: &raw} // decode Metadata into raw
	if err := json.Unmarshal(value, &ep); err != nil {
		return Instance{}, err
	}
	if ep.Addr == "" {
		return Instance{}, errors.New("no Addr")
	}
	in := Instance{ID: id, Addr: ep.Addr, Weight: DefaultWeight}
	if ep.Metadata == nil || len(raw) == 0 || raw[0] != '{' {
		return in, nil // no metadata, or another tool's kind of metadata
	}
	var md recordMeta
	if err := json.Unmarshal(raw, &md); err != nil {
		return Instance{}, fmt.Errorf("metadata: %w", err)
	}
	if md.Weight != nil {
		if *md.Weight < 0 || *md.Weight > maxWeight {
			return Instance{}, fmt.Errorf("weight %d out of range 0..%d", *md.Weight, maxWeight)
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

func byID(a, b Instance) int { return strings.Compare(a.ID, b.ID) }

// applyChanges returns a new slice sorted by ID: old (sorted by ID) with
// upd applied, where a nil value deletes the instance of that id.
func applyChanges(old []Instance, upd map[string]*Instance) []Instance {
	ids := slices.Sorted(maps.Keys(upd))
	out := make([]Instance, 0, len(old)+len(ids))
	i := 0
	for _, id := range ids {
		for i < len(old) && old[i].ID < id {
			out = append(out, old[i])
			i++
		}
		if i < len(old) && old[i].ID == id {
			i++
		}
		if in := upd[id]; in != nil {
			out = append(out, *in)
		}
	}
	return append(out, old[i:]...)
}

// diff counts the instances added, removed and changed from old to cur,
// both sorted by ID.
func diff(old, cur []Instance) (added, removed, changed int) {
	i, j := 0, 0
	for i < len(old) || j < len(cur) {
		switch {
		case j == len(cur) || (i < len(old) && old[i].ID < cur[j].ID):
			removed++
			i++
		case i == len(old) || cur[j].ID < old[i].ID:
			added++
			j++
		default:
			if !sameInstance(old[i], cur[j]) {
				changed++
			}
			i++
			j++
		}
	}
	return added, removed, changed
}

func sameInstance(a, b Instance) bool {
	return a.ID == b.ID && a.Addr == b.Addr && a.Weight == b.Weight && a.Node == b.Node &&
		maps.Equal(a.Metadata, b.Metadata)
}
