package main

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

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
// JSON objects. Unknown fields and values that do not parse are reported
// together, each naming the field or variable.
func loadConfig(file string, flags *pflag.FlagSet, environ []string) (sidecar.Config, error) {
	env := envMap(environ)
	v := viper.New()
	cfg := sidecar.Defaults()
	if file != "" {
		v.SetConfigFile(file)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return cfg, fmt.Errorf("config file %s: %w", file, err)
		}
	}
	for _, key := range leafKeys(reflect.TypeOf(cfg), "") {
		if val, ok := env[envVar(key)]; ok {
			v.Set(key, val) // environment beats the file
		}
	}
	userMaps, errs := rawMaps(file, mapKeys(reflect.TypeOf(cfg), ""), env)
	if val, ok := env["SIDECAR_SOCKET"]; ok && env["SIDECAR_API_SOCKET"] == "" {
		v.Set("api.socket", val) // the CLI's variable works for the daemon too
	}
	if flags != nil {
		for name, key := range flagKeys {
			if f := flags.Lookup(name); f != nil && f.Changed {
				v.Set(key, flagValue(f))
			}
		}
	}
	if v.GetString("etcd.dns_srv") == "" && len(v.GetStringSlice("etcd.endpoints")) == 0 {
		errs = append(errs, applyEtcdEnv(v, env)...)
	}
	var md mapstructure.Metadata
	err := v.Unmarshal(&cfg, func(dc *mapstructure.DecoderConfig) {
		dc.Metadata = &md
		dc.ZeroFields = true
		dc.DecodeHook = mapstructure.ComposeDecodeHookFunc(keepCaseHook, durationHook, byteSizeHook, mapstructure.StringToWeakSliceHookFunc(","))
	})
	errs = append(errs, decodeErrors(err)...)
	setMaps(&cfg, userMaps)
	slices.Sort(md.Unused)
	for _, k := range md.Unused {
		errs = append(errs, fmt.Errorf("%s: unknown field", k))
	}
	return cfg, errors.Join(errs...)
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

// decodeErrors flattens mapstructure's joined errors into one per field.
func decodeErrors(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, decodeErrors(e)...)
		}
		return out
	}
	de, ok := err.(*mapstructure.DecodeError)
	if !ok {
		if inner := errors.Unwrap(err); inner != nil {
			return decodeErrors(inner) // mapstructure's "decoding failed" wrapper
		}
		return []error{err}
	}
	{
		inner := de.Unwrap()
		var pe *mapstructure.ParseError
		if errors.As(inner, &pe) {
			return []error{fmt.Errorf("%s: %q: not a valid %s", de.Name(), fmt.Sprint(pe.Value), pe.Expected.Type())}
		}
		return []error{fmt.Errorf("%s: %v", de.Name(), inner)}
	}
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
}

// applyEtcdEnv fills embedded fields that no file, SIDECAR_* variable or
// flag set from etcd's ETCD_* variables, so an etcd.conf environment file
// works unchanged.
func applyEtcdEnv(v *viper.Viper, env map[string]string) []error {
	var errs []error
	for _, e := range etcdEnv {
		val, ok := env[e.name]
		if !ok || v.IsSet(e.key) {
			continue
		}
		val = strings.TrimSpace(val)
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
