package chaos

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// sample collects the durations a scenario measures, for one FIGURE line.
type sample struct {
	name string
	ds   []time.Duration
}

func (s *sample) add(d time.Duration) { s.ds = append(s.ds, d) }

// quantile returns the q-quantile (0..1) of the sample by the nearest-rank
// method, or 0 for an empty sample.
func (s *sample) quantile(q float64) time.Duration {
	if len(s.ds) == 0 {
		return 0
	}
	sorted := slices.Clone(s.ds)
	slices.Sort(sorted)
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

// figure logs the sample as one stable, grep-able line:
//
//	FIGURE scenario=NAME n=N p50_ms=.. p99_ms=.. max_ms=.. [extra k=v ...]
func (s *sample) figure(t *testing.T, extra ...string) {
	t.Helper()
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }
	parts := []string{
		"FIGURE scenario=" + s.name,
		fmt.Sprintf("form=%s", form()),
		fmt.Sprintf("n=%d", len(s.ds)),
		"p50_ms=" + ms(s.quantile(0.5)),
		"p99_ms=" + ms(s.quantile(0.99)),
		"max_ms=" + ms(s.quantile(1)),
	}
	t.Log(strings.Join(append(parts, extra...), " "))
}

// form names the form of the suite that runs: short or full.
func form() string {
	if full() {
		return "full"
	}
	return "short"
}
