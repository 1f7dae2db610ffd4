package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

const msgNoFrontends = "no frontend configured: add *.yaml files to frontends_dir or list frontends inline"

var (
	nameRE = regexp.MustCompile(`^[a-z0-9-]+$`)
	partRE = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)
)

// reservedAuthParams are the authorize parameters the gateway sets itself;
// letting auth_params replace them would undo PKCE, state or nonce.
var reservedAuthParams = []string{
	"client_id", "code_challenge", "code_challenge_method", "nonce", "redirect_uri",
	"request", "request_uri", "response_mode", "response_type", "scope", "state",
}

// Validate reports every problem in c, each an *Error naming its file and key
// path, joined with errors.Join; nil when there is none. It is pure and fast
// (no network, no files), so a reload can run it before swapping anything in.
// It expects ApplyDefaults to have run, as Load does.
func (c *Config) Validate() error {
	ps := c.problems()
	errs := make([]error, len(ps))
	for i, p := range ps {
		errs[i] = p
	}
	return errors.Join(errs...)
}

func (c *Config) problems() []*Error {
	v := &validator{c: c}
	v.server()
	v.sessions()
	v.frontends()
	return v.errs
}

type validator struct {
	c    *Config
	errs []*Error
}

func (v *validator) add(file, path, format string, args ...any) {
	v.errs = append(v.errs, &Error{File: file, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// where locates one frontend's keys: its file and, for a frontend written
// inline in the main config, the "frontends[i]." its keys are under there.
type where struct {
	v      *validator
	file   string
	prefix string
}

func (w where) errorf(path, format string, args ...any) {
	w.v.add(w.file, w.prefix+path, format, args...)
}

// String names the frontend's location in messages about another frontend.
func (w where) String() string {
	if w.prefix == "" {
		return w.file
	}
	return strings.TrimSpace(w.file + " " + strings.TrimSuffix(w.prefix, "."))
}

func (v *validator) server() {
	s, file := &v.c.Server, v.c.Path
	if s.PublicURL == "" {
		v.add(file, "server.public_url", "is required: the external origin, such as https://app.example.com")
	} else if msg := checkOrigin(s.PublicURL, s.AllowInsecureHTTP); msg != "" {
		v.add(file, "server.public_url", "%s", msg)
	}
	if msg := checkListen(s.Listen); msg != "" {
		v.add(file, "server.listen", "%s", msg)
	}
	if s.AdminListen != "" {
		if msg := checkListen(s.AdminListen); msg != "" {
			v.add(file, "server.admin_listen", "%s", msg)
		} else if s.AdminListen == s.Listen && !strings.HasSuffix(s.Listen, ":0") {
			v.add(file, "server.admin_listen", "must differ from server.listen (leave it empty to serve both there)")
		}
	}
	for i, p := range s.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err == nil {
			continue
		}
		if _, err := netip.ParseAddr(p); err == nil {
			continue
		}
		v.add(file, fmt.Sprintf("server.trusted_proxies[%d]", i), "%q is not an IP address or CIDR such as 10.0.0.0/8", p)
	}
	v.positive(file, "server.shutdown_timeout", s.ShutdownTimeout)
	if s.MaxBodyBytes <= 0 {
		v.add(file, "server.max_body_bytes", "must be positive")
	}
}

func (v *validator) sessions() {
	ss, file := &v.c.Sessions, v.c.Path
	switch ss.Store {
	case "memory":
	case "redis":
		v.redis()
		if len(ss.CookieKeys) == 0 {
			v.add(file, "sessions.cookie_keys", "at least one key pair is required with the redis store: every instance must share the keys to open each other's cookies")
		}
	default:
		v.add(file, "sessions.store", "must be memory or redis, not %q", ss.Store)
	}
	for i, k := range ss.CookieKeys {
		p := fmt.Sprintf("sessions.cookie_keys[%d]", i)
		if _, err := decodeKey(k.Hash, 32, 64); err != nil {
			v.add(file, p+".hash", "%v", err)
		}
		if _, err := decodeKey(k.Block, 32); err != nil {
			v.add(file, p+".block", "%v", err)
		}
	}
	v.positive(file, "sessions.idle_timeout", ss.IdleTimeout)
	v.positive(file, "sessions.absolute_timeout", ss.AbsoluteTimeout)
	if ss.IdleTimeout > ss.AbsoluteTimeout && ss.AbsoluteTimeout > 0 {
		v.add(file, "sessions.idle_timeout", "(%s) must not exceed sessions.absolute_timeout (%s)", shortDuration(ss.IdleTimeout), shortDuration(ss.AbsoluteTimeout))
	}
	if ss.RefreshMargin < 0 {
		v.add(file, "sessions.refresh_margin", "must not be negative")
	}
}

func (v *validator) redis() {
	r, file := &v.c.Sessions.Redis, v.c.Path
	switch {
	case r.URL == "" && len(r.Addrs) == 0:
		v.add(file, "sessions.redis.url", "is required with the redis store (or sessions.redis.addrs for a cluster or Sentinel)")
	case r.URL != "" && len(r.Addrs) > 0:
		v.add(file, "sessions.redis.addrs", "cannot be combined with sessions.redis.url: set one or the other")
	}
	if r.URL != "" {
		// Never quote the URL: it may carry the password.
		u, err := url.Parse(r.URL)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			v.add(file, "sessions.redis.url", "must be a redis:// or rediss:// URL with a host")
		} else if db := strings.TrimPrefix(u.Path, "/"); db != "" {
			if n, err := strconv.Atoi(db); err != nil || n < 0 {
				v.add(file, "sessions.redis.url", "the path must be a database number, such as /0")
			}
		}
	}
	for i, a := range r.Addrs {
		if host, _, err := net.SplitHostPort(a); err != nil || host == "" || checkListen(a) != "" {
			v.add(file, fmt.Sprintf("sessions.redis.addrs[%d]", i), "%q is not host:port, such as redis-0.redis:6379", a)
		}
	}
	if r.MasterName != "" && len(r.Addrs) == 0 {
		v.add(file, "sessions.redis.master_name", "needs sessions.redis.addrs: the Sentinel addresses")
	}
	if r.DB < 0 {
		v.add(file, "sessions.redis.db", "must not be negative")
	}
	v.positive(file, "sessions.redis.dial_timeout", r.DialTimeout)
	v.positive(file, "sessions.redis.read_timeout", r.ReadTimeout)
	v.positive(file, "sessions.redis.write_timeout", r.WriteTimeout)
	if r.PoolSize <= 0 {
		v.add(file, "sessions.redis.pool_size", "must be positive")
	}
	if r.MinIdleConns < 0 {
		v.add(file, "sessions.redis.min_idle_conns", "must not be negative")
	}
}

func (v *validator) positive(file, path string, d time.Duration) {
	if d <= 0 {
		v.add(file, path, "must be positive")
	}
}

func (v *validator) frontends() {
	c := v.c
	if len(c.Frontends) == 0 {
		v.add(c.Path, "frontends", msgNoFrontends)
		return
	}
	ws := make([]where, len(c.Frontends))
	for i := range c.Frontends {
		f := &c.Frontends[i]
		ws[i] = where{v: v, file: f.Source}
		if f.Source == "" {
			ws[i].file = c.Path
		}
		if ws[i].file == c.Path {
			ws[i].prefix = fmt.Sprintf("frontends[%d].", i)
		}
		v.frontend(ws[i], f)
	}
	v.acrossFrontends(ws)
}

func (v *validator) frontend(w where, f *Frontend) {
	c := v.c
	switch {
	case f.Name == "":
		w.errorf("name", "is required")
	case !nameRE.MatchString(f.Name):
		w.errorf("name", "%q must match [a-z0-9-]+", f.Name)
	}
	mobile := f.Kind == KindMobile
	if f.Kind != KindSPA && !mobile {
		w.errorf("kind", "must be spa or mobile, not %q", f.Kind)
	}
	if f.Mount == "" {
		w.errorf("mount", "is required: the path prefix this frontend owns, such as /web (or /)")
	} else if msg := checkCleanPath(f.Mount); msg != "" {
		w.errorf("mount", "%s", msg)
	}
	if f.Host != "" {
		if u, err := url.Parse("http://" + f.Host); err != nil || u.Host != f.Host || u.Hostname() == "" {
			w.errorf("host", "must be a host name such as app.example.com, without scheme or path")
		}
	}

	v.oidc(w, &f.OIDC)

	switch f.Cookie.SameSite {
	case "strict", "lax":
	default:
		w.errorf("cookie.same_site", "must be strict or lax, not %q", f.Cookie.SameSite)
	}
	name := f.Cookie.Name
	lower := strings.ToLower(name)
	switch {
	case !isToken(name):
		w.errorf("cookie.name", "%q is not a valid cookie name", name)
	case strings.HasPrefix(lower, "__host-") && !c.Secure():
		w.errorf("cookie.name", "the __Host- prefix needs an https server.public_url")
	case strings.HasPrefix(lower, "__secure-") && !c.Secure():
		w.errorf("cookie.name", "the __Secure- prefix needs an https server.public_url")
	}

	// An override equal to the global value was filled in by ApplyDefaults;
	// a problem with it is reported once, under sessions.
	ss := &c.Sessions
	if f.Session.IdleTimeout != ss.IdleTimeout {
		v.positive(w.file, w.prefix+"session.idle_timeout", f.Session.IdleTimeout)
	}
	if f.Session.AbsoluteTimeout != ss.AbsoluteTimeout {
		v.positive(w.file, w.prefix+"session.absolute_timeout", f.Session.AbsoluteTimeout)
	}
	if f.Session != (SessionOverrides{ss.IdleTimeout, ss.AbsoluteTimeout}) &&
		f.Session.AbsoluteTimeout > 0 && f.Session.IdleTimeout > f.Session.AbsoluteTimeout {
		w.errorf("session.idle_timeout", "(%s) must not exceed session.absolute_timeout (%s)", shortDuration(f.Session.IdleTimeout), shortDuration(f.Session.AbsoluteTimeout))
	}

	// Values that ApplyDefaults derived from a bad mount are reported once, as
	// the mount.
	derived := ""
	if checkCleanPath(f.Mount) != "" {
		derived = f.MountPath("/")
	}
	for _, kv := range [...]struct{ key, val string }{{"after_login", f.AfterLogin}, {"after_logout", f.AfterLogout}} {
		if kv.val == derived {
			continue
		}
		if msg := checkRedirect(kv.val, mobile); msg != "" {
			w.errorf(kv.key, "%s", msg)
		}
	}
	if mobile && len(f.ReturnTo) == 0 {
		w.errorf("return_to", "a mobile frontend must list at least one app redirect URI, such as com.example.app:/callback")
	}
	for i, r := range f.ReturnTo {
		var msg string
		switch {
		case r == derived:
		case mobile:
			msg = checkAppURI(r)
		default:
			msg = checkLocalPath(r)
		}
		if msg != "" {
			w.errorf(fmt.Sprintf("return_to[%d]", i), "%s", msg)
		}
	}

	for i, o := range f.CORS.AllowedOrigins {
		msg := ""
		if o == "*" {
			msg = `"*" is not allowed: credentialed requests need each origin listed`
		} else {
			msg = checkOrigin(o, c.Server.AllowInsecureHTTP)
		}
		if msg != "" {
			w.errorf(fmt.Sprintf("cors.allowed_origins[%d]", i), "%s", msg)
		}
	}

	v.routes(w, f)
	v.aggregates(w, f)
}

func (v *validator) oidc(w where, o *OIDC) {
	if o.Issuer == "" {
		w.errorf("oidc.issuer", "is required")
	} else if msg := checkHTTPURL(o.Issuer); msg != "" {
		w.errorf("oidc.issuer", "%s", msg)
	} else if u, _ := url.Parse(o.Issuer); u.Scheme == "http" && !v.c.Server.AllowInsecureHTTP && !isLoopback(u.Hostname()) {
		w.errorf("oidc.issuer", "must use https; http is only for loopback hosts, or with server.allow_insecure_http for development")
	}
	if o.ClientID == "" {
		w.errorf("oidc.client_id", "is required")
	}
	if o.ClientSecret == "" {
		w.errorf("oidc.client_secret", "is required: every BFF is a confidential client")
	}
	if !slices.Contains(o.Scopes, "openid") {
		w.errorf("oidc.scopes", `must include "openid"`)
	}
	for i, s := range o.Scopes {
		if !isScopeToken(s) {
			w.errorf(fmt.Sprintf("oidc.scopes[%d]", i), "%q is not a single scope (no spaces or quotes)", s)
		}
	}
	for _, k := range sortedKeys(o.AuthParams) {
		switch {
		case k == "":
			w.errorf("oidc.auth_params", "has an empty parameter name")
		case slices.Contains(reservedAuthParams, k):
			w.errorf("oidc.auth_params."+k, "is set by the gateway and cannot be overridden")
		}
	}
}

// mountedPath checks the path at key (a route prefix or an aggregate path):
// required, clean, clear of the gateway's /bff endpoints, and not already
// taken in seen, which maps each earlier path to its key. It reports whether
// the path passed and was added to seen.
func mountedPath(w where, f *Frontend, key, path string, seen map[string]string) bool {
	switch {
	case path == "":
		w.errorf(key, "is required")
	case checkCleanPath(path) != "":
		w.errorf(key, "%s", checkCleanPath(path))
	case under(path, "/bff"):
		w.errorf(key, "%s collides with the gateway's own endpoints under %s", path, f.MountPath("/bff"))
	case seen[path] != "":
		w.errorf(key, "%s is already %s", path, seen[path])
	default:
		seen[path] = key
		return true
	}
	return false
}

func (v *validator) routes(w where, f *Frontend) {
	seen := map[string]string{}
	for i, r := range f.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		mountedPath(w, f, p+".prefix", r.Prefix, seen)
		if r.Upstream == "" {
			w.errorf(p+".upstream", "is required")
		} else if msg := checkHTTPURL(r.Upstream); msg != "" {
			w.errorf(p+".upstream", "%s", msg)
		}
		switch r.Token {
		case TokenUser, TokenClient, TokenNone:
		default:
			w.errorf(p+".token", "must be user, client or none, not %q", r.Token)
		}
		for j, m := range r.Methods {
			if !isToken(m) {
				w.errorf(fmt.Sprintf("%s.methods[%d]", p, j), "%q is not an HTTP method", m)
			}
		}
		if r.Timeout <= 0 {
			w.errorf(p+".timeout", "must be positive")
		}
		if r.Token == TokenNone && len(r.Require.Claims) > 0 {
			w.errorf(p+".require", "cannot be combined with token: none (an anonymous route has no session to check)")
			continue
		}
		for _, name := range sortedKeys(r.Require.Claims) {
			switch {
			case name == "":
				w.errorf(p+".require.claims", "has an empty claim name")
			case slices.Contains(strings.Split(name, "."), ""):
				w.errorf(p+".require.claims."+name, "has an empty segment in its dotted name")
			case len(r.Require.Claims[name]) == 0:
				w.errorf(p+".require.claims."+name, "needs at least one accepted value")
			}
		}
	}
}

