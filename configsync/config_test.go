package configsync

import (
	"errors"
	"os/user"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	ok := Config{Prefix: "/c/", Dir: "/tmp/c"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	bad := Config{Layout: "tree", FileMode: 0o200, OnDelete: "trash", MaxFileBytes: -1}
	want := map[string]string{
		"Prefix": "want a non-empty", "Dir": "want a directory path", "Layout": "want files or snapshot",
		"FileMode": "the owner must be able to read", "OnDelete": "want remove or keep", "MaxFileBytes": "want a positive size",
	}
	err := bad.Validate()
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Validate = %v, want ErrInvalidConfig", err)
	}
	got := map[string]string{}
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("%v is not a *FieldError", e)
		}
		got[fe.Field] = fe.Reason
	}
	for field, reason := range want {
		if !strings.Contains(got[field], reason) {
			t.Errorf("%s: reason %q, want it to contain %q", field, got[field], reason)
		}
	}
	if len(got) != len(want) {
		t.Errorf("problems %v, want one per field of %v", got, want)
	}
}

func TestOwnerCheck(t *testing.T) {
	tests := []struct {
		name   string
		owner  Owner
		creds  creds
		fields []string
	}{
		{"root gives files to anyone", Owner{UID: 1000, GID: 1000}, creds{uid: 0}, nil},
		{"own uid and gid", Owner{UID: 1000, GID: 1000}, creds{uid: 1000, gid: 1000}, nil},
		{"a supplementary group", Owner{UID: -1, GID: 20}, creds{uid: 1000, gid: 1000, groups: []int{20}}, nil},
		{"another user", Owner{UID: 0, GID: -1}, creds{uid: 1000, gid: 1000}, []string{"Owner"}},
		{"a group not in", Owner{UID: 1000, GID: 0}, creds{uid: 1000, gid: 1000, groups: []int{20}}, []string{"Group"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var fields []string
			for _, err := range tt.owner.check(tt.creds) {
				fields = append(fields, err.(*FieldError).Field)
			}
			if strings.Join(fields, ",") != strings.Join(tt.fields, ",") {
				t.Errorf("problems with %v, want %v", fields, tt.fields)
			}
		})
	}
}

func TestLookupOwner(t *testing.T) {
	if o, err := LookupOwner("", ""); o != nil || err != nil {
		t.Errorf("LookupOwner(\"\", \"\") = %v, %v; want nil, nil", o, err)
	}
	o, err := LookupOwner("123", "")
	if err != nil || o.UID != 123 || o.GID != -1 {
		t.Errorf("LookupOwner(123) = %+v, %v; want uid 123, gid -1", o, err)
	}
	if root, err := user.LookupId("0"); err == nil {
		o, err := LookupOwner(root.Username, "0")
		if err != nil || o.UID != 0 || o.GID != 0 {
			t.Errorf("LookupOwner(%q, 0) = %+v, %v; want 0, 0", root.Username, o, err)
		}
	}
	_, err = LookupOwner("no-such-user-x", "-5")
	if err == nil || !strings.Contains(err.Error(), "no such name") || !strings.Contains(err.Error(), "ids are 0 or more") {
		t.Errorf("LookupOwner(bad) = %v, want both problems", err)
	}
}
