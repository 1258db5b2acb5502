package configsync

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
)

// ErrInvalidConfig is wrapped by every *FieldError of Config.Validate,
// ReloadConfig.Validate and LookupOwner.
var ErrInvalidConfig = errors.New("configsync: invalid config")

// FieldError is one problem with a field of a Config or ReloadConfig.
// Value and Reason are written for people, so that a program that maps
// Field to its own configuration's names can show them unchanged.
type FieldError struct {
	Field  string // Go name of the field, e.g. "Layout", or "Owner" / "Group" of Owner
	Value  string // the offending value as written in messages; empty when there is no single one
	Reason string // what is wrong and what is allowed, e.g. "want files or snapshot"
}

func (e *FieldError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("configsync: config: %s: %s", e.Field, e.Reason)
	}
	return fmt.Sprintf("configsync: config: %s %s: %s", e.Field, e.Value, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalidConfig) true.
func (e *FieldError) Unwrap() error { return ErrInvalidConfig }

// Layout is how a mapping's files appear in its directory.
type Layout string

// The layouts; the zero Layout is LayoutFiles.
const (
	// LayoutFiles: one file per key, each replaced atomically on its own.
	LayoutFiles Layout = "files"
	// LayoutSnapshot: all files of one revision appear at once, through a
	// "..data" link swap (see Snapshot).
	LayoutSnapshot Layout = "snapshot"
)

// OnDelete says what happens to the file of a deleted key.
type OnDelete string

// The choices of OnDelete; the zero OnDelete is OnDeleteRemove.
const (
	OnDeleteRemove OnDelete = "remove" // the file goes, and directories left empty
	OnDeleteKeep   OnDelete = "keep"   // the file stays with its last content
)

// Defaults of Config.
const (
	DefaultFileMode     fs.FileMode = 0o644
	DefaultMaxFileBytes             = 1 << 20 // the largest value mirrored
)

// Config describes one mapping: an etcd prefix mirrored into a directory.
type Config struct {
	Prefix       string      // every key under it is mirrored; required
	Dir          string      // the directory the files live in; created if missing
	Layout       Layout      // default LayoutFiles
	FileMode     fs.FileMode // of every file, permission bits only; default DefaultFileMode
	Owner        *Owner      // of every file; nil leaves the process's (see LookupOwner)
	OnDelete     OnDelete    // default OnDeleteRemove
	MaxFileBytes int64       // larger values are refused; default DefaultMaxFileBytes
	Logger       *slog.Logger
	// OnBatch, if set, is called on Run's goroutine after the files of a
	// batch are on disk: the initial sync (or a re-sync) when it changed
	// anything, then each watch response that did. It must not block.
	OnBatch func(Batch)
}

// withDefaults fills the zero fields that have a default.
func (c Config) withDefaults() Config {
	if c.Layout == "" {
		c.Layout = LayoutFiles
	}
	if c.FileMode == 0 {
		c.FileMode = DefaultFileMode
	}
	if c.OnDelete == "" {
		c.OnDelete = OnDeleteRemove
	}
	if c.MaxFileBytes == 0 {
		c.MaxFileBytes = DefaultMaxFileBytes
	}
	return c
}

// Validate applies the defaults of zero fields, as New does, and reports
// every problem of the result at once, one *FieldError per problem,
// joined. It touches neither etcd nor the disk.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	add := func(field, value, reason string) {
		errs = append(errs, &FieldError{Field: field, Value: value, Reason: reason})
	}
	if c.Prefix == "" {
		add("Prefix", "", "want a non-empty etcd key prefix such as /config/orders/")
	}
	if c.Dir == "" {
		add("Dir", "", "want a directory path")
	}
	if c.Layout != LayoutFiles && c.Layout != LayoutSnapshot {
		add("Layout", strconv.Quote(string(c.Layout)), "want files or snapshot")
	}
	switch {
	case c.FileMode&^fs.ModePerm != 0:
		add("FileMode", fmt.Sprintf("%#o", c.FileMode), "want permission bits only, such as 0644")
	case c.FileMode&0o400 == 0:
		add("FileMode", fmt.Sprintf("%#o", c.FileMode), "the owner must be able to read the files")
	}
	if c.OnDelete != OnDeleteRemove && c.OnDelete != OnDeleteKeep {
		add("OnDelete", strconv.Quote(string(c.OnDelete)), "want remove or keep")
	}
	if c.MaxFileBytes < 0 {
		add("MaxFileBytes", strconv.FormatInt(c.MaxFileBytes, 10), "want a positive size such as 1MiB")
	}
	if c.Owner != nil {
		errs = append(errs, c.Owner.check(processCreds())...)
	}
	return errors.Join(errs...)
}

