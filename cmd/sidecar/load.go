package main

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/sidecar-dev/sidecar/client"
	"github.com/sidecar-dev/sidecar/sidecar"
)

// flagKeys binds `sidecar run` flags to configuration keys.
var flagKeys = map[string]string{
	"name":           "name",
	"data-dir":       "data_dir",
	"etcd-endpoints": "etcd.endpoints",
	"namespace":      "etcd.namespace",
	"socket":         "api.socket",
	"http":           "api.http",
	"log-level":      "log.level",
	"log-format":     "log.format",
}

// loadConfig reads the configuration: file, then SIDECAR_* environment, then
// flags, each beating the one before; in embedded mode etcd's own ETCD_*
// variables fill embedded fields left unset. Map fields (service.metadata)
// keep the case of their keys (see rawMaps); in the environment they are
// JSON objects. Every problem is reported, together, each naming the field,
// variable or flag the user wrote: unknown fields (with the closest known
// field), SIDECAR_* variables that set nothing (see unknownVars) and values
// that do not parse (each a *badValue naming the key it was meant for).
func loadConfig(file string, flags *pflag.FlagSet, environ []string) (sidecar.Config, error) {
	env := envMap(environ)
	v := viper.New()
	cfg := sidecar.Defaults()
	if file != "" {
		v.SetConfigFile(file)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return cfg, errors.Join(append([]error{fileError(file, err)}, unknownVars(env)...)...)
		}
	}
	errs := unknownFields(v.AllSettings(), reflect.TypeOf(cfg), "")
	errs = append(errs, unknownVars(env)...)
	source := map[string]string{} // key → the variable or flag that set it
	for _, key := range leafKeys(reflect.TypeOf(cfg), "") {
		if val, ok := env[envVar(key)]; ok {
			v.Set(key, val) // environment beats the file
			source[key] = envVar(key)
		}
	}
	userMaps, mapErrs := rawMaps(file, mapKeys(reflect.TypeOf(cfg), ""), env)
	errs = append(errs, mapErrs...)
	if val, ok := env[client.SocketEnv]; ok && env["SIDECAR_API_SOCKET"] == "" {
		v.Set("api.socket", val) // the CLI's variable works for the daemon too
		source["api.socket"] = client.SocketEnv
	}
	if flags != nil {
		for name, key := range flagKeys {
			if f := flags.Lookup(name); f != nil && f.Changed {
				v.Set(key, flagValue(f))
				source[key] = "--" + name
			}
		}
	}
	if v.GetString("etcd.dns_srv") == "" && len(v.GetStringSlice("etcd.endpoints")) == 0 {
		errs = append(errs, applyEtcdEnv(v, env, source)...)
	}
	err := v.Unmarshal(&cfg, func(dc *mapstructure.DecoderConfig) {
		dc.ZeroFields = true
		dc.DecodeHook = mapstructure.ComposeDecodeHookFunc(keepCaseHook, durationHook, byteSizeHook, mapstructure.StringToWeakSliceHookFunc(","))
	})
	errs = append(errs, decodeErrors(err, source)...)
	setMaps(&cfg, userMaps)
	return cfg, errors.Join(errs...)
}

// fileError words a file that cannot be read or parsed: the file and the
// YAML library's line and reason, without viper's "While parsing config"
// or the library's "yaml:" prefix.
func fileError(file string, err error) error {
	var pe viper.ConfigParseError
	if errors.As(err, &pe) && pe.Unwrap() != nil {
		err = pe.Unwrap()
	}
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("config file %s: no such file", file)
	}
	return fmt.Errorf("config file %s: %s", file, strings.TrimPrefix(err.Error(), "yaml: "))
}

func flagValue(f *pflag.Flag) any {
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		return sv.GetSlice()
	}
	return f.Value.String()
}

