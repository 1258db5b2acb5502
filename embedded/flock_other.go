//go:build !unix

package embedded

// flockFree reports every file free where flock does not exist; the WAL lock
// check still applies there.
func flockFree(string) (bool, error) { return true, nil }
