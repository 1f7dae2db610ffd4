package config

import (
	"fmt"
	"net/url"
	"strings"
)

// Summary is the human listing `bffgate check` prints: the server, the
// session store and, per frontend, where it is mounted, its client at the
// provider, the URLs to register there, and every route and aggregate. It is
// deterministic and never shows a secret (client secrets, cookie keys, Redis
// password), nor any value that came from a variable or a file: those are
// shown as written, such as ${ISSUER_URL}. Call it on a loaded (defaulted)
// Config.
func (c *Config) Summary() string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	main := c.info(c.Path)
	sv := main.plain

	line("config %s", c.Path)
	line("server    %s  listen %s%s", sv("server.public_url", c.Server.PublicURL), sv("server.listen", c.Server.Listen),
		prefixed("  admin ", sv("server.admin_listen", c.Server.AdminListen)))
	line("sessions  %s  idle %s  absolute %s  refresh margin %s  cookie keys %d",
		c.storeSummary(), shortDuration(c.Sessions.IdleTimeout), shortDuration(c.Sessions.AbsoluteTimeout),
		shortDuration(c.Sessions.RefreshMargin), len(c.Sessions.CookieKeys))

	// Derived URLs (login, callback) are built from public_url and the mount;
	// when either came from a variable, they show its reference instead.
	origin := sv("server.public_url", strings.TrimSuffix(c.Server.PublicURL, "/"))
	for i := range c.Frontends {
		f := &c.Frontends[i]
		info, prefix := c.info(f.Source), ""
		if f.Source == c.Path {
			prefix = fmt.Sprintf("frontends[%d].", i)
		}
		fv := func(path, value string) string { return info.plain(prefix+path, value) }
		host := fv("host", f.Host)
		if host == "" {
			host = "*"
		}
		mount := fv("mount", f.Mount)
		mountPath := func(rel string) string {
			if mount != f.Mount {
				return mount + rel
			}
			return f.MountPath(rel)
		}
		params := make(map[string]string, len(f.OIDC.AuthParams))
		for k, v := range f.OIDC.AuthParams {
			params[k] = fv("oidc.auth_params."+k, v)
		}
		scopes := make([]string, len(f.OIDC.Scopes))
		for j, s := range f.OIDC.Scopes {
			scopes[j] = fv(fmt.Sprintf("oidc.scopes[%d]", j), s)
		}
		line("")
		line("frontend %s (%s)  host %s  mount %s  [%s]", fv("name", f.Name), fv("kind", f.Kind), host, mount, f.Source)
		line("  oidc       %s  client_id %s  scopes %s%s", fv("oidc.issuer", f.OIDC.Issuer), fv("oidc.client_id", f.OIDC.ClientID),
			strings.Join(scopes, " "), authParams(params))
		line("  login      %s%s", origin, mountPath("/bff/login"))
		line("  callback   %s%s", origin, mountPath("/bff/callback"))
		line("  logout to  %s", redirectTarget(origin, fv("after_logout", f.AfterLogout)))
		line("  cookie     %s  SameSite=%s  idle %s  absolute %s", fv("cookie.name", f.Cookie.Name), fv("cookie.same_site", f.Cookie.SameSite),
			shortDuration(f.Session.IdleTimeout), shortDuration(f.Session.AbsoluteTimeout))
		line("  return_to  %s", strings.Join(listed(fv, "return_to", f.ReturnTo), " "))
		if len(f.CORS.AllowedOrigins) > 0 {
			line("  cors       %s", strings.Join(listed(fv, "cors.allowed_origins", f.CORS.AllowedOrigins), " "))
		}
		for j, r := range f.Routes {
			p := fmt.Sprintf("routes[%d].", j)
			methods := "ANY"
			if len(r.Methods) > 0 {
				methods = strings.Join(listed(fv, p+"methods", r.Methods), ",")
			}
			strip := ""
			if r.StripPrefix {
				strip = " [strip]"
			}
			line("  route      %s %s -> %s%s token=%s%s%s timeout=%s", methods, mountPath(fv(p+"prefix", r.Prefix)), fv(p+"upstream", r.Upstream), strip,
				fv(p+"token", r.Token), exchangeSummary(fv, p+"exchange.", r.Token, r.Exchange), requireSummary(fv, p+"require.", r.Require), shortDuration(r.Timeout))
		}
		for j, a := range f.Aggregates {
			p := fmt.Sprintf("aggregates[%d].", j)
			line("  aggregate  GET %s timeout=%s", mountPath(fv(p+"path", a.Path)), shortDuration(a.Timeout))
			for _, name := range sortedKeys(a.Parts) {
				part, pp := a.Parts[name], p+"parts."+name+"."
				req := ""
				if part.Required {
					req = " (required)"
				}
				line("    %s -> %s%s%s", name, strings.TrimSuffix(fv(pp+"upstream", part.Upstream), "/"), fv(pp+"path", part.Path), req)
			}
		}
	}
	return b.String()
}

