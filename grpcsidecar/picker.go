package grpcsidecar

import (
	"cmp"
	"slices"
	"sync"

	"google.golang.org/grpc/balancer"

	"github.com/sidecar-dev/sidecar/internal/swrr"
)

// entry is one READY endpoint of a picker.
type entry struct {
	id     string // instance id; "" for another resolver's endpoint
	addr   string
	weight int64 // > 0
	child  balancer.Picker
}

func (e *entry) key() string { return e.id + "\x00" + e.addr }

// picker picks by internal/swrr's smooth weighted round robin, the
// algorithm of the daemon's own pick (discovery), over gRPC children
// instead of instances. Safe for concurrent use, as gRPC requires.
type picker struct {
	entries []entry // sorted by key

	mu sync.Mutex
	rr swrr.RR // aligned to entries' keys
}

// newPicker returns a picker over ready, taking over the current weights
// of the entries prev also has, so that a new list or a child's state
// change does not restart the sequence.
func newPicker(ready []entry, prev *picker) *picker {
	slices.SortFunc(ready, func(a, b entry) int { return cmp.Compare(a.key(), b.key()) })
	p := &picker{entries: ready}
	if prev != nil {
		prev.mu.Lock()
		p.rr = prev.rr.Clone()
		prev.mu.Unlock()
	}
	keys := make([]string, len(ready))
	for i := range ready {
		keys[i] = ready[i].key()
	}
	p.rr.Align(keys)
	return p
}

// Pick chooses an entry and lets its pick_first child pick its SubConn.
func (p *picker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	p.mu.Lock()
	best := p.rr.Next(func(i int) int64 { return p.entries[i].weight })
	p.mu.Unlock()
	return p.entries[best].child.Pick(info)
}