// Owner is the owner and group of a mapping's files; -1 in either leaves
// it as the process creates it.
type Owner struct{ UID, GID int }

// LookupOwner resolves the owner and group of a mapping's files, each a
// name or a numeric id; "" leaves it as the process creates it. Both ""
// give nil. A name that does not exist is an error; whether the process
// may give files to that owner and group is Config.Validate's check.
func LookupOwner(owner, group string) (*Owner, error) {
	if owner == "" && group == "" {
		return nil, nil
	}
	o := &Owner{UID: -1, GID: -1}
	var errs []error
	if owner != "" {
		id, err := lookupID(owner, func(n string) (string, error) {
			u, err := user.Lookup(n)
			if err != nil {
				return "", err
			}
			return u.Uid, nil
		})
		if err != nil {
			errs = append(errs, &FieldError{Field: "Owner", Value: strconv.Quote(owner), Reason: "want a user name or uid: " + err.Error()})
		}
		o.UID = id
	}
	if group != "" {
		id, err := lookupID(group, func(n string) (string, error) {
			g, err := user.LookupGroup(n)
			if err != nil {
				return "", err
			}
			return g.Gid, nil
		})
		if err != nil {
			errs = append(errs, &FieldError{Field: "Group", Value: strconv.Quote(group), Reason: "want a group name or gid: " + err.Error()})
		}
		o.GID = id
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return o, nil
}

// lookupID returns the number s is, or the id lookup gives for the name.
func lookupID(s string, lookup func(string) (string, error)) (int, error) {
	if id, err := strconv.Atoi(s); err == nil {
		if id < 0 {
			return -1, errors.New("ids are 0 or more")
		}
		return id, nil
	}
	idText, err := lookup(s)
	if err != nil {
		var unknownUser user.UnknownUserError
		var unknownGroup user.UnknownGroupError
		if errors.As(err, &unknownUser) || errors.As(err, &unknownGroup) {
			return -1, errors.New("no such name on this machine")
		}
		return -1, errors.New(strings.TrimPrefix(err.Error(), "user: "))
	}
	return strconv.Atoi(idText)
}

// creds are the ids a process writes files with.
type creds struct {
	uid, gid int
	groups   []int // supplementary
}

// processCreds returns this process's.
func processCreds() creds {
	groups, _ := os.Getgroups()
	return creds{uid: os.Geteuid(), gid: os.Getegid(), groups: groups}
}

// check reports an owner or group a process with c cannot give its
// files: only root (CAP_CHOWN) gives files away; others may set their own
// uid and a group they are in.
func (o *Owner) check(c creds) []error {
	if c.uid == 0 {
		return nil
	}
	var errs []error
	if o.UID >= 0 && o.UID != c.uid {
		errs = append(errs, &FieldError{Field: "Owner", Value: strconv.Itoa(o.UID),
			Reason: fmt.Sprintf("the sidecar runs as uid %d and cannot give files to another user: run it as root, or leave owner empty", c.uid)})
	}
	if o.GID >= 0 && o.GID != c.gid && !slices.Contains(c.groups, o.GID) {
		errs = append(errs, &FieldError{Field: "Group", Value: strconv.Itoa(o.GID),
			Reason: fmt.Sprintf("the sidecar (uid %d) is not in this group, so it cannot give files to it: add it to the group, run it as root, or leave group empty", c.uid)})
	}
	return errs
}
