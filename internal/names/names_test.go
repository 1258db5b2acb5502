package names

import (
	"regexp"
	"strings"
	"testing"
)

func TestValid(t *testing.T) {
	re := regexp.MustCompile("^" + Pattern + "$")
	for _, s := range []string{"orders", "a", "A.b_c-9", strings.Repeat("x", 128), strings.Repeat("x", 129), "", "-a", ".a", "_a",
		"a/b", "..", "a b", "ü", "a\x00", "orders-web-1-8080"} {
		if got, want := Valid(s), re.MatchString(s); got != want {
			t.Errorf("Valid(%q) = %v, the pattern says %v", s, got, want)
		}
	}
}
