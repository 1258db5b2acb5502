package sidecar

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sidecar-dev/sidecar/configsync"
	"github.com/sidecar-dev/sidecar/internal/names"
	"github.com/sidecar-dev/sidecar/registry"
)

// maxSocketPath is the longest unix socket path Linux accepts (sun_path).
const maxSocketPath = 107

// problems collects validation errors, each naming field, value and what is allowed.
type problems []error

func (p *problems) add(field string, value any, want string) {
	p.addText(field, show(value), want)
}

// addText adds a problem whose value is already written for people; an
// empty value is left out.
func (p *problems) addText(field, value, want string) {
	if value == "" {
		*p = append(*p, fmt.Errorf("%s: %s", field, want))
		return
	}
	*p = append(*p, fmt.Errorf("%s: %s: %s", field, value, want))
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
		mc := c.EmbeddedMember()
		if err := mc.Validate(); err != nil {
			*p = append(*p, err)
		}
		return
	}
	if _, err := c.ClientConfig(); err != nil {
		*p = append(*p, err)
	}
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
	for _, err := range unjoin(rc.Validate()) {
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
	if timeout := cmp.Or(s.Check.Timeout, registry.DefaultCheckTimeout); interval > 0 && timeout > interval {
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

// unjoin returns the errors joined in err (errors.Join), or err alone.
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func (c *Config) validateMappings(p *problems) {
	dirs := map[string]int{}
	for i, m := range c.Config {
		f := fmt.Sprintf("config[%d]", i)
		if m.Prefix == "" {
			p.add(f+".prefix", m.Prefix, "want a non-empty etcd key prefix such as /config/orders/")
		}
		validateMappingDir(p, f+".dir", m.Dir, c.DataDir)
		if abs, err := filepath.Abs(m.Dir); err == nil && m.Dir != "" {
			for other, j := range dirs {
				if within(abs, other) || within(other, abs) {
					p.add(f+".dir", m.Dir, fmt.Sprintf("overlaps config[%d].dir: want separate directories", j))
				}
			}
			dirs[abs] = i
		}
		switch {
		case m.Layout == "snapshot":
			p.add(f+".layout", m.Layout, "the snapshot layout is not supported yet: use files")
		case m.Layout != "files":
			p.add(f+".layout", m.Layout, "want files or snapshot")
		}
		if mode, err := parseMode(m.FileMode); err != nil {
			p.add(f+".file_mode", m.FileMode, err.Error())
		} else if mode&0o600 != 0o600 && mode&0o400 == 0 {
			p.add(f+".file_mode", m.FileMode, "the owner must be able to read the files")
		}
		if !oneOf(m.OnDelete, "remove", "keep") {
			p.add(f+".on_delete", m.OnDelete, "want remove or keep")
		}
		if m.MaxFileBytes <= 0 {
			p.add(f+".max_file_bytes", int64(m.MaxFileBytes), "want a positive size such as 1MiB")
		}
		validateOnChange(p, f+".on_change", m.OnChange)
	}
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

func validateOnChange(p *problems, f string, oc OnChangeConfig) {
	if len(oc.Command) > 0 && oc.Command[0] == "" {
		p.add(f+".command", oc.Command, "want an argv whose first element is the program")
	}
	if oc.Signal != "" {
		if _, ok := configsync.SignalByName(oc.Signal); !ok {
			p.add(f+".signal", oc.Signal, "want a signal name such as HUP, SIGHUP, USR1, TERM")
		}
		if oc.PIDFile == "" {
			p.add(f+".pid_file", oc.PIDFile, "want the path of the file holding the pid to signal (required with signal)")
		}
	}
	if oc.PIDFile != "" && oc.Signal == "" {
		p.add(f+".signal", oc.Signal, "want a signal name to send to the pid in pid_file")
	}
	if oc.Debounce < 0 {
		p.add(f+".debounce", oc.Debounce, "want 0 or more")
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
