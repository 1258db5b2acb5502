package sidecar

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sidecar-dev/sidecar/internal/names"
)

// maxSocketPath is the longest unix socket path Linux accepts (sun_path).
const maxSocketPath = 107

// problems collects validation errors, each naming field, value and what is allowed.
type problems []error

func (p *problems) add(field string, value any, want string) {
	*p = append(*p, fmt.Errorf("%s: %s: %s", field, show(value), want))
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

func (c *Config) validateService(p *problems) {
	s := c.Service
	if s.Name == "" {
		return
	}
	if !names.Valid(s.Name) {
		p.add("service.name", s.Name, "want letters, digits, '.', '_' or '-', starting with a letter or digit, at most 128")
	}
	if !names.Valid(s.ID) {
		p.add("service.id", s.ID, "want letters, digits, '.', '_' or '-', starting with a letter or digit, at most 128")
	}
	if s.Address == "" || strings.ContainsAny(s.Address, " /:") && net.ParseIP(s.Address) == nil {
		p.add("service.address", s.Address, "want an IP address or host name (or a go-sockaddr template)")
	}
	if s.Port < 1 || s.Port > 65535 {
		p.add("service.port", s.Port, "out of range: want 1..65535")
	}
	if s.Weight < 0 || s.Weight > 10000 {
		p.add("service.weight", s.Weight, "out of range: want 0..10000 (0 = drained)")
	}
	for k := range s.Metadata {
		if k == "" {
			p.add("service.metadata", k, "empty key")
		}
	}
	if s.TTL < 2*time.Second {
		p.add("service.ttl", s.TTL, "want at least 2s")
	}
	if s.DrainTimeout < 0 {
		p.add("service.drain_timeout", s.DrainTimeout, "want 0 or more")
	}
	validateCheck(p, s.Check)
}

func validateCheck(p *problems, ch CheckConfig) {
	kinds := 0
	for _, set := range []bool{ch.HTTP != "", ch.TCP != "", len(ch.Exec) > 0} {
		if set {
			kinds++
		}
	}
	if kinds > 1 {
		p.add("service.check", fmt.Sprintf("http=%q tcp=%q exec=%q", ch.HTTP, ch.TCP, ch.Exec), "set at most one of http, tcp, exec")
	}
	if ch.HTTP != "" {
		if u, err := url.Parse(ch.HTTP); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.add("service.check.http", ch.HTTP, "want an http:// or https:// URL")
		}
	}
	if ch.TCP != "" {
		if _, port, err := net.SplitHostPort(ch.TCP); err != nil || port == "" {
			p.add("service.check.tcp", ch.TCP, "want host:port")
		}
	}
	if len(ch.Exec) > 0 && ch.Exec[0] == "" {
		p.add("service.check.exec", ch.Exec, "want an argv whose first element is the program")
	}
	if ch.Interval <= 0 {
		p.add("service.check.interval", ch.Interval, "want a positive duration")
	}
	if ch.Timeout <= 0 || ch.Timeout > ch.Interval {
		p.add("service.check.timeout", ch.Timeout, "want a positive duration no longer than service.check.interval")
	}
	if ch.FailuresBeforeCritical < 1 {
		p.add("service.check.failures_before_critical", ch.FailuresBeforeCritical, "want at least 1")
	}
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
		if !oneOf(m.Layout, "files", "snapshot") {
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
		if _, ok := SignalByName(oc.Signal); !ok {
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
