package discovery

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/sidecar-dev/sidecar/internal/names"
	"github.com/sidecar-dev/sidecar/internal/record"
)

// DefaultWeight is the weight of an instance whose record has none.
const DefaultWeight = record.DefaultWeight

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

// parseInstance decodes the value of the key of instance id (the key's
// last element); the record format is internal/record's.
func parseInstance(id string, value []byte) (Instance, error) {
	rec, err := record.Decode(id, value)
	if err != nil {
		return Instance{}, err
	}
	return Instance{ID: rec.ID, Addr: rec.Addr, Weight: rec.Weight, Node: rec.Node, Metadata: rec.Metadata}, nil
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
