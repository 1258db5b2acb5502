package sidecar

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sidecar-dev/sidecar/configsync"
	"github.com/sidecar-dev/sidecar/internal/etcdclient"
	"github.com/sidecar-dev/sidecar/internal/names"
	"github.com/sidecar-dev/sidecar/registry"
)

// maxSocketPath is the longest unix socket path Linux accepts (sun_path).
const maxSocketPath = 107

// FieldError is one problem of the configuration, in the user's words:
// the field (a dotted key such as service.port, or the environment
// variable that set it), the value as written for people (empty: not
// shown) and what is allowed.
type FieldError struct {
	Field, Value, Want string
}

func (e *FieldError) Error() string {
	if e.Value == "" {
		return e.Field + ": " + e.Want
	}
	return e.Field + ": " + e.Value + ": " + e.Want
}

// problems collects validation errors, each naming field, value and what is allowed.
type problems []error

func (p *problems) add(field string, value any, want string) {
	p.addText(field, show(value), want)
}

// addText adds a problem whose value is already written for people; an
// empty value is left out.
func (p *problems) addText(field, value, want string) {
	*p = append(*p, &FieldError{Field: field, Value: value, Want: want})
}

func show(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("%q", v)
	case time.Duration:
		return v.String()
	default:
		return fmt.Sprint(v)
	}
}

// Validate reports every problem of a completed Config at once (call
// Complete first), each naming the field, the value and what is allowed.
// It touches nothing but the file system (to check that files exist).
func (c *Config) Validate() error {
	var p problems
	if !names.Valid(c.Name) {
		p.add("name", c.Name, "want letters, digits, '.', '_' or '-', starting with a letter or digit, at most 128")
	}
	if c.DataDir == "" {
		p.add("data_dir", c.DataDir, "want a directory path")
	}
	c.validateEtcd(&p)
	c.validateService(&p)
	if c.Coordination.TTL < 2*time.Second {
		p.add("coordination.ttl", c.Coordination.TTL, "want at least 2s")
	}
	c.validateMappings(&p)
	c.validateAPI(&p)
	if !oneOf(c.Log.Level, "debug", "info", "warn", "error") {
		p.add("log.level", c.Log.Level, "want one of debug, info, warn, error")
	}
	if !oneOf(c.Log.Format, "text", "json") {
		p.add("log.format", c.Log.Format, "want text or json")
	}
	return errors.Join(p...)
}

func oneOf(s string, allowed ...string) bool {
	for _, a := range allowed {
		if s == a {
			return true
		}
	}
	return false
}

func (c *Config) validateEtcd(p *problems) {
	ns := c.Etcd.Namespace
	if !strings.HasPrefix(ns, "/") || strings.HasSuffix(ns, "/") || strings.Contains(ns, "//") {
		p.add("etcd.namespace", ns, "want a key prefix starting with '/' and not ending with '/', such as /sidecar")
	}
	if c.EmbeddedMode() {
		c.validateEmbedded(p)
		return
	}
	_, err := c.ClientConfig()
	for _, err := range Problems(err) {
		var fe *etcdclient.FieldError
		if errors.As(err, &fe) { // worded for developers: "etcdclient: field value: reason"
			p.addText(fe.Field, fe.Value, fe.Reason)
			continue
		}
		*p = append(*p, err)
	}
}

// validateEmbedded checks the embedded member with the embedded package's
// rules. Fields that Complete derived from others (advertise URLs copied
// from the listen URLs, embedded.name from name) are not checked again: a
// problem of theirs is reported on the field the user wrote.
func (c *Config) validateEmbedded(p *problems) {
	mc := c.EmbeddedMember()
	if slices.Equal(mc.AdvertiseClientURLs, mc.ListenClientURLs) {
		mc.AdvertiseClientURLs = nil // the embedded package defaults it alike
	}
	if slices.Equal(mc.InitialAdvertisePeerURLs, mc.ListenPeerURLs) {
		mc.InitialAdvertisePeerURLs = nil
	}
	nameDerived := mc.Name == c.Name && !names.Valid(c.Name)
	for _, err := range Problems(mc.Validate()) {
		if nameDerived && strings.HasPrefix(err.Error(), "embedded.name:") {
			continue // the node name's problem, reported under name
		}
		*p = append(*p, err)
	}
}

// Problems returns the errors joined in err (errors.Join), at any depth:
// one per problem, as Validate reports them.
func Problems(err error) []error {
	if err == nil {
		return nil
	}
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, Problems(e)...)
	}
	return out
}

