package configsync

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestRelPath(t *testing.T) {
	long := strings.Repeat("n", 255)
	tests := []struct {
		name, key, prefix string
		want              string // "" means refused
		why               string // part of the refusal message
	}{
		{name: "flat", key: "/config/app/a.yaml", prefix: "/config/app/", want: "a.yaml"},
		{name: "nested", key: "/config/app/a/b/c.conf", prefix: "/config/app/", want: "a/b/c.conf"},
		{name: "spaces and unicode", key: "/config/app/my dir/ünï çødé ✓.txt", prefix: "/config/app/", want: "my dir/ünï çødé ✓.txt"},
		{name: "dots inside names", key: "/config/app/.hidden/a..b/c.", prefix: "/config/app/", want: ".hidden/a..b/c."},
		{name: "prefix without slash", key: "/config/app/x", prefix: "/config/app", want: "x"},
		{name: "empty prefix", key: "a/b", prefix: "", want: "a/b"},
		{name: "name of 255 bytes", key: "/p/" + long, prefix: "/p/", want: long},
		{name: "path of 4096 bytes", key: "/p/" + longPath(4096), prefix: "/p/", want: longPath(4096)},

		{name: "sibling prefix", key: "/config/app2/x", prefix: "/config/app/", why: "not under the prefix"},
		{name: "sibling of prefix without slash", key: "/config/app2/x", prefix: "/config/app", why: "not under the prefix"},
		{name: "prefix itself without slash", key: "/config/app", prefix: "/config/app", why: "not under the prefix"},
		{name: "other key", key: "/other", prefix: "/config/app/", why: "not under the prefix"},
		{name: "empty", key: "/config/app/", prefix: "/config/app/", why: "empty"},
		{name: "absolute", key: "/config/app//etc/passwd", prefix: "/config/app/", why: "absolute"},
		{name: "absolute with empty prefix", key: "/etc/passwd", prefix: "", why: "absolute"},
		{name: "double slash", key: "/p/a//b", prefix: "/p/", why: "empty element"},
		{name: "trailing slash", key: "/p/a/", prefix: "/p/", why: "empty element"},
		{name: "dot", key: "/p/a/./b", prefix: "/p/", why: `"." element`},
		{name: "lone dot", key: "/p/.", prefix: "/p/", why: `"." element`},
		{name: "dot dot", key: "/p/a/../../etc", prefix: "/p/", why: `".." element`},
		{name: "dot dot at end", key: "/p/a/..", prefix: "/p/", why: `".." element`},
		{name: "reserved data", key: "/p/..data", prefix: "/p/", why: "reserved"},
		{name: "reserved temp name", key: "/p/a/..sidecar-tmp-00", prefix: "/p/", why: "reserved"},
		{name: "three dots", key: "/p/...", prefix: "/p/", why: "reserved"},
		{name: "NUL", key: "/p/a\x00b", prefix: "/p/", why: "NUL"},
		{name: "backslash", key: `/p/a\..\b`, prefix: "/p/", why: "backslash"},
		{name: "invalid UTF-8", key: "/p/a\xffb", prefix: "/p/", why: "UTF-8"},
		{name: "name of 256 bytes", key: "/p/" + long + "n", prefix: "/p/", why: "over the limit of 255"},
		{name: "path of 4097 bytes", key: "/p/" + longPath(4097), prefix: "/p/", why: "over the limit of 4096"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := RelPath(tt.key, tt.prefix)
			if tt.want != "" {
				if err != nil || got != tt.want {
					t.Fatalf("RelPath(%q, %q) = %q, %v; want %q, nil", tt.key, tt.prefix, got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("RelPath(%q, %q) = %q, nil; want a refusal", tt.key, tt.prefix, got)
			}
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tt.why) {
				t.Fatalf("RelPath(%q, %q) error = %v; want ErrRefused saying %q", tt.key, tt.prefix, err, tt.why)
			}
			if got != "" || len(err.Error()) > 300 {
				t.Fatalf("RelPath(%q, %q) = %q, %d-byte error %v", tt.key, tt.prefix, got, len(err.Error()), err)
			}
		})
	}
}

// longPath returns a valid relative path of n bytes.
func longPath(n int) string {
	var b strings.Builder
	for b.Len() < n {
		if b.Len() > 0 {
			b.WriteByte('/')
		}
		b.WriteString(strings.Repeat("x", min(200, n-b.Len())))
	}
	s := b.String()
	if len(s) != n || strings.HasSuffix(s, "/") {
		panic("longPath: bad length")
	}
	return s
}

func FuzzRelPath(f *testing.F) {
	for _, s := range [][2]string{
		{"/config/app/a/b", "/config/app/"}, {"/config/app2/x", "/config/app"},
		{"/p/../x", "/p/"}, {"/p/..data", "/p/"}, {"/p/a//b", "/p/"}, {`/p/a\b`, "/p/"},
		{"/p/.", "/p/"}, {"/p//x", "/p/"}, {"/p/a\x00", "/p/"}, {"/p/\xff", "/p/"},
		{"x", ""}, {"/x", ""}, {"/p/" + longPath(4096), "/p/"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, key, prefix string) {
		rel, err := RelPath(key, prefix)
		if err != nil {
			if !errors.Is(err, ErrRefused) || rel != "" {
				t.Fatalf("RelPath(%q, %q) = %q, %v", key, prefix, rel, err)
			}
			return
		}
		if !filepath.IsLocal(rel) || !utf8.ValidString(rel) ||
			strings.ContainsAny(rel, "\x00\\") || len(rel) > maxPathBytes {
			t.Fatalf("RelPath(%q, %q) = %q: not a local path within limits", key, prefix, rel)
		}
		for _, elem := range strings.Split(rel, "/") {
			if elem == "" || elem == "." || strings.HasPrefix(elem, "..") || len(elem) > maxNameBytes {
				t.Fatalf("RelPath(%q, %q) = %q: bad element %q", key, prefix, rel, elem)
			}
		}
		if filepath.Clean(rel) != rel {
			t.Fatalf("RelPath(%q, %q) = %q: not clean", key, prefix, rel)
		}
		if prefix != "" && !strings.HasSuffix(prefix, "/") {
			prefix += "/"
		}
		if prefix+rel != key {
			t.Fatalf("RelPath(%q, %q) = %q: prefix+path != key", key, prefix, rel)
		}
	})
}