func (v *validator) aggregates(w where, f *Frontend) {
	seen := map[string]string{}
	for i, a := range f.Aggregates {
		p := fmt.Sprintf("aggregates[%d]", i)
		if mountedPath(w, f, p+".path", a.Path, seen) {
			// A catch-all "/" route (the SPA's assets) leaves room for
			// aggregates; any other route owns everything under its prefix.
			for j, r := range f.Routes {
				if r.Prefix == a.Path || (r.Prefix != "/" && under(a.Path, r.Prefix)) {
					w.errorf(p+".path", "%s collides with routes[%d].prefix %s", a.Path, j, r.Prefix)
					break
				}
			}
		}
		if a.Timeout <= 0 {
			w.errorf(p+".timeout", "must be positive")
		}
		if len(a.Parts) == 0 {
			w.errorf(p+".parts", "needs at least one part")
		}
		for _, name := range sortedKeys(a.Parts) {
			pp, part := p+".parts."+name, a.Parts[name]
			if !partRE.MatchString(name) {
				w.errorf(pp, "part name must match [a-zA-Z0-9_-]+")
			}
			if part.Upstream == "" {
				w.errorf(pp+".upstream", "is required")
			} else if msg := checkHTTPURL(part.Upstream); msg != "" {
				w.errorf(pp+".upstream", "%s", msg)
			}
			switch {
			case part.Path == "":
				w.errorf(pp+".path", "is required")
			case !strings.HasPrefix(part.Path, "/") || strings.HasPrefix(part.Path, "//"):
				w.errorf(pp+".path", `must be a path starting with "/" (not "//")`)
			case strings.ContainsAny(part.Path, "\\#") || hasSpaceOrControl(part.Path):
				w.errorf(pp+".path", `must not contain "\", "#", spaces or control characters`)
			}
		}
	}
}

