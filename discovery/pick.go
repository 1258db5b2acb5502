package discovery

// swrr is the state of nginx's smooth weighted round robin over a service's
// instances: each instance's current weight, kept by instance id so that it
// carries over updates of the instance list.
//
// Each pick adds every instance's weight to its current weight, picks the
// instance with the highest current weight (the first by ID on ties) and
// subtracts the total weight from the picked one. Over any run of
// sum-of-weights picks, each instance is picked exactly weight times,
// interleaved as evenly as possible. Instances of weight 0 are skipped.
type swrr struct {
	gen uint64   // generation of the instance list ids and cur are aligned to
	ids []string // instance ids, sorted
	cur []int64  // current weight of ids[i]
}

// align makes r follow insts (sorted by ID, generation gen), keeping the
// current weight of every id still present; new ids start at 0.
func (r *swrr) align(insts []Instance, gen uint64) {
	if r.gen == gen && len(r.ids) == len(insts) {
		return
	}
	ids := make([]string, len(insts))
	cur := make([]int64, len(insts))
	j := 0
	for i, in := range insts {
		ids[i] = in.ID
		for j < len(r.ids) && r.ids[j] < in.ID {
			j++
		}
		if j < len(r.ids) && r.ids[j] == in.ID {
			cur[i] = r.cur[j]
		}
	}
	r.gen, r.ids, r.cur = gen, ids, cur
}

// next picks from insts, to which r is aligned; false when no instance has
// a weight above 0.
func (r *swrr) next(insts []Instance) (Instance, bool) {
	best := -1
	var total int64
	for i, in := range insts {
		if in.Weight <= 0 {
			continue
		}
		w := int64(in.Weight)
		r.cur[i] += w
		total += w
		if best < 0 || r.cur[i] > r.cur[best] {
			best = i
		}
	}
	if best < 0 {
		return Instance{}, false
	}
	r.cur[best] -= total
	return insts[best], true
}

// pick chooses an instance by smooth weighted round robin.
func (s *service) pick() (Instance, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rr.align(s.insts, s.gen)
	return s.rr.next(s.insts)
}
