package grant

import (
	"slices"
	"strings"
)

// splitScope splits a space-separated scope string into its tokens,
// dropping empty ones and duplicates while keeping the order.
func splitScope(s string) []string {
	fields := strings.Fields(s)
	out := fields[:0]
	for _, f := range fields {
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// validScopeToken is RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
func validScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// grantScope decides the scope of a grant: every requested token must be
// well-formed and within each non-nil bound. It reports the first bound
// that refuses.
func grantScope(requested []string, bounds ...[]string) ([]string, *Error) {
	for _, s := range requested {
		if !validScopeToken(s) {
			return nil, invalidScope("malformed_scope", "requested scope is malformed")
		}
		for _, b := range bounds {
			if b != nil && !slices.Contains(b, s) {
				return nil, invalidScope("scope_not_allowed", "requested scope is not allowed")
			}
		}
	}
	return requested, nil
}

func joinScope(scope []string) string { return strings.Join(scope, " ") }
