package config

import (
	"fmt"
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
			if !dupName[i] && f.Cookie.Name == g.Cookie.Name && (f.Host == g.Host || f.Host == "" || g.Host == "") {
				ws[i].errorf("cookie.name", "%s is already the cookie of frontend %q (%s)", ws[i].q("cookie.name", f.Cookie.Name), g.Name, ws[j])
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