// validateService checks the service section with the registry's rules:
// it validates the registry config the section maps to and words each
// problem in the user's terms. Only check.timeout <= check.interval is the
// daemon's own rule.
func (c *Config) validateService(p *problems) {
	s := c.Service
	if s.Name == "" {
		return
	}
	rc := c.RegistryConfig()
	if s.ID == registry.DefaultID(s.Name, c.Name, s.Port) {
		rc.ID = "" // derived: the registry words a problem of the default id itself
	}
	for _, err := range Problems(rc.Validate()) {
		var fe *registry.FieldError
		if !errors.As(err, &fe) {
			*p = append(*p, fmt.Errorf("service: %w", err))
			continue
		}
		if fe.Field == "ID" && rc.ID == "" && !names.Valid(c.Name) {
			continue // the default id derives from name, reported already
		}
		if field, value, want := c.serviceProblem(fe); field != "" {
			p.addText(field, value, want)
		}
	}
	interval := cmp.Or(s.Check.Interval, registry.DefaultCheckInterval)
	if timeout := cmp.Or(s.Check.Timeout, registry.DefaultTimeout(interval)); interval > 0 && timeout > interval {
		p.add("service.check.timeout", timeout, "want a duration no longer than service.check.interval ("+interval.String()+")")
	}
}

// serviceFields maps the registry's field paths to the keys of the service
// section. Prefix and Node derive from etcd.namespace and name, whose own
// rules are checked (and reported) where they are.
var serviceFields = map[string]string{
	"Prefix":                       "",
	"Node":                         "",
	"Service":                      "service.name",
	"ID":                           "service.id",
	"Weight":                       "service.weight",
	"Metadata":                     "service.metadata",
	"TTL":                          "service.ttl",
	"DrainTimeout":                 "service.drain_timeout",
	"Check":                        "service.check",
	"Check.HTTP":                   "service.check.http",
	"Check.TCP":                    "service.check.tcp",
	"Check.Exec":                   "service.check.exec",
	"Check.Interval":               "service.check.interval",
	"Check.Timeout":                "service.check.timeout",
	"Check.FailuresBeforeCritical": "service.check.failures_before_critical",
}

// serviceProblem translates one registry problem into the field the user
// wrote, its value and what is allowed; field is "" for a problem that is
// reported elsewhere. The registry sees service.address and service.port
// joined into one address: a problem of it is reported on the part at
// fault.
func (c *Config) serviceProblem(fe *registry.FieldError) (field, value, want string) {
	if fe.Field == "Addr" {
		if fe.Part == "port" {
			return "service.port", strconv.Itoa(c.Service.Port), fe.Reason
		}
		return "service.address", strconv.Quote(c.Service.Address), "want an IP address or host name (or a go-sockaddr template)"
	}
	field, ok := serviceFields[fe.Field]
	if !ok { // a rule newer than this table
		field = "service." + strings.ToLower(fe.Field)
	}
	return field, fe.Value, fe.Reason
}

// validateMappings checks the config section: each mapping with
// configsync's rules (worded in the user's terms), and the daemon's own:
// where its directory may be, and that directories do not overlap.
func (c *Config) validateMappings(p *problems) {
	dirs := map[string]int{}
	for i, m := range c.Config {
		f := fmt.Sprintf("config[%d]", i)
		validateMappingDir(p, f+".dir", m.Dir, c.DataDir)
		if abs, err := filepath.Abs(m.Dir); err == nil && m.Dir != "" {
			for other, j := range dirs {
				if within(abs, other) || within(other, abs) {
					p.add(f+".dir", m.Dir, fmt.Sprintf("overlaps config[%d].dir: want separate directories", j))
				}
			}
			dirs[abs] = i
		}
		mc, errs := m.mapping()
		if mc != nil {
			errs = append(errs, Problems(mc.Validate())...)
		}
		if rc, err := m.OnChange.reload(); err != nil {
			errs = append(errs, err)
		} else {
			errs = append(errs, Problems(rc.Validate())...)
		}
		for _, err := range errs {
			m.addProblem(p, f, err)
		}
	}
}

// mappingFields maps configsync's field names to the keys of a mapping.
var mappingFields = map[string]string{
	"Prefix": "prefix", "Dir": "dir", "Layout": "layout", "FileMode": "file_mode",
	"Owner": "owner", "Group": "group", "OnDelete": "on_delete", "MaxFileBytes": "max_file_bytes",
	"Command": "on_change.command", "Signal": "on_change.signal", "PIDFile": "on_change.pid_file",
	"Debounce": "on_change.debounce", "Timeout": "on_change.timeout",
}