func envMap(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// leafKeys lists the dotted keys of a config struct's scalar and list
// fields (lists of structs are left to the file; maps to rawMaps).
func leafKeys(t reflect.Type, prefix string) []string {
	return fieldKeys(t, prefix, func(f reflect.Type) bool {
		return f.Kind() != reflect.Map && !(f.Kind() == reflect.Slice && f.Elem().Kind() == reflect.Struct)
	})
}

// fieldKeys lists the dotted mapstructure keys of the fields of a config
// struct, descending into nested structs, whose type keep accepts.
func fieldKeys(t reflect.Type, prefix string, keep func(reflect.Type) bool) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		key := prefix + f.Tag.Get("mapstructure")
		switch {
		case f.Type.Kind() == reflect.Struct:
			keys = append(keys, fieldKeys(f.Type, key+".", keep)...)
		case keep(f.Type):
			keys = append(keys, key)
		}
	}
	return keys
}

// durationHook parses durations with a message that says what is allowed.
func durationHook(from, to reflect.Type, data any) (any, error) {
	if to != reflect.TypeOf(time.Duration(0)) {
		return data, nil
	}
	switch d := data.(type) {
	case string:
		v, err := time.ParseDuration(strings.TrimSpace(d))
		if err != nil {
			return nil, fmt.Errorf("%q: want a duration such as 500ms, 5s or 1m", d)
		}
		return v, nil
	case int, int64, float64:
		return nil, fmt.Errorf("%v: want a duration with a unit, such as 500ms, 5s or 1m", d)
	}
	return data, nil
}

func byteSizeHook(from, to reflect.Type, data any) (any, error) {
	if to != reflect.TypeOf(sidecar.ByteSize(0)) {
		return data, nil
	}
	switch d := data.(type) {
	case string:
		return sidecar.ParseByteSize(d)
	case int:
		return sidecar.ByteSize(d), nil
	}
	return data, nil
}

// badValue is a value that could not be read into the configuration key
// (a dotted key such as service.port): the field keeps its zero value, whose
// problems are not reported again (see configError).
type badValue struct {
	key string
	err error
}

func (b *badValue) Error() string { return b.err.Error() }
func (b *badValue) Unwrap() error { return b.err }

// decodeErrors flattens mapstructure's joined errors into one per field,
// each naming the variable or flag that set the field (source), else the
// field.
func decodeErrors(err error, source map[string]string) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, decodeErrors(e, source)...)
		}
		return out
	}
	de, ok := err.(*mapstructure.DecodeError)
	if !ok {
		if inner := errors.Unwrap(err); inner != nil {
			return decodeErrors(inner, source) // mapstructure's "decoding failed" wrapper
		}
		return []error{err}
	}
	key, inner := de.Name(), de.Unwrap()
	name := cmp.Or(source[key], key)
	var pe *mapstructure.ParseError
	if errors.As(inner, &pe) {
		return []error{&badValue{key, &sidecar.FieldError{Field: name, Value: strconv.Quote(fmt.Sprint(pe.Value)), Want: "not a valid " + pe.Expected.Type().String()}}}
	}
	return []error{&badValue{key, fmt.Errorf("%s: %v", name, inner)}}
}

