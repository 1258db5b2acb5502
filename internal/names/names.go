// Package names checks the names of services, instance ids, locks and
// elections (SPEC §4): [A-Za-z0-9][A-Za-z0-9._-]{0,127}. They become etcd
// key elements and file-free identifiers, so nothing else is allowed.
package names

// Pattern is the rule, as a regular expression, for messages.
const Pattern = `[A-Za-z0-9][A-Za-z0-9._-]{0,127}`

// Valid reports whether s matches Pattern.
func Valid(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}