// addProblem words one problem of mapping f (config[i]) in the user's
// terms: the key they wrote, the value as they wrote it.
func (m MappingConfig) addProblem(p *problems, f string, err error) {
	var fe *configsync.FieldError
	if !errors.As(err, &fe) {
		*p = append(*p, fmt.Errorf("%s: %w", f, err))
		return
	}
	key, ok := mappingFields[fe.Field]
	if !ok { // a rule newer than this table
		key = strings.ToLower(fe.Field)
	}
	value := fe.Value
	switch fe.Field {
	case "Dir":
		return // validateMappingDir words it
	case "Prefix":
		value = show(m.Prefix)
	case "FileMode":
		value = show(m.FileMode)
	case "MaxFileBytes":
		value = m.MaxFileBytes.String()
	}
	p.addText(f+"."+key, value, fe.Reason)
}

// mapping is the configsync Config of the mapping (without Logger and
// OnBatch), or nil with the problems that keep it from being built.
func (m MappingConfig) mapping() (*configsync.Config, []error) {
	var errs []error
	mode, err := parseMode(m.FileMode)
	if err != nil {
		errs = append(errs, &configsync.FieldError{Field: "FileMode", Reason: err.Error()})
	}
	owner, err := configsync.LookupOwner(m.Owner, m.Group)
	if err != nil {
		errs = append(errs, Problems(err)...)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return &configsync.Config{
		Prefix: m.Prefix, Dir: m.Dir, Layout: configsync.Layout(m.Layout), FileMode: mode, Owner: owner,
		OnDelete: configsync.OnDelete(m.OnDelete), MaxFileBytes: int64(m.MaxFileBytes),
	}, nil
}

// reload is configsync's ReloadConfig of on_change, or a problem with the
// signal name.
func (oc OnChangeConfig) reload() (configsync.ReloadConfig, error) {
	rc := configsync.ReloadConfig{Command: oc.Command, PIDFile: oc.PIDFile, Debounce: oc.Debounce, Timeout: oc.Timeout}
	if oc.Signal != "" {
		sig, ok := configsync.SignalByName(oc.Signal)
		if !ok {
			return rc, &configsync.FieldError{Field: "Signal", Value: show(oc.Signal), Reason: "want a signal name such as HUP, SIGHUP, USR1, TERM"}
		}
		rc.Signal = sig
	}
	return rc, nil
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

func validateMappingDir(p *problems, field, dir, dataDir string) {
	if dir == "" {
		p.add(field, dir, "want a directory path")
		return
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		p.add(field, dir, err.Error())
		return
	}
	if abs == "/" {
		p.add(field, dir, "refusing to mirror into the root directory")
	}
	if dataAbs, err := filepath.Abs(dataDir); err == nil && dataDir != "" && (within(abs, dataAbs) || within(dataAbs, abs)) {
		p.add(field, dir, fmt.Sprintf("overlaps data_dir %q: want a directory outside it", dataDir))
	}
	fi, err := os.Lstat(abs)
	switch {
	case errors.Is(err, os.ErrNotExist):
		// created at start-up
	case err != nil:
		p.add(field, dir, err.Error())
	case fi.Mode()&os.ModeSymlink != 0:
		target, _ := filepath.EvalSymlinks(abs)
		p.add(field, dir, fmt.Sprintf("is a symlink to %q: give the real directory", target))
	case !fi.IsDir():
		p.add(field, dir, "exists and is not a directory")
	}
}

func (c *Config) validateAPI(p *problems) {
	path := c.SocketPath()
	if len(path) > maxSocketPath {
		p.add("api.socket", path, fmt.Sprintf("too long for a unix socket: want at most %d bytes", maxSocketPath))
	}
	if mode, err := parseMode(c.API.SocketMode); err != nil {
		p.add("api.socket_mode", c.API.SocketMode, err.Error())
	} else if mode&0o600 != 0o600 {
		p.add("api.socket_mode", c.API.SocketMode, "the owner needs read and write (0600 at least)")
	}
	for i, uid := range c.API.AllowedUIDs {
		if uid < 0 {
			p.add(fmt.Sprintf("api.allowed_uids[%d]", i), uid, "want a uid of 0 or more")
		}
	}
	if c.API.HTTP != "" {
		if _, port, err := net.SplitHostPort(c.API.HTTP); err != nil || port == "" {
			p.add("api.http", c.API.HTTP, "want host:port such as 127.0.0.1:9090")
		}
	}
}
