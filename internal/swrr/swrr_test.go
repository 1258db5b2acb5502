package swrr_test

import (
	"strings"
	"testing"

	"github.com/sidecar-dev/sidecar/internal/swrr"
)

// TestSequence: weights 5/1/1 give nginx's documented sequence a a b a c a a,
// each item exactly its weight per cycle; weight 0 is never picked.
func TestSequence(t *testing.T) {
	var r swrr.RR
	r.Align([]string{"a", "b", "c", "d"})
	w := []int64{5, 1, 1, 0}
	var got strings.Builder
	for range 14 {
		got.WriteString([]string{"a", "b", "c", "d"}[r.Next(func(i int) int64 { return w[i] })])
	}
	if got.String() != "aabacaaaabacaa" {
		t.Fatalf("sequence %s, want aabacaa twice", got.String())
	}
}

// TestAlignCarriesOver: a key that stays keeps its current weight, so a new
// list does not restart the sequence; a new key starts at 0; none picked
// when every weight is 0.
func TestAlignCarriesOver(t *testing.T) {
	var r swrr.RR
	r.Align([]string{"a", "b"})
	w := map[string]int64{"a": 1, "b": 1, "c": 1}
	keys := []string{"a", "b"}
	next := func() string {
		return keys[r.Next(func(i int) int64 { return w[keys[i]] })]
	}
	if got := next(); got != "a" {
		t.Fatalf("first pick %s, want a", got)
	}
	keys = []string{"a", "b", "c"}
	r.Align(keys)
	if got := next(); got != "b" { // a's deficit carried over; without it a would come again
		t.Fatalf("pick after the list grew: %s, want b", got)
	}
	c := r.Clone()
	r.Next(func(int) int64 { return 1 })
	if c.Next(func(int) int64 { return 0 }) != -1 {
		t.Fatal("a pick with every weight 0")
	}
}
