package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// setting is one value of the service, read from the file of that name in
// the config directory (the key <prefix><name> in etcd).
type setting struct {
	name string
	def  string // the value while the file is missing or blank
}

// known lists the settings the service reads; add a line to read another.
var known = []setting{
	{name: "greeting", def: "hello"},
	{name: "color", def: "blue"},
}

// values maps each known setting's name to its value. A values is never
// changed once built, so it may be shared between goroutines.
type values map[string]string

// defaults returns every known setting at its default.
func defaults() values {
	v := make(values, len(known))
	for _, s := range known {
		v[s.name] = s.def
	}
	return v
}

// load reads every known setting from dir. It reads through the visible
// name, a regular file in the files layout and a symlink through "..data"
// in the snapshot layout; os.ReadFile follows both. A missing or blank
// file gives the default; a file that cannot be read keeps its value in
// prev, and the errors are returned with the values.
func load(dir string, prev values) (values, error) {
	v := make(values, len(known))
	var errs []error
	for _, s := range known {
		b, err := os.ReadFile(filepath.Join(dir, s.name))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			v[s.name] = s.def
		case err != nil:
			v[s.name] = prev[s.name]
			errs = append(errs, fmt.Errorf("read setting %s: %w", s.name, err))
		case strings.TrimSpace(string(b)) == "":
			v[s.name] = s.def
		default:
			v[s.name] = strings.TrimSpace(string(b))
		}
	}
	return v, errors.Join(errs...)
}

// changes returns, for each setting whose value differs between old and
// cur, a log attribute group holding both values, in the order of known.
func changes(old, cur values) []any {
	var attrs []any
	for _, s := range known {
		if old[s.name] != cur[s.name] {
			attrs = append(attrs, slog.Group(s.name, "old", old[s.name], "new", cur[s.name]))
		}
	}
	return attrs
}

// attrs returns every setting of v as log attributes.
func (v values) attrs() []any {
	a := make([]any, 0, 2*len(known))
	for _, s := range known {
		a = append(a, s.name, v[s.name])
	}
	return a
}
