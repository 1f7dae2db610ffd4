package config

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// acrossFrontends checks what no single frontend can: unique names, one
// frontend per host and mount, distinct cookies, and nested mounts that would
// make part of another frontend unreachable.
func (v *validator) acrossFrontends(ws []where) {
	fs := v.c.Frontends
	dupName := make([]bool, len(fs))
	for i := range fs {
		for j := range i {
			if fs[i].Name != "" && fs[i].Name == fs[j].Name {
				ws[i].errorf("name", "%s is already used by %s", ws[i].q("name", fs[i].Name), ws[j])
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
			// Browsers keep cookies per host name, whatever the port.
			if !dupName[i] && f.Cookie.Name == g.Cookie.Name && (hostOnly(f.Host) == hostOnly(g.Host) || f.Host == "" || g.Host == "") {
				ws[i].errorf("cookie.name", "%s is already the cookie of frontend %q (%s)", ws[i].q("cookie.name", f.Cookie.Name), g.Name, ws[j])
				break
			}
		}
	}
	v.hostShadows(ws)
	for i := range fs {
		for j := range fs {
			outer, inner := &fs[i], &fs[j]
			if i == j || !hostsOverlap(outer.Host, inner.Host) || outer.Mount == inner.Mount ||
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

// hostShadows refuses a frontend bound to a host whose mount shadows a
// host-agnostic frontend's mount (SPEC section 4, issue 8 item 11). The
// router tries host-bound frontends first, so on that host the bound one
// takes over the other's requests: with host set to public_url's host and
// another team's mount, a team's file could capture that team's logins and
// API calls. A host-agnostic frontend is served on every host, so this holds
// on any host. A bound mount inside an agnostic one (a shop at /shop on its
// own host, under an agnostic "/") only takes a part; that is refused when the
// part holds one of the agnostic frontend's routes, aggregates or endpoints,
// as for nested mounts on one host.
func (v *validator) hostShadows(ws []where) {
	fs := v.c.Frontends
	publicHost := ""
	if u, err := url.Parse(v.c.Server.PublicURL); err == nil {
		publicHost = strings.ToLower(u.Hostname())
	}
	for i := range fs {
		f := &fs[i]
		if f.Host == "" || checkCleanPath(f.Mount) != "" {
			continue
		}
		public := ""
		if hostOnly(f.Host) == publicHost {
			public = " (public_url's host)"
		}
		for j := range fs {
			g := &fs[j]
			if g.Host != "" || checkCleanPath(g.Mount) != "" {
				continue
			}
			switch {
			case under(g.Mount, f.Mount):
				ws[i].errorf("mount", "%s on host %s%s shadows frontend %q (%s), mounted at %s on every host: host-bound frontends win, so this one would take over its requests there; choose another mount, or give %q a host too (such as public_url's)",
					f.Mount, f.Host, public, g.Name, ws[j], g.Mount, g.Name)
			case under(f.Mount, g.Mount):
				if taken := takenPaths(g, f.Mount); len(taken) > 0 {
					ws[i].errorf("mount", "%s on host %s%s shadows %s of frontend %q (%s) there: host-bound frontends win; choose another mount",
						f.Mount, f.Host, public, strings.Join(taken, ", "), g.Name, ws[j])
				}
			}
		}
	}
}

// takenPaths lists what of frontend g a mount nested in its own takes:
// g's endpoints, routes and aggregates under it.
func takenPaths(g *Frontend, mount string) []string {
	var taken []string
	if bff := g.MountPath("/bff"); under(mount, bff) || under(bff, mount) {
		taken = append(taken, "its endpoints "+bff)
	}
	for _, r := range g.Routes {
		if full := g.MountPath(r.Prefix); r.Prefix != "" && r.Prefix != "/" && under(full, mount) {
			taken = append(taken, "route "+full)
		}
	}
	for _, a := range g.Aggregates {
		if full := g.MountPath(a.Path); a.Path != "" && under(full, mount) {
			taken = append(taken, "aggregate "+full)
		}
	}
	return taken
}

// hostOnly drops a port from a host key.
func hostOnly(h string) string {
	name, _ := splitHost(h)
	return name
}

// splitHost splits a host key into its name (IPv6 without brackets) and its
// port, "" when it has none.
func splitHost(h string) (name, port string) {
	if host, p, err := net.SplitHostPort(h); err == nil {
		return host, p
	}
	return strings.Trim(h, "[]"), ""
}

// hostsOverlap reports whether one request can match frontends bound to
// hosts a and b (both set, or both host-agnostic): the same name, and the
// same port or none on one of them, since a host without a port matches the
// name on any port. The router then picks between them by mount alone, as
// on one host.
func hostsOverlap(a, b string) bool {
	if a == "" || b == "" {
		return a == b
	}
	an, ap := splitHost(a)
	bn, bp := splitHost(b)
	return an == bn && (ap == bp || ap == "" || bp == "")
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

// frontendEnv checks the gateway file's frontend_env: variable names, and
// none that the gateway file itself uses for cookie keys, which would hand
// them to every frontend team.
func (v *validator) frontendEnv() {
	file := v.c.Path
	info := v.c.info(file)
	for i, name := range v.c.FrontendEnv {
		p := fmt.Sprintf("frontend_env[%d]", i)
		if !isEnvName(name) {
			v.add(file, p, "%s is not an environment variable name", v.q(file, p, name))
			continue
		}
		if info == nil {
			continue
		}
		for k := range v.c.Sessions.CookieKeys {
			for _, part := range []string{"hash", "block"} {
				kp := fmt.Sprintf("sessions.cookie_keys[%d].%s", k, part)
				if x, ok := info.expanded[kp]; ok && (strings.Contains(x.raw, "${"+name+"}") || strings.Contains(x.raw, "${"+name+":-")) {
					v.add(file, p, "%s is used by %s: listing it would let every frontend file read the cookie keys", name, kp)
				}
			}
		}
	}
}
