package grpcsidecar

import (
	"strings"
	"testing"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/resolver"
)

// fakeChild is a pick_first child's picker that names its endpoint in the
// error it returns, so that a test sees which child was picked.
type fakeChild string

func (c fakeChild) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	return balancer.PickResult{}, errPicked(c)
}

type errPicked string

func (e errPicked) Error() string { return string(e) }

func entries(weights map[string]int64) []entry {
	var es []entry
	for id, w := range weights {
		es = append(es, entry{id: id, addr: "10.0.0.1:" + id, weight: w, child: fakeChild(id)})
	}
	return es
}

func sequence(p *picker, n int) string {
	var b strings.Builder
	for range n {
		_, err := p.Pick(balancer.PickInfo{})
		b.WriteString(err.Error())
	}
	return b.String()
}

// nginx's smooth weighted round robin, ties to the first id, and the
// sequence carried over a rebuilt picker.
func TestPickerSequence(t *testing.T) {
	w := map[string]int64{"a": 1, "b": 2, "c": 3}
	p := newPicker(entries(w), nil)
	if got := sequence(p, 12); got != "cbacbccbacbc" {
		t.Fatalf("sequence = %s, want cbacbc twice", got)
	}

	// Rebuilt after 3 picks (a child's state changed): the next 3 picks
	// go on where the old picker stopped.
	p = newPicker(entries(w), nil)
	head := sequence(p, 3)
	p = newPicker(entries(w), p)
	if got := head + sequence(p, 3); got != "cbacbc" {
		t.Fatalf("sequence across a rebuild = %s, want cbacbc", got)
	}
}

func TestEndpoints(t *testing.T) {
	eps := endpoints([]instance{
		{id: "o-2", addr: "10.0.0.2:1", weight: 5},
		{id: "o-1", addr: "10.0.0.1:1", weight: 0},
		{id: "o-3", addr: "10.0.0.2:1", weight: 7}, // same address as o-2
	})
	type got struct {
		id     string
		addr   string
		weight int64
	}
	want := []got{{"o-1", "10.0.0.1:1", 0}, {"o-2", "10.0.0.2:1", 12}}
	if len(eps) != len(want) {
		t.Fatalf("endpoints = %v, want %v", eps, want)
	}
	for i, ep := range eps {
		id, _ := endpointID(ep)
		if g := (got{id, ep.Addresses[0].Addr, endpointWeight(ep)}); g != want[i] {
			t.Errorf("endpoint %d = %+v, want %+v", i, g, want[i])
		}
	}
	// An endpoint of another resolver, without a weight, counts as 1.
	if w := endpointWeight(resolver.Endpoint{Addresses: []resolver.Address{{Addr: "x:1"}}}); w != 1 {
		t.Errorf("weight of a foreign endpoint = %d, want 1", w)
	}
}
