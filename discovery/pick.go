package discovery

import rrstate "github.com/sidecar-dev/sidecar/internal/swrr"

// swrr follows a service's instances with internal/swrr's smooth
// weighted round robin, keyed by instance id so that the sequence carries
// over updates of the list.
type swrr struct {
	gen uint64 // generation of the instance list rr is aligned to
	n   int    // its length
	rr  rrstate.RR
}

// next picks from insts (sorted by ID, generation gen); false when no
// instance has a weight above 0.
func (r *swrr) next(insts []Instance, gen uint64) (Instance, bool) {
	if r.gen != gen || r.n != len(insts) {
		ids := make([]string, len(insts))
		for i, in := range insts {
			ids[i] = in.ID
		}
		r.rr.Align(ids)
		r.gen, r.n = gen, len(insts)
	}
	i := r.rr.Next(func(i int) int64 { return int64(insts[i].Weight) })
	if i < 0 {
		return Instance{}, false
	}
	return insts[i], true
}

// pick chooses an instance by smooth weighted round robin.
func (s *service) pick() (Instance, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rr.next(s.insts, s.gen)
}
