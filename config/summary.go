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
// password). Call it on a loaded (defaulted) Config.
func (c *Config) Summary() string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }

	line("config %s", c.Path)
	line("server    %s  listen %s%s", c.Server.PublicURL, c.Server.Listen, prefixed("  admin ", c.Server.AdminListen))
	line("sessions  %s  idle %s  absolute %s  refresh margin %s  cookie keys %d",
		c.storeSummary(), shortDuration(c.Sessions.IdleTimeout), shortDuration(c.Sessions.AbsoluteTimeout),
		shortDuration(c.Sessions.RefreshMargin), len(c.Sessions.CookieKeys))

	origin := strings.TrimSuffix(c.Server.PublicURL, "/")
	for i := range c.Frontends {
		f := &c.Frontends[i]
		host := f.Host
		if host == "" {
			host = "*"
		}
		line("")
		line("frontend %s (%s)  host %s  mount %s  [%s]", f.Name, f.Kind, host, f.Mount, f.Source)
		line("  oidc       %s  client_id %s  scopes %s%s", f.OIDC.Issuer, f.OIDC.ClientID, strings.Join(f.OIDC.Scopes, " "), authParams(f.OIDC.AuthParams))
		line("  login      %s%s", origin, f.MountPath("/bff/login"))
		line("  callback   %s%s", origin, f.MountPath("/bff/callback"))
		line("  logout to  %s", redirectTarget(origin, f.AfterLogout))
		line("  cookie     %s  SameSite=%s  idle %s  absolute %s", f.Cookie.Name, f.Cookie.SameSite,
			shortDuration(f.Session.IdleTimeout), shortDuration(f.Session.AbsoluteTimeout))
		line("  return_to  %s", strings.Join(f.ReturnTo, " "))
		if len(f.CORS.AllowedOrigins) > 0 {
			line("  cors       %s", strings.Join(f.CORS.AllowedOrigins, " "))
		}
		for _, r := range f.Routes {
			methods := "ANY"
			if len(r.Methods) > 0 {
				methods = strings.Join(r.Methods, ",")
			}
			strip := ""
			if r.StripPrefix {
				strip = " [strip]"
			}
			line("  route      %s %s -> %s%s token=%s%s timeout=%s", methods, f.MountPath(r.Prefix), r.Upstream, strip,
				r.Token, requireSummary(r.Require), shortDuration(r.Timeout))
		}
		for _, a := range f.Aggregates {
			line("  aggregate  GET %s timeout=%s", f.MountPath(a.Path), shortDuration(a.Timeout))
			for _, name := range sortedKeys(a.Parts) {
				p := a.Parts[name]
				req := ""
				if p.Required {
					req = " (required)"
				}
				line("    %s -> %s%s%s", name, strings.TrimSuffix(p.Upstream, "/"), p.Path, req)
			}
		}
	}
	return b.String()
}

func (c *Config) storeSummary() string {
	r := &c.Sessions.Redis
	if c.Sessions.Store != "redis" {
		return c.Sessions.Store
	}
	s := "redis"
	if r.URL != "" {
		if u, err := url.Parse(r.URL); err == nil {
			s += " " + u.Redacted()
		}
	}
	if len(r.Addrs) > 0 {
		s += " addrs " + strings.Join(r.Addrs, ",")
	}
	s += prefixed(" master ", r.MasterName)
	return s + "  prefix " + r.KeyPrefix
}

// redirectTarget shows where a path redirect lands; app URIs stay as they are.
func redirectTarget(origin, s string) string {
	if strings.HasPrefix(s, "/") {
		return origin + s
	}
	return s
}

func requireSummary(r Require) string {
	if len(r.Claims) == 0 {
		return ""
	}
	parts := make([]string, 0, len(r.Claims))
	for _, name := range sortedKeys(r.Claims) {
		parts = append(parts, name+":"+strings.Join(r.Claims[name], "|"))
	}
	return " require=" + strings.Join(parts, ",")
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
