package etcdtest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/sidecar-dev/sidecar/api"
)

// CheckLeaderSequence checks that the NDJSON of `sidecar leader --watch
// --json` named the leaders want, each change once and "none" for no
// leader, e.g. "none → A → none → B", and returns what it named.
func CheckLeaderSequence(t testing.TB, out, want string) string {
	t.Helper()
	got, err := leaderSequence(out)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("leader changes %s, want %s", got, want)
	}
	return got
}

func leaderSequence(out string) (string, error) {
	var seq []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var l api.Leader
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return "", fmt.Errorf("leader stream: bad line %q: %w", sc.Text(), err)
		}
		v := "none"
		if l.Leader != nil {
			v = *l.Leader
		}
		if len(seq) == 0 || seq[len(seq)-1] != v {
			seq = append(seq, v)
		}
	}
	return strings.Join(seq, " → "), sc.Err()
}