// etcdEnv maps etcd's own variables to embedded fields; kind says how the
// value is written by etcd (ms: integer milliseconds, hours: etcd's
// auto-compaction retention, list: comma separated).
var etcdEnv = []struct{ name, key, kind string }{
	{"ETCD_NAME", "embedded.name", ""},
	{"ETCD_DATA_DIR", "embedded.data_dir", ""},
	{"ETCD_LISTEN_CLIENT_URLS", "embedded.listen_client_urls", "list"},
	{"ETCD_ADVERTISE_CLIENT_URLS", "embedded.advertise_client_urls", "list"},
	{"ETCD_LISTEN_PEER_URLS", "embedded.listen_peer_urls", "list"},
	{"ETCD_INITIAL_ADVERTISE_PEER_URLS", "embedded.initial_advertise_peer_urls", "list"},
	{"ETCD_INITIAL_CLUSTER", "embedded.initial_cluster", ""},
	{"ETCD_INITIAL_CLUSTER_TOKEN", "embedded.initial_cluster_token", ""},
	{"ETCD_INITIAL_CLUSTER_STATE", "embedded.initial_cluster_state", ""},
	{"ETCD_DISCOVERY_SRV", "embedded.discovery_srv", ""},
	{"ETCD_HEARTBEAT_INTERVAL", "embedded.heartbeat_interval", "ms"},
	{"ETCD_ELECTION_TIMEOUT", "embedded.election_timeout", "ms"},
	{"ETCD_SNAPSHOT_COUNT", "embedded.snapshot_count", ""},
	{"ETCD_AUTO_COMPACTION_RETENTION", "embedded.auto_compaction_retention", "hours"},
	{"ETCD_QUOTA_BACKEND_BYTES", "embedded.quota_backend_bytes", ""},
	{"ETCD_CERT_FILE", "embedded.cert_file", ""},
	{"ETCD_KEY_FILE", "embedded.key_file", ""},
	{"ETCD_TRUSTED_CA_FILE", "embedded.trusted_ca_file", ""},
	{"ETCD_CLIENT_CERT_AUTH", "embedded.client_cert_auth", ""},
	{"ETCD_PEER_CERT_FILE", "embedded.peer_cert_file", ""},
	{"ETCD_PEER_KEY_FILE", "embedded.peer_key_file", ""},
	{"ETCD_PEER_TRUSTED_CA_FILE", "embedded.peer_trusted_ca_file", ""},
	{"ETCD_PEER_CLIENT_CERT_AUTH", "embedded.peer_client_cert_auth", ""},
}

// applyEtcdEnv fills embedded fields that no file, SIDECAR_* variable or
// flag set from etcd's ETCD_* variables, so an etcd.conf environment file
// works unchanged.
func applyEtcdEnv(v *viper.Viper, env map[string]string, source map[string]string) []error {
	var errs []error
	for _, e := range etcdEnv {
		val, ok := env[e.name]
		if !ok || v.IsSet(e.key) {
			continue
		}
		val = strings.TrimSpace(val)
		source[e.key] = e.name
		switch e.kind {
		case "list":
			v.Set(e.key, strings.Split(val, ","))
		case "ms":
			n, err := strconv.ParseUint(val, 10, 32)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q: want milliseconds as a whole number, such as 100", e.name, val))
				continue
			}
			v.Set(e.key, (time.Duration(n) * time.Millisecond).String())
		case "hours":
			if n, err := strconv.ParseUint(val, 10, 32); err == nil {
				val = (time.Duration(n) * time.Hour).String() // etcd: a bare number is hours
			}
			v.Set(e.key, val)
		default:
			v.Set(e.key, val)
		}
	}
	return errs
}

// unknownFields reports each key of the file's settings (lower-cased, as
// viper keeps them) that no field of t has, with the closest field at the
// same level when one is near; it descends into sections and into the
// elements of lists of sections. Values of the wrong shape are left to the
// decoder, which reports them.
func unknownFields(settings map[string]any, t reflect.Type, prefix string) []error {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		f, ok := fieldByKey(t, k)
		if !ok {
			want := "unknown field"
			if near := closest(k, fieldNames(t)); near != "" {
				want += "; did you mean " + near + "?"
			}
			errs = append(errs, &sidecar.FieldError{Field: prefix + k, Want: want})
			continue
		}
		switch val := settings[k]; {
		case f.Type.Kind() == reflect.Struct:
			if sub, ok := val.(map[string]any); ok {
				errs = append(errs, unknownFields(sub, f.Type, prefix+k+".")...)
			}
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			list, _ := val.([]any)
			for i, e := range list {
				if sub, ok := e.(map[string]any); ok {
					errs = append(errs, unknownFields(sub, f.Type.Elem(), fmt.Sprintf("%s%s[%d].", prefix, k, i))...)
				}
			}
		}
	}
	return errs
}

