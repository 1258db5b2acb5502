package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Map fields of the configuration (service.metadata) hold the user's own
// data: their keys must keep their case. Viper lower-cases every key it
// reads, so these fields are not taken from viper: keepCaseHook drops
// viper's lower-cased copy, and rawMaps reads them from the YAML document
// (with the yaml library viper uses) and from SIDECAR_* variables holding a
// JSON object, the variable beating the file. No flag sets a map.

var stringMapType = reflect.TypeOf(map[string]string(nil))

// mapKeys lists the dotted keys of the map fields of a config struct. Maps
// inside lists of structs are not supported (TestMapFields guards this).
func mapKeys(t reflect.Type, prefix string) []string {
	return fieldKeys(t, prefix, func(f reflect.Type) bool { return f == stringMapType })
}

// keepCaseHook makes viper's decoding leave map fields empty; rawMaps fills
// them with the keys as the user wrote them.
func keepCaseHook(from, to reflect.Type, data any) (any, error) {
	if to == stringMapType {
		return map[string]string{}, nil
	}
	return data, nil
}

// rawMaps returns the value of each map field set in the file or the
// environment, keys unchanged, and one error per problem, naming the field
// or the variable.
func rawMaps(file string, keys []string, env map[string]string) (map[string]map[string]string, []error) {
	var root yaml.Node
	if file != "" {
		body, err := os.ReadFile(file)
		if err != nil {
			return nil, []error{fmt.Errorf("config file %s: %w", file, err)}
		}
		if err := yaml.Unmarshal(body, &root); err != nil {
			return nil, []error{fmt.Errorf("config file %s: %w", file, err)}
		}
	}
	out := make(map[string]map[string]string)
	var errs []error
	for _, key := range keys {
		envName := envVar(key)
		if val, ok := env[envName]; ok {
			m, err := jsonMap(val)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q: %w", envName, val, err))
				continue
			}
			out[key] = m
			continue
		}
		node := lookup(&root, strings.Split(key, "."))
		if node == nil {
			continue
		}
		m, err := yamlMap(key, node)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[key] = m
	}
	return out, errs
}

// envVar is the SIDECAR_* variable of a dotted key.
func envVar(key string) string {
	return "SIDECAR_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// lookup finds the node at path in a YAML document, matching each name
// regardless of case as viper does; nil when absent.
func lookup(n *yaml.Node, path []string) *yaml.Node {
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	for _, name := range path {
		var m map[string]yaml.Node // resolves aliases and << merges
		if n.Kind != yaml.MappingNode && n.Kind != yaml.AliasNode || n.Decode(&m) != nil {
			return nil // not a mapping: viper reports it
		}
		var found *yaml.Node
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if strings.EqualFold(k, name) {
				v := m[k]
				found = &v
			}
		}
		if found == nil {
			return nil
		}
		n = found
	}
	return n
}

// yamlMap reads a mapping of names to scalars, keeping keys and values as
// written (version: 1.10 stays "1.10"); null is an empty map or value.
func yamlMap(key string, n *yaml.Node) (map[string]string, error) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil, nil
	}
	var m map[string]yaml.Node
	if n.Kind != yaml.MappingNode || n.Decode(&m) != nil {
		return nil, fmt.Errorf("%s: want a mapping of names to values, such as {version: v1, zone: a}", key)
	}
	out := make(map[string]string, len(m))
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v := m[k]
		for v.Kind == yaml.AliasNode {
			v = *v.Alias
		}
		switch {
		case v.Kind != yaml.ScalarNode:
			errs = append(errs, fmt.Errorf("%s.%s: want a string, number or boolean, not a list or mapping", key, k))
		case v.Tag == "!!null":
			out[k] = ""
		default:
			out[k] = v.Value
		}
	}
	return out, errors.Join(errs...)
}

// jsonMap parses a JSON object of names to strings, numbers or booleans,
// keeping keys and values as written; an empty string is an empty map.
func jsonMap(s string) (map[string]string, error) {
	bad := errors.New(`want a JSON object of names to strings, such as {"version":"v1","zone":"a"}`)
	if strings.TrimSpace(s) == "" {
		return map[string]string{}, nil
	}
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, bad
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, bad // trailing data
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		switch v := v.(type) {
		case string:
			out[k] = v
		case json.Number, bool:
			out[k] = fmt.Sprint(v)
		case nil:
			out[k] = ""
		default:
			return nil, bad
		}
	}
	return out, nil
}

// setMaps stores each map in the config field of its dotted key.
func setMaps(cfg any, found map[string]map[string]string) {
	for key, m := range found {
		v := reflect.ValueOf(cfg).Elem()
		for _, name := range strings.Split(key, ".") {
			v = fieldByTag(v, name)
		}
		v.Set(reflect.ValueOf(m))
	}
}

// fieldByTag returns the field of struct v whose mapstructure tag is name.
func fieldByTag(v reflect.Value, name string) reflect.Value {
	t := v.Type()
	for i := range t.NumField() {
		if t.Field(i).Tag.Get("mapstructure") == name {
			return v.Field(i)
		}
	}
	panic("sidecar: no config field " + name) // mapKeys found it
}
