package bff

import (
	"errors"
	"net/url"
	"slices"
	"strings"
)

// validSPAReturnTo accepts only a same-origin path under an allowed prefix.
// Browsers treat "//host", "/\host" and "https:host" as other origins, so
// anything that is not plainly "/path" is refused rather than interpreted.
func validSPAReturnTo(rt string, allowed []string) error {
	switch {
	case !strings.HasPrefix(rt, "/"):
		return errors.New("must be a relative path starting with /")
	case strings.HasPrefix(rt, "//"):
		return errors.New("must not start with //")
	case strings.ContainsAny(rt, "\\\x00\r\n\t"):
		return errors.New("must not contain backslashes or control characters")
	}
	u, err := url.Parse(rt)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return errors.New("must be a relative path")
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if seg == "." || seg == ".." {
			return errors.New("must not contain dot-segments")
		}
	}
	for _, a := range allowed {
		if underPrefix(u.Path, a) {
			return nil
		}
	}
	return errors.New("is not under an allowed return_to prefix")
}

// underPrefix matches "/web/" against "/web/x" and "/web" (the mount itself),
// but not "/webx".
func underPrefix(path, prefix string) bool {
	if strings.HasSuffix(prefix, "/") {
		return strings.HasPrefix(path, prefix) || path == strings.TrimSuffix(prefix, "/")
	}
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

// validAppReturnTo: native apps register exact redirect URIs (RFC 8252).
func validAppReturnTo(rt string, allowed []string) bool {
	return slices.Contains(allowed, rt)
}

// validChallenge checks the shape of an S256 code challenge.
func validChallenge(c string) bool {
	if len(c) != 43 {
		return false
	}
	for _, r := range c {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}