// fieldByKey finds the field of struct type t whose key is k, in any case
// (as the decoder matches).
func fieldByKey(t reflect.Type, k string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if strings.EqualFold(t.Field(i).Tag.Get("mapstructure"), k) {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

func fieldNames(t reflect.Type) []string {
	names := make([]string, t.NumField())
	for i := range names {
		names[i] = t.Field(i).Tag.Get("mapstructure")
	}
	return names
}

// otherVars are the SIDECAR_* variables that are not configuration keys
// but are read by the CLI (the socket) or set by sidecar for the commands
// it runs (SIDECAR_LOCK_*, SIDECAR_ELECTION_*), or by its tests and
// benchmarks: a daemon started with them is not told they are mistakes.
// An entry ending in _ is a prefix.
var otherVars = []string{client.SocketEnv, "SIDECAR_LOCK_", "SIDECAR_ELECTION_", "SIDECAR_TEST_", "SIDECAR_BENCH_"}

// unknownVars reports the SIDECAR_* variables that look meant for the
// configuration but set nothing: a variable is reported when it is not the
// variable of a configuration key nor one of otherVars, and either starts
// with the variable prefix of a section (SIDECAR_SERVICE_, SIDECAR_ETCD_,
// SIDECAR_CONFIG…) or its name after SIDECAR_ is one edit (two for names
// longer than 5 letters) away from a configuration variable's (then named
// as the one meant). Other SIDECAR_* variables are
// left alone: they may belong to the user's own programs.
func unknownVars(env map[string]string) []error {
	t := reflect.TypeOf(sidecar.Config{})
	var known, suffixes []string
	for _, key := range append(leafKeys(t, ""), mapKeys(t, "")...) {
		known = append(known, envVar(key))
		suffixes = append(suffixes, strings.TrimPrefix(envVar(key), "SIDECAR_"))
	}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(env)) {
		if !strings.HasPrefix(name, "SIDECAR_") || slices.Contains(known, name) || isOtherVar(name) {
			continue
		}
		near := closest(strings.TrimPrefix(name, "SIDECAR_"), suffixes) // SIDECAR_HOME is not SIDECAR_NAME
		switch {
		case name == "SIDECAR_CONFIG" || strings.HasPrefix(name, "SIDECAR_CONFIG_"):
			errs = append(errs, &sidecar.FieldError{Field: name, Want: "not a variable sidecar reads: the config section is set only in the file (give it with --config)"})
		case near != "":
			errs = append(errs, &sidecar.FieldError{Field: name, Want: "not a variable sidecar reads; did you mean SIDECAR_" + near + "?"})
		case inSection(name, t):
			errs = append(errs, &sidecar.FieldError{Field: name, Want: "not a variable sidecar reads: want SIDECAR_ and a configuration key, such as SIDECAR_SERVICE_PORT for service.port"})
		}
	}
	return errs
}

func isOtherVar(name string) bool {
	for _, o := range otherVars {
		if name == o || strings.HasSuffix(o, "_") && strings.HasPrefix(name, o) {
			return true
		}
	}
	return false
}

// inSection reports whether variable name starts with the variable prefix
// of a section (a struct or list field) of t.
func inSection(name string, t reflect.Type) bool {
	for i := range t.NumField() {
		f := t.Field(i)
		if k := f.Type.Kind(); k == reflect.Struct || k == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct {
			if strings.HasPrefix(name, envVar(f.Tag.Get("mapstructure"))+"_") {
				return true
			}
		}
	}
	return false
}

// closest returns the candidate nearest to word when it is near enough to
// be the one meant (one edit for short words, two for longer), else "".
func closest(word string, candidates []string) string {
	best, bestD := "", 2
	if len(word) > 5 {
		bestD = 3
	}
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(word), strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance of a and b:
// insertions, deletions, substitutions and swaps of adjacent letters.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
