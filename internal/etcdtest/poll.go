package etcdtest

import (
	"testing"
	"time"
)

// PollInterval is how often Eventually asks again.
const PollInterval = 10 * time.Millisecond

// Eventually calls f every PollInterval until it returns nil, and returns
// how long that took; after timeout it fails the test with what and f's
// last error. It is the one poll helper of the project's tests: poll until
// a deadline instead of sleeping.
func Eventually(t testing.TB, timeout time.Duration, what string, f func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := f()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(PollInterval)
	}
}
