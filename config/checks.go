package config

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// checkCleanPath checks a mount, route prefix or aggregate path: routing
// compares them with cleaned request paths, so they must be clean too.
func checkCleanPath(p string) string {
	switch {
	case !strings.HasPrefix(p, "/"):
		return `must start with "/"`
	case p != "/" && strings.HasSuffix(p, "/"):
		return `must not end with "/"`
	case strings.Contains(p, "//"):
		return `must not contain "//"`
	case strings.ContainsAny(p, "?#%\\;:*") || hasSpaceOrControl(p):
		return `must be a plain path: no query, fragment, "%", "\", ";", ":", "*", spaces or control characters`
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return `must not contain "." or ".." segments`
		}
	}
	return ""
}

// checkLocalPath checks a redirect target that must stay on this origin.
func checkLocalPath(p string) string {
	switch {
	case p == "":
		return "is required"
	case !strings.HasPrefix(p, "/"):
		return `must be a path starting with "/"`
	case strings.HasPrefix(p, "//"):
		return `must not start with "//" (browsers read that as another host)`
	case strings.Contains(p, "\\"):
		return `must not contain "\" (browsers read it as "/")`
	case hasSpaceOrControl(p):
		return "must not contain spaces or control characters"
	}
	return ""
}

// checkRedirect checks after_login and after_logout: a local path, or for a
// mobile frontend also an app redirect URI.
func checkRedirect(s string, mobile bool) string {
	if mobile && s != "" && !strings.HasPrefix(s, "/") {
		return checkAppURI(s)
	}
	return checkLocalPath(s)
}

// checkAppURI checks a native app's redirect URI (RFC 8252): a private-use
// scheme, https, or http on loopback.
func checkAppURI(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return "must be an absolute URI with a scheme, such as com.example.app:/callback"
	}
	if strings.Contains(s, "#") {
		return "must not contain a fragment"
	}
	switch u.Scheme {
	case "https", "http":
		if u.Host == "" {
			return "must have a host"
		}
		if u.Scheme == "http" && !isLoopback(u.Hostname()) {
			return "http is only allowed for loopback redirect URIs; use https or the app's own scheme"
		}
	case "javascript", "data", "vbscript", "file", "blob", "about", "ws", "wss":
		return fmt.Sprintf("scheme %q cannot be an app redirect URI", u.Scheme)
	default:
		if u.Opaque == "" && u.Path == "" && u.Host == "" {
			return "must have a path after the scheme, such as com.example.app:/callback"
		}
	}
	return ""
}

// checkOrigin checks scheme://host[:port] with at most a trailing "/".
func checkOrigin(s string, allowHTTP bool) string {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return "must be an absolute http(s) origin such as https://app.example.com"
	}
	if u.User != nil {
		return "must not contain user info"
	}
	if (u.Path != "" && u.Path != "/") || strings.ContainsAny(s, "?#") {
		return "must be an origin (scheme://host[:port]) without path, query or fragment"
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "has an invalid port"
		}
	}
	if u.Scheme == "http" && !allowHTTP && !isLoopback(u.Hostname()) {
		return "must use https; http is only for loopback hosts, or with server.allow_insecure_http for development"
	}
	return ""
}

const msgNotHTTPURL = "must be an absolute http(s) URL"

// checkHTTPURL checks an issuer or upstream: an absolute http(s) URL that may
// have a path but no credentials, query or fragment.
func checkHTTPURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return msgNotHTTPURL
	}
	if u.User != nil {
		return "must not contain credentials"
	}
	if strings.ContainsAny(s, "?#") {
		return "must not have a query or fragment"
	}
	return ""
}

// checkListen checks a listen address: host:port, host optional, port numeric.
func checkListen(s string) string {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return "must be host:port, such as 127.0.0.1:8080"
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "must have a numeric port (0-65535)"
	}
	return ""
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// isToken reports whether s is an RFC 9110 token, which is what HTTP methods
// and cookie names are.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// isScopeToken reports whether s is one OAuth 2.0 scope-token (RFC 6749 3.3).
func isScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

func hasSpaceOrControl(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0
}

// sortedKeys makes map iteration, and so every message and listing, deterministic.
func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
