package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/sidecar-dev/sidecar/configsync"
	"github.com/sidecar-dev/sidecar/sidecar"
)

// printedExample runs `sidecar config example` and returns what it printed.
func printedExample(t *testing.T) string {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"config", "example"})
	if err := root.ExecuteContext(t.Context()); err != nil {
		t.Fatalf("sidecar config example: %v", err)
	}
	return out.String()
}

// uncommentMapping turns the example's commented config mapping into a
// real one: "config: []" becomes "config:" and the "#" of the lines after
// it goes.
func uncommentMapping(t *testing.T, example string) string {
	t.Helper()
	lines := strings.Split(example, "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, "config: []") {
			continue
		}
		lines[i] = "config:"
		for j := i + 1; j < len(lines) && strings.HasPrefix(lines[j], "#  "); j++ {
			lines[j] = " " + lines[j][1:]
		}
		return strings.Join(lines, "\n")
	}
	t.Fatal("the example has no line starting with `config: []`")
	return ""
}

// TestConfigExampleIsDefaults loads the printed example with the real
// loader: it must give exactly sidecar.Defaults(), so a default changed in
// one place and not in example.yaml fails here. The example must also be a
// valid configuration.
func TestConfigExampleIsDefaults(t *testing.T) {
	t.Chdir(t.TempDir())
	cfg, err := loadConfig(writeFile(t, printedExample(t)), nil, nil)
	if err != nil {
		t.Fatalf("loading the example: %v", err)
	}
	for _, d := range diffValues("", reflect.ValueOf(sidecar.Defaults()), reflect.ValueOf(cfg)) {
		t.Errorf("example.yaml disagrees with sidecar.Defaults(): %s", d)
	}
	if _, err := sidecar.New(cfg, nil); err != nil {
		t.Errorf("the example is not a valid configuration:\n%v", err)
	}
}

// TestConfigExampleMapping checks the commented config mapping: uncommented,
// it loads and shows the mapping defaults that Complete applies.
func TestConfigExampleMapping(t *testing.T) {
	cfg, err := loadConfig(writeFile(t, uncommentMapping(t, printedExample(t))), nil, nil)
	if err != nil {
		t.Fatalf("loading the example with its mapping: %v", err)
	}
	want := sidecar.MappingConfig{
		Prefix:       "/config/orders/",
		Dir:          "./config/orders",
		Layout:       sidecar.DefaultLayout,
		FileMode:     sidecar.DefaultFileMode,
		OnDelete:     sidecar.DefaultOnDelete,
		MaxFileBytes: sidecar.DefaultMaxFileBytes,
		OnChange: sidecar.OnChangeConfig{
			Debounce: sidecar.DefaultDebounce,
			Timeout:  configsync.DefaultReloadTimeout,
		},
	}
	if len(cfg.Config) != 1 {
		t.Fatalf("config = %+v, want the one example mapping", cfg.Config)
	}
	for _, d := range diffValues("config[0]", reflect.ValueOf(want), reflect.ValueOf(cfg.Config[0])) {
		t.Errorf("example mapping disagrees with the mapping defaults: %s", d)
	}
}

// TestConfigExampleComplete checks that the example writes every field of
// the configuration (the mapping's in its commented element).
func TestConfigExampleComplete(t *testing.T) {
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(uncommentMapping(t, printedExample(t))), &doc); err != nil {
		t.Fatal(err)
	}
	ct := reflect.TypeOf(sidecar.Config{})
	keys := append(fieldKeys(ct, "", func(f reflect.Type) bool { return true }), "config")
	for _, k := range fieldKeys(reflect.TypeOf(sidecar.MappingConfig{}), "", func(reflect.Type) bool { return true }) {
		keys = append(keys, "config.0."+k)
	}
	for _, key := range keys {
		var node any = doc
		for _, name := range strings.Split(key, ".") {
			switch n := node.(type) {
			case map[string]any:
				node = n[name]
			case []any:
				node = n[0]
			default:
				node = nil
			}
		}
		if node == nil && !hasNullKey(doc, key) {
			t.Errorf("example.yaml does not write %s", key)
		}
	}
}

