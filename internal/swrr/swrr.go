// Package swrr is nginx's smooth weighted round robin, the one picking
// rule of the sidecar: the daemon's own pick (discovery) and the gRPC
// balancer (grpcsidecar) both use it.
//
// Each pick adds every item's weight to its current weight, takes the item
// with the highest current weight (the first on ties) and subtracts the
// total weight from it. Over any run of sum-of-weights picks, each item is
// taken exactly weight times, interleaved as evenly as possible. Items of
// weight 0 or less are skipped.
package swrr

import "slices"

// RR is the state of a smooth weighted round robin over items named by
// sorted, distinct keys: each item's current weight, kept by key so that
// it carries over changes of the list. The zero value is ready. It is not
// safe for concurrent use.
type RR struct {
	keys []string
	cur  []int64
}

// Align makes r follow keys (sorted, distinct), keeping the current weight
// of every key still present; new keys start at 0.
func (r *RR) Align(keys []string) {
	if slices.Equal(keys, r.keys) {
		return
	}
	cur := make([]int64, len(keys))
	j := 0
	for i, k := range keys {
		for j < len(r.keys) && r.keys[j] < k {
			j++
		}
		if j < len(r.keys) && r.keys[j] == k {
			cur[i] = r.cur[j]
		}
	}
	r.keys, r.cur = slices.Clone(keys), cur
}

// Clone returns a copy of r that changes independently of it.
func (r *RR) Clone() RR {
	return RR{keys: slices.Clone(r.keys), cur: slices.Clone(r.cur)}
}

// Next picks the index of an item among those r is aligned to, whose
// weights weight(i) gives; -1 when none has a weight above 0.
func (r *RR) Next(weight func(i int) int64) int {
	best := -1
	var total int64
	for i := range r.cur {
		w := weight(i)
		if w <= 0 {
			continue
		}
		r.cur[i] += w
		total += w
		if best < 0 || r.cur[i] > r.cur[best] {
			best = i
		}
	}
	if best >= 0 {
		r.cur[best] -= total
	}
	return best
}
