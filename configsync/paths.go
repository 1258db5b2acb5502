package configsync

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// ErrRefused is wrapped by the errors of RelPath, and of Dir methods given
// a path RelPath would not return: the key is never written.
var ErrRefused = errors.New("configsync: key refused")

const (
	// maxNameBytes is the longest path element accepted, in bytes.
	maxNameBytes = 255
	// maxPathBytes is the longest relative path accepted, in bytes.
	maxPathBytes = 4096

	// reserved starts every name no key can produce: temporary files, and
	// the snapshot layout's "..data" and payload directories.
	reserved = ".."
)

// RelPath returns the path, relative to a mapping's directory, of the file
// that mirrors key: the key minus prefix, with '/' separating directories
// and no normalisation. The result always satisfies filepath.IsLocal.
//
// A prefix that does not end with '/' is taken as if it did: keys under
// "/config/app" are those starting with "/config/app/", so "/config/app2/x"
// is not one of them. An empty prefix takes every key as it is (and refuses
// those starting with '/', as absolute).
//
// RelPath refuses, with an error wrapping ErrRefused that says why, a key
// that is not under the prefix, and one whose relative path is empty or
// absolute, is not valid UTF-8, contains a NUL byte or a backslash, is
// longer than 4096 bytes, or has an element that is empty ("a//b", a
// trailing '/'), "." or "..", starts with ".." (reserved for the mirror's
// own files) or is longer than 255 bytes. Invalid UTF-8 is refused so
// that every path can be shown, logged and sent in JSON as it is.
func RelPath(key, prefix string) (string, error) {
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	rel, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return "", refused(key, fmt.Sprintf("not under the prefix %q", prefix))
	}
	if err := checkRel(rel); err != nil {
		return "", refused(key, err.Error())
	}
	return rel, nil
}

// checkRel reports, in words, why rel is not a path RelPath returns.
func checkRel(rel string) error {
	switch {
	case rel == "":
		return errors.New("the path under the prefix is empty")
	case !utf8.ValidString(rel):
		return errors.New("the path is not valid UTF-8")
	case len(rel) > maxPathBytes:
		return fmt.Errorf("the path is %d bytes long, over the limit of %d", len(rel), maxPathBytes)
	case rel[0] == '/':
		return errors.New("the path under the prefix is absolute (starts with '/')")
	case strings.IndexByte(rel, 0) >= 0:
		return errors.New("the path contains a NUL byte")
	case strings.IndexByte(rel, '\\') >= 0:
		return errors.New("the path contains a backslash")
	}
	for elem := range strings.SplitSeq(rel, "/") {
		switch {
		case elem == "":
			return errors.New("the path has an empty element ('//' or a trailing '/')")
		case elem == "." || elem == "..":
			return fmt.Errorf("the path has a %q element", elem)
		case strings.HasPrefix(elem, reserved):
			return fmt.Errorf("the element %q starts with %q, reserved for the mirror's own files", short(elem), reserved)
		case len(elem) > maxNameBytes:
			return fmt.Errorf("the element %q is %d bytes long, over the limit of %d", short(elem), len(elem), maxNameBytes)
		}
	}
	return nil
}

// shortKey is key as a log line shows it: valid UTF-8, cut to 80 bytes.
func shortKey(key string) string { return short(strings.ToValidUTF8(key, "?")) }

func refused(key, why string) error {
	return fmt.Errorf("%w: %q: %s", ErrRefused, short(key), why)
}

// short cuts s for a message, keeping it valid UTF-8 where s was.
func short(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
