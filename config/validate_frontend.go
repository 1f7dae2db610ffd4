package config

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

const msgNoFrontends = "no frontend configured: add *.yaml files to frontends_dir or list frontends inline"

var nameRE = regexp.MustCompile(`^[a-z0-9-]+$`)

// reservedAuthParams are the authorize parameters the gateway sets itself;
// letting auth_params replace them would undo PKCE, state, the nonce (and
// with it the 64-character limit of profile fapi2) or the code's DPoP binding.
var reservedAuthParams = []string{
	"client_id", "code_challenge", "code_challenge_method", "dpop_jkt", "nonce", "redirect_uri",
	"request", "request_uri", "response_mode", "response_type", "scope", "state",
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
		w.errorf("name", "%s must match [a-z0-9-]+", w.q("name", f.Name))
	}
	mobile := f.Kind == KindMobile
	if f.Kind != KindSPA && !mobile {
		w.errorf("kind", "must be spa or mobile, not %s", w.q("kind", f.Kind))
	}
	if f.Mount == "" {
		w.errorf("mount", "is required: the path prefix this frontend owns, such as /web (or /)")
	} else if msg := checkCleanPath(f.Mount); msg != "" {
		w.errorf("mount", "%s", msg)
	}
	if f.Host != "" {
		u, err := url.Parse("http://" + f.Host)
		switch {
		case err != nil || u.Host != f.Host || u.Hostname() == "":
			w.errorf("host", "must be a host name such as app.example.com, without scheme or path")
		case u.Port() == "80" || u.Port() == "443":
			// A browser leaves the scheme's default port out of Host.
			w.errorf("host", "has the default port %s, which browsers leave out of the Host header, so it would never match; write %s", u.Port(), u.Hostname())
		case u.Port() != "":
			if n, err := strconv.Atoi(u.Port()); err != nil || n < 1 || n > 65535 {
				w.errorf("host", "has port %s; a port is 1 to 65535", u.Port())
			}
		}
	}

	v.oidc(w, &f.OIDC)
	v.clientAuth(w, f)

	switch f.Cookie.SameSite {
	case "strict", "lax":
	default:
		w.errorf("cookie.same_site", "must be strict or lax, not %s", w.q("cookie.same_site", f.Cookie.SameSite))
	}
	name := f.Cookie.Name
	lower := strings.ToLower(name)
	switch {
	case !isToken(name):
		w.errorf("cookie.name", "%s is not a valid cookie name", w.q("cookie.name", name))
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
	if !w.httpURL("oidc.issuer", o.Issuer) {
		// reported
	} else if u, _ := url.Parse(o.Issuer); u.Scheme == "http" && !v.c.Server.AllowInsecureHTTP && !isLoopback(u.Hostname()) {
		w.errorf("oidc.issuer", "must use https; http is only for loopback hosts, or with server.allow_insecure_http for development")
	}
	if o.ClientID == "" {
		w.errorf("oidc.client_id", "is required")
	}
	if o.ClientSecret == "" && o.ClientAuth != PrivateKeyJWT {
		w.errorf("oidc.client_secret", "is required: every BFF is a confidential client")
	}
	if !slices.Contains(o.Scopes, "openid") {
		w.errorf("oidc.scopes", `must include "openid"`)
	}
	for i, s := range o.Scopes {
		if !isScopeToken(s) {
			p := fmt.Sprintf("oidc.scopes[%d]", i)
			w.errorf(p, "%s is not a single scope (no spaces or quotes)", w.q(p, s))
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