// acrossFrontends checks what no single frontend can: unique names, one
// frontend per host and mount, distinct cookies, and nested mounts that would
// make part of another frontend unreachable.
func (v *validator) acrossFrontends(ws []where) {
	fs := v.c.Frontends
	dupName := make([]bool, len(fs))
	for i := range fs {
		for j := range i {
			if fs[i].Name != "" && fs[i].Name == fs[j].Name {
				ws[i].errorf("name", "%q is already used by %s", fs[i].Name, ws[j])
				dupName[i] = true
				break
			}
		}
	}
	for i := range fs {
		f := &fs[i]
		for j := range i {
			g := &fs[j]
			if f.Host == g.Host && f.Mount == g.Mount && f.Mount != "" {
				ws[i].errorf("mount", "%s%s is already mounted by frontend %q (%s)", f.Mount, onHost(f.Host), g.Name, ws[j])
				break
			}
		}
		for j := range i {
			g := &fs[j]
			if !dupName[i] && f.Cookie.Name == g.Cookie.Name && (f.Host == g.Host || f.Host == "" || g.Host == "") {
				ws[i].errorf("cookie.name", "%q is already the cookie of frontend %q (%s)", f.Cookie.Name, g.Name, ws[j])
				break
			}
		}
	}
	for i := range fs {
		for j := range fs {
			outer, inner := &fs[i], &fs[j]
			if i == j || outer.Host != inner.Host || outer.Mount == inner.Mount ||
				checkCleanPath(outer.Mount) != "" || checkCleanPath(inner.Mount) != "" || !under(inner.Mount, outer.Mount) {
				continue
			}
			if bff := outer.MountPath("/bff"); under(inner.Mount, bff) {
				ws[j].errorf("mount", "%s is inside %s, the gateway endpoints of frontend %q (%s)", inner.Mount, bff, outer.Name, ws[i])
			}
			for k, r := range outer.Routes {
				if full := outer.MountPath(r.Prefix); r.Prefix != "" && under(full, inner.Mount) {
					ws[i].errorf(fmt.Sprintf("routes[%d].prefix", k), "%s is unreachable: frontend %q (%s) is mounted at %s", full, inner.Name, ws[j], inner.Mount)
				}
			}
			for k, a := range outer.Aggregates {
				if full := outer.MountPath(a.Path); a.Path != "" && under(full, inner.Mount) {
					ws[i].errorf(fmt.Sprintf("aggregates[%d].path", k), "%s is unreachable: frontend %q (%s) is mounted at %s", full, inner.Name, ws[j], inner.Mount)
				}
			}
		}
	}
}