// exchangeSummary shows what an exchange route asks the provider for; on
// another kind of route the block is ignored (Warnings says so).
func exchangeSummary(fv func(path, value string) string, p, token string, x *Exchange) string {
	if x == nil || token != TokenExchange {
		return ""
	}
	var parts []string
	if x.Audience != "" {
		parts = append(parts, "audience="+fv(p+"audience", x.Audience))
	}
	if x.Resource != "" {
		parts = append(parts, "resource="+fv(p+"resource", x.Resource))
	}
	if len(x.Scopes) > 0 {
		parts = append(parts, "scopes="+strings.Join(listed(fv, p+"scopes", x.Scopes), ","))
	}
	return " (" + strings.Join(parts, " ") + ")"
}

// listed applies fv to each element of the list at path.
func listed(fv func(path, value string) string, path string, values []string) []string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = fv(fmt.Sprintf("%s[%d]", path, i), v)
	}
	return out
}

func (c *Config) storeSummary() string {
	r := &c.Sessions.Redis
	if c.Sessions.Store != "redis" {
		return c.Sessions.Store
	}
	main := c.info(c.Path)
	s := "redis"
	if r.URL != "" {
		if main.fromRef("sessions.redis.url") {
			// As written, with a password redacted even there:
			// "redis://:literal${X}@host" must not show "literal".
			s += " " + redactUserinfo(main.plain("sessions.redis.url", r.URL))
		} else if u, err := url.Parse(r.URL); err == nil {
			s += " " + u.Redacted()
		}
	}
	if len(r.Addrs) > 0 {
		s += " addrs " + strings.Join(listed(main.plain, "sessions.redis.addrs", r.Addrs), ",")
	}
	s += prefixed(" master ", main.plain("sessions.redis.master_name", r.MasterName))
	return s + "  prefix " + main.plain("sessions.redis.key_prefix", r.KeyPrefix)
}

// redactUserinfo masks the password in a URL as written, which url.Parse
// may refuse because of the references in it.
func redactUserinfo(raw string) string {
	i, j := strings.Index(raw, "://"), strings.LastIndex(raw, "@")
	if i < 0 || j < i {
		return raw
	}
	user, _, ok := strings.Cut(raw[i+3:j], ":")
	if !ok {
		return raw
	}
	return raw[:i+3] + user + ":xxxxx" + raw[j:]
}

// redirectTarget shows where a path redirect lands; app URIs stay as they are.
func redirectTarget(origin, s string) string {
	if strings.HasPrefix(s, "/") {
		return origin + s
	}
	return s
}

// requireSummary shows a route's require: claims as require=name:a|b,...
// and the step-up checks apart, as acr= and max_age=, so that a claim
// named acr is not mistaken for require.acr.
func requireSummary(fv func(path, value string) string, prefix string, r Require) string {
	var s string
	if len(r.Claims) > 0 {
		parts := make([]string, 0, len(r.Claims))
		for _, name := range sortedKeys(r.Claims) {
			parts = append(parts, name+":"+strings.Join(listed(fv, prefix+"claims."+name, r.Claims[name]), "|"))
		}
		s = " require=" + strings.Join(parts, ",")
	}
	if len(r.ACR) > 0 {
		s += " acr=" + strings.Join(listed(fv, prefix+"acr", r.ACR), "|")
	}
	if r.MaxAge > 0 {
		s += " max_age=" + shortDuration(r.MaxAge)
	}
	return s
}

func authParams(m map[string]string) string {
	if len(m) == 0 {
		return ""
	}
	parts := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		parts = append(parts, k+"="+m[k])
	}
	return "  auth_params " + strings.Join(parts, " ")
}

func prefixed(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}
