package sidecar

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	socktmpl "github.com/hashicorp/go-sockaddr/template"

	"github.com/sidecar-dev/sidecar/registry"
)

// Complete fills the fields whose defaults derive from other fields (node
// name: embedded.name in embedded mode, else the hostname; embedded name
// and data dir; advertise URLs; service id; check timeout; per-mapping
// defaults) and renders go-sockaddr templates such as {{ GetPrivateIP }} in
// every address field. It reports every template that fails, naming the field.
func (c *Config) Complete() error {
	var errs []error
	if c.Name == "" && c.EmbeddedMode() && c.Embedded.Name != "" {
		c.Name = c.Embedded.Name // the member's name (ETCD_NAME) names the node
	}
	if c.Name == "" {
		h, err := os.Hostname()
		if err != nil {
			errs = append(errs, fmt.Errorf("name: empty and the hostname is unknown (%v): set name", err))
		}
		c.Name = h
	}
	errs = append(errs, c.renderTemplates()...)
	c.DataDir = absPath(c.DataDir) // status shows it, and a later chdir cannot move it
	e := &c.Embedded
	if e.Name == "" {
		e.Name = c.Name
	}
	if e.DataDir == "" && c.DataDir != "" {
		e.DataDir = filepath.Join(c.DataDir, "etcd")
	}
	e.DataDir = absPath(e.DataDir) // ETCD_DATA_DIR may be relative
	if len(e.AdvertiseClientURLs) == 0 {
		e.AdvertiseClientURLs = append([]string(nil), e.ListenClientURLs...)
	}
	if len(e.InitialAdvertisePeerURLs) == 0 {
		e.InitialAdvertisePeerURLs = append([]string(nil), e.ListenPeerURLs...)
	}
	if s := &c.Service; s.Name != "" && s.ID == "" {
		s.ID = registry.DefaultID(s.Name, c.Name, s.Port)
	}
	if chk := &c.Service.Check; chk.Timeout == 0 {
		chk.Timeout = registry.DefaultTimeout(cmp.Or(chk.Interval, registry.DefaultCheckInterval))
	}
	for i := range c.Config {
		m := &c.Config[i]
		m.Layout = orDefault(m.Layout, DefaultLayout)
		m.FileMode = orDefault(m.FileMode, DefaultFileMode)
		m.OnDelete = orDefault(m.OnDelete, DefaultOnDelete)
		if m.MaxFileBytes == 0 {
			m.MaxFileBytes = DefaultMaxFileBytes
		}
		if m.OnChange.Debounce == 0 {
			m.OnChange.Debounce = DefaultDebounce
		}
	}
	return errors.Join(errs...)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// renderTemplates evaluates go-sockaddr templates in the address fields.
func (c *Config) renderTemplates() []error {
	var errs []error
	one := func(field string, s *string) {
		if !strings.Contains(*s, "{{") {
			return
		}
		out, err := socktmpl.Parse(*s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %q: go-sockaddr template failed: %v", field, *s, err))
			return
		}
		if strings.TrimSpace(out) == "" {
			errs = append(errs, fmt.Errorf("%s: %q: go-sockaddr template gave an empty address", field, *s))
			return
		}
		*s = out
	}
	list := func(field string, ss []string) {
		for i := range ss {
			one(fmt.Sprintf("%s[%d]", field, i), &ss[i])
		}
	}
	e := &c.Embedded
	list("etcd.endpoints", c.Etcd.Endpoints)
	list("embedded.listen_client_urls", e.ListenClientURLs)
	list("embedded.advertise_client_urls", e.AdvertiseClientURLs)
	list("embedded.listen_peer_urls", e.ListenPeerURLs)
	list("embedded.initial_advertise_peer_urls", e.InitialAdvertisePeerURLs)
	list("embedded.join", e.Join)
	one("embedded.initial_cluster", &e.InitialCluster)
	if c.Service.Name != "" {
		one("service.address", &c.Service.Address)
	}
	one("service.check.http", &c.Service.Check.HTTP)
	one("service.check.tcp", &c.Service.Check.TCP)
	one("api.http", &c.API.HTTP)
	return errs
}

// absPath is p made absolute; "" and a path that cannot be made absolute
// stay as they are.
func absPath(p string) string {
	if p == "" {
		return p
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}
