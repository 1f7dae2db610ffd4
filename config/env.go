package config

import (
	"fmt"
	"strings"
)

// expandEnv replaces ${NAME} and ${NAME:-default} in one YAML scalar.
//
// The syntax is the shell's, reduced to what a config file needs:
//   - ${NAME} is NAME's value; an unset NAME is a problem (a set but empty
//     NAME gives ""), so a forgotten secret fails at startup, not at login.
//   - ${NAME:-default} gives default when NAME is unset or empty. The default
//     is literal text and ends at the first "}".
//   - $$ is an escaped "$": write $${NAME} for the literal text ${NAME}.
//   - Any other "$" is kept as is, so values like "pa$word" need no escaping.
//
// It returns every problem in s, not just the first.
func expandEnv(s string, lookup func(string) (string, bool)) (string, []string) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var (
		b        strings.Builder
		problems []string
	)
	for i := 0; i < len(s); {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			i++
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i += 2
		case '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				problems = append(problems, `unterminated "${" (write $$ for a literal "$")`)
				return s, problems
			}
			expr := s[i+2 : i+2+end]
			i += 2 + end + 1
			name, def, hasDef := strings.Cut(expr, ":-")
			if !isEnvName(name) {
				problems = append(problems, fmt.Sprintf("invalid variable reference ${%s}: want ${NAME} or ${NAME:-default}", expr))
				continue
			}
			val, ok := lookup(name)
			switch {
			case hasDef && val == "":
				val = def
			case !ok:
				problems = append(problems, fmt.Sprintf("environment variable %s is not set (write ${%s:-default} to give a default)", name, name))
			}
			b.WriteString(val)
		default:
			b.WriteByte('$')
			i++
		}
	}
	return b.String(), problems
}

// isEnvName reports whether s is a portable environment variable name.
func isEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
