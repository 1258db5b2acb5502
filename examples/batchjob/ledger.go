package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// timeLayout is RFC 3339 in UTC with milliseconds, the time of an entry.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// Entry is one line of a ledger:
//
//	fence=41 lock=nightly entry=1/3 by=node-a at=2026-11-30T03:45:50.123Z
//
// The kind of hold (lock or election) is the key of the name's field.
type Entry struct {
	Fence   int64
	Kind    string // "lock" or "election"
	Name    string
	Seq, Of int // entry Seq of Of written by this run
	By      string
	At      time.Time
}

// String is the entry's line, without the newline.
func (e Entry) String() string {
	return fmt.Sprintf("fence=%d %s=%s entry=%d/%d by=%s at=%s",
		e.Fence, e.Kind, e.Name, e.Seq, e.Of, e.By, e.At.UTC().Format(timeLayout))
}

// parseEntry reads a line written by Entry.String.
func parseEntry(line string) (Entry, error) {
	var e Entry
	haveFence := false
	for _, f := range strings.Fields(line) {
		k, v, _ := strings.Cut(f, "=")
		var err error
		switch k {
		case "fence":
			e.Fence, err = strconv.ParseInt(v, 10, 64)
			haveFence = err == nil
		case "lock", "election":
			e.Kind, e.Name = k, v
		case "entry":
			_, err = fmt.Sscanf(v, "%d/%d", &e.Seq, &e.Of)
		case "by":
			e.By = v
		case "at":
			e.At, err = time.Parse(time.RFC3339Nano, v)
		}
		if err != nil {
			return Entry{}, fmt.Errorf("field %s: %w", k, err)
		}
	}
	if !haveFence {
		return Entry{}, fmt.Errorf("no fence in %q", line)
	}
	return e, nil
}

// StaleFenceError is the ledger's refusal of a write whose fence is lower
// than the highest it has accepted: the writer's hold is stale.
type StaleFenceError struct {
	Path    string
	Fence   int64 // of the refused write
	Highest int64 // accepted already
}

func (e *StaleFenceError) Error() string {
	return fmt.Sprintf("ledger %s: refused a write with fence %d: fence %d was accepted already (a newer holder has written; this one's hold is stale)",
		e.Path, e.Fence, e.Highest)
}

// Ledger is an append-only file of entries that enforces fencing. Appends
// from any number of processes on one machine are serialized by flock(2);
// a Ledger value is safe for concurrent use.
type Ledger struct {
	Path string
}

// Append adds e to the ledger unless its fence is lower than the highest
// the ledger holds, which is a *StaleFenceError. An equal fence is the
// same holder writing again and is accepted. The entry is on disk
// (fsync) when Append returns nil.
func (l Ledger) Append(e Entry) error {
	f, err := os.OpenFile(l.Path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	defer f.Close() // also releases the flock
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("ledger %s: flock: %w", l.Path, err)
	}
	entries, err := readEntries(l.Path, f)
	if err != nil {
		return err
	}
	if hi := highest(entries); e.Fence < hi {
		return &StaleFenceError{Path: l.Path, Fence: e.Fence, Highest: hi}
	}
	if _, err := io.WriteString(f, e.String()+"\n"); err != nil {
		return fmt.Errorf("ledger %s: append: %w", l.Path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("ledger %s: fsync: %w", l.Path, err)
	}
	return nil
}

// Entries returns the ledger's entries in the order they were accepted; a
// ledger that does not exist yet has none.
func (l Ledger) Entries() ([]Entry, error) {
	f, err := os.Open(l.Path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	defer f.Close()
	return readEntries(l.Path, f)
}

// readEntries parses every line of r, the ledger at path.
func readEntries(path string, r io.Reader) ([]Entry, error) {
	var entries []Entry
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		e, err := parseEntry(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("ledger %s: line %d: %w", path, n, err)
		}
		entries = append(entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("ledger %s: read: %w", path, err)
	}
	return entries, nil
}

// highest is the highest fence of entries, 0 when there are none.
func highest(entries []Entry) int64 {
	var hi int64
	for _, e := range entries {
		hi = max(hi, e.Fence)
	}
	return hi
}
