package configsync_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/configsync"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// How many times the test replaces the file (the issue asks for 2,000),
// and the largest value: 16 KiB spans four pages, so that a write seen
// half done would show, and keeps the test within ~20 s under -race on
// two cores.
const (
	tornUpdates = 2000
	tornMaxBody = 16 << 10
)

// sealedValue is "seq <n>\n" padded with noise to size bytes, then the
// SHA-256 of all that: a reader can tell a whole value from a torn, empty
// or mixed one.
func sealedValue(noise *rand.ChaCha8, seq, size int) []byte {
	v := fmt.Appendf(nil, "seq %d\n", seq)
	if n := size - len(v); n > 0 {
		v = append(v, make([]byte, n)...)
		noise.Read(v[len(v)-n:])
	}
	sum := sha256.Sum256(v)
	return append(v, sum[:]...)
}

// openSealed checks that v is a whole sealedValue and returns its sequence
// number.
func openSealed(v []byte) (int, error) {
	if len(v) <= sha256.Size {
		return 0, fmt.Errorf("%d bytes: too short to be a value", len(v))
	}
	body, sum := v[:len(v)-sha256.Size], v[len(v)-sha256.Size:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], sum) {
		return 0, fmt.Errorf("%d bytes: checksum mismatch (a torn or mixed value)", len(v))
	}
	line, _, ok := bytes.Cut(body, []byte("\n"))
	seq, err := strconv.Atoi(string(bytes.TrimPrefix(line, []byte("seq "))))
	if !ok || err != nil {
		return 0, fmt.Errorf("%d bytes: checksum fine but no sequence line %q", len(v), line)
	}
	return seq, nil
}

// readerStats is what the hammering reader saw.
type readerStats struct {
	reads int
	seen  []int // sequence numbers of the values read, each once, in the order seen
	err   error // the first bad read, if any
}

// hammer opens and reads path in a tight loop until stop is closed; its
// last read begins after that. Every read must be a whole value: never
// missing, empty, torn or mixed.
func hammer(path string, stop <-chan struct{}) readerStats {
	var st readerStats
	for {
		var stopped bool // then this read is the last, and began after stop
		select {
		case <-stop:
			stopped = true
		default:
		}
		v, err := os.ReadFile(path)
		st.reads++
		if err == nil {
			var seq int
			seq, err = openSealed(v)
			if err == nil && (len(st.seen) == 0 || st.seen[len(st.seen)-1] != seq) {
				st.seen = append(st.seen, seq)
			}
		}
		if err != nil {
			st.err = fmt.Errorf("read %d (after %d values): %w", st.reads, len(st.seen), err)
			return st
		}
		if stopped {
			return st
		}
	}
}

// TestTornReads: a reader opening and reading a mirrored file in a tight
// loop while its key is updated 2,000 times with values of 1 B to 16 KiB
// only ever sees whole values, never an older one after a newer one, and
// ends with the last one.
func TestTornReads(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	dir := filepath.Join(t.TempDir(), "app")
	file := filepath.Join(dir, "sub", "value.bin")
	key := prefix + "sub/value.bin"

	first := sealedValue(rand.NewChaCha8([32]byte{}), 0, 1)
	put(t, cli, key, string(first))
	m, _ := run(t, cli, configsync.Config{Prefix: prefix, Dir: dir})
	treeIs(t, dir, map[string]string{"sub/value.bin": string(first)}, "initial sync")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var stats readerStats
	wg.Add(1)
	go func() {
		defer wg.Done()
		stats = hammer(file, stop)
	}()
	stopReader := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopReader)

	start := time.Now()
	revs, last, lastRev := tornWrites(t, cli, key)
	etcdtest.Eventually(t, 30*time.Second, "the mapping at the last revision", atRevision(m, lastRev))
	treeIs(t, dir, map[string]string{"sub/value.bin": string(last)}, "the last value on disk")
	stopReader()
	t.Logf("%d updates in %s; reader: %d reads, %d distinct values; mapping wrote %d files",
		tornUpdates, time.Since(start).Round(time.Millisecond), stats.reads, len(stats.seen), m.Status().Writes)

	if stats.err != nil {
		t.Fatalf("the reader saw a value that is not whole: %v", stats.err)
	}
	// The reader raced the writer: it read through the updates, not only
	// before or after them.
	if stats.reads < tornUpdates || len(stats.seen) < 50 {
		t.Errorf("reader did %d reads and saw %d distinct values: it did not race the %d updates", stats.reads, len(stats.seen), tornUpdates)
	}
	for i := 1; i < len(stats.seen); i++ {
		if a, b := stats.seen[i-1], stats.seen[i]; revs[b] < revs[a] {
			t.Fatalf("the reader saw seq %d (revision %d) after seq %d (revision %d): an older value came back", b, revs[b], a, revs[a])
		}
	}
	if n := len(stats.seen); revs[stats.seen[n-1]] != lastRev {
		t.Errorf("the reader's last value is seq %d (revision %d), want revision %d", stats.seen[n-1], revs[stats.seen[n-1]], lastRev)
	}
	if st := m.Status(); st.LastError != "" || st.Files != 1 || st.Writes < 50 {
		t.Errorf("status %+v", st)
	}
}

// tornWrites puts tornUpdates sealed values of key and returns the
// revision of each sequence number's put, and the value and revision of
// the last one.
func tornWrites(t *testing.T, cli *clientv3.Client, key string) (revs []int64, last []byte, lastRev int64) {
	// Two writers keep a put in flight while the other waits for etcd, so
	// that 2,000 raft round trips fit in the test's time; etcd orders them,
	// and revs says how.
	const writers = 2
	var mu sync.Mutex
	revs = make([]int64, tornUpdates+1) // seq → revision of its put
	seqs := make(chan int, tornUpdates)
	for seq := 1; seq <= tornUpdates; seq++ {
		seqs <- seq
	}
	close(seqs)
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			noise := rand.NewChaCha8([32]byte{byte(w + 1)})
			rng := rand.New(noise)
			for seq := range seqs {
				v := sealedValue(noise, seq, 1+rng.IntN(tornMaxBody)) // plus the sum
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				resp, err := cli.Put(ctx, key, string(v))
				cancel()
				if err != nil {
					errs <- fmt.Errorf("put %d: %w", seq, err)
					return
				}
				mu.Lock()
				revs[seq] = resp.Header.Revision
				if resp.Header.Revision > lastRev {
					last, lastRev = v, resp.Header.Revision
				}
				mu.Unlock()
			}
			errs <- nil
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	return revs, last, lastRev
}
