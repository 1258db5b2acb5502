package sidecar

import (
	"fmt"
	"math"

	"github.com/dustin/go-humanize"
)

// ByteSize is a size in bytes written as a number or with a unit ("1MiB",
// "2GiB", "512KB").
type ByteSize int64

// ParseByteSize parses a size such as "1MiB", "2GiB", "1500000".
func ParseByteSize(s string) (ByteSize, error) {
	n, err := humanize.ParseBytes(s)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: want bytes or a size with a unit such as 1MiB or 2GiB", s)
	}
	if n > math.MaxInt64 {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return ByteSize(n), nil
}

// String formats the size in IEC units.
func (b ByteSize) String() string { return humanize.IBytes(uint64(b)) }