// hasNullKey reports whether the last element of key is present (with an
// empty value) in its parent mapping.
func hasNullKey(doc map[string]any, key string) bool {
	path := strings.Split(key, ".")
	var node any = doc
	for _, name := range path[:len(path)-1] {
		switch n := node.(type) {
		case map[string]any:
			node = n[name]
		case []any:
			node = n[0]
		}
	}
	m, ok := node.(map[string]any)
	if !ok {
		return false
	}
	_, ok = m[path[len(path)-1]]
	return ok
}

// diffValues lists the fields where got differs from want, by path; nil
// and empty slices and maps count as equal.
func diffValues(path string, want, got reflect.Value) []string {
	switch want.Kind() {
	case reflect.Struct:
		var out []string
		for i := range want.NumField() {
			name := want.Type().Field(i).Tag.Get("mapstructure")
			if path != "" {
				name = path + "." + name
			}
			out = append(out, diffValues(name, want.Field(i), got.Field(i))...)
		}
		return out
	case reflect.Slice, reflect.Map:
		if want.Len() == 0 && got.Len() == 0 {
			return nil
		}
	}
	if !reflect.DeepEqual(want.Interface(), got.Interface()) {
		return []string{fmt.Sprintf("%s: default %v, written %v", path, want.Interface(), got.Interface())}
	}
	return nil
}

// TestConfigDocDefaults checks the defaults written in the tables of
// docs/configuration.md: the value first quoted in the default column of
// each row whose field is a dotted path or a top-level field, put in a
// configuration file and loaded, must give sidecar.Defaults(); and every
// field of the configuration must have a row.
func TestConfigDocDefaults(t *testing.T) {
	body, err := os.ReadFile(filepath.Join("..", "..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc, rows := map[string]any{}, docDefaults(string(body))
	for key, val := range rows {
		setPath(doc, strings.Split(key, "."), val)
	}
	for _, key := range fieldKeys(reflect.TypeOf(sidecar.Config{}), "", func(f reflect.Type) bool {
		return !(f.Kind() == reflect.Slice && f.Elem().Kind() == reflect.Struct)
	}) {
		if _, ok := rows[key]; !ok {
			t.Errorf("docs/configuration.md has no row for %s", key)
		}
	}
	file, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(writeFile(t, string(file)), nil, nil)
	if err != nil {
		t.Fatalf("loading the documented defaults:\n%s\n%v", file, err)
	}
	for _, d := range diffValues("", reflect.ValueOf(sidecar.Defaults()), reflect.ValueOf(cfg)) {
		t.Errorf("docs/configuration.md disagrees with sidecar.Defaults(): %s", d)
	}
}

// docRow is a table row of docs/configuration.md: | `field` | type | `default`...
var docRow = regexp.MustCompile("(?m)^\\| `([a-z_.]+)` \\| [^|]+ \\| `([^`]*)`")

// docDefaults returns the documented default of each configuration field,
// by dotted key; rows of the config mappings (keys not starting with a
// top-level field, or starting with config) are left out.
func docDefaults(md string) map[string]any {
	top := map[string]bool{}
	ct := reflect.TypeOf(sidecar.Config{})
	for i := range ct.NumField() {
		top[ct.Field(i).Tag.Get("mapstructure")] = true
	}
	out := map[string]any{}
	for _, m := range docRow.FindAllStringSubmatch(md, -1) {
		key, raw := m[1], m[2]
		if first, _, _ := strings.Cut(key, "."); !top[first] || first == "config" {
			continue
		}
		var v any = raw
		if !strings.Contains(raw, "{{") {
			if err := yaml.Unmarshal([]byte(raw), &v); err != nil {
				v = raw
			}
		}
		out[key] = v
	}
	return out
}

// setPath sets doc[path[0]][path[1]]... to v, making the maps on the way.
func setPath(doc map[string]any, path []string, v any) {
	for _, name := range path[:len(path)-1] {
		next, ok := doc[name].(map[string]any)
		if !ok {
			next = map[string]any{}
			doc[name] = next
		}
		doc = next
	}
	doc[path[len(path)-1]] = v
}