func onHost(host string) string {
	if host == "" {
		return ""
	}
	return fmt.Sprintf(" on host %s", host)
}

// under reports whether path p is prefix or below it, on whole segments.
func under(p, prefix string) bool {
	return prefix == "/" || p == prefix || strings.HasPrefix(p, prefix+"/")
}

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

// checkHTTPURL checks an issuer or upstream: an absolute http(s) URL that may
// have a path but no credentials, query or fragment.
func checkHTTPURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return "must be an absolute http(s) URL"
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

// Decode returns the key pair's bytes, checking their sizes: hash 32 or 64
// bytes, block 32 (AES-256). Both accept standard or URL base64, padded or
// not, so keys made by `openssl rand -base64 32` work as they are.
func (k CookieKey) Decode() (hash, block []byte, err error) {
	hash, herr := decodeKey(k.Hash, 32, 64)
	block, berr := decodeKey(k.Block, 32)
	if herr != nil || berr != nil {
		return nil, nil, errors.Join(prefixErr("hash", herr), prefixErr("block", berr))
	}
	return hash, block, nil
}

func prefixErr(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// decodeKey decodes one base64 key and checks its length. Its errors never
// include the key.
func decodeKey(s string, sizes ...int) ([]byte, error) {
	if s == "" {
		return nil, errors.New("is required")
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		b, err := enc.DecodeString(s)
		if err != nil {
			continue
		}
		if !slices.Contains(sizes, len(b)) {
			want := strconv.Itoa(sizes[0])
			if len(sizes) > 1 {
				want += " or " + strconv.Itoa(sizes[1])
			}
			return nil, fmt.Errorf("decodes to %d bytes; want %s (make one with: openssl rand -base64 %d)", len(b), want, sizes[0])
		}
		return b, nil
	}
	return nil, errors.New("is not valid base64 (standard or URL alphabet)")
}

// shortDuration prints 30m rather than 30m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
