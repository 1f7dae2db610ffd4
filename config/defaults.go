package config

import (
	"net/url"
	"runtime"
	"strings"
	"time"
)

// Defaults; the scopes are a function so that no two Configs share a slice.
const (
	defaultListen           = "127.0.0.1:8080"
	defaultShutdownTimeout  = 20 * time.Second
	defaultMaxBodyBytes     = 10 << 20
	defaultStore            = "memory"
	defaultKeyPrefix        = "bffgate:"
	defaultIdleTimeout      = 30 * time.Minute
	defaultAbsoluteTimeout  = 12 * time.Hour
	defaultRefreshMargin    = 60 * time.Second
	defaultProviderTimeout  = 30 * time.Second
	defaultRouteTimeout     = 30 * time.Second
	defaultAggregateTimeout = 10 * time.Second
)

func defaultScopes() []string { return []string{"openid", "profile", "email", "offline_access"} }

// ApplyDefaults fills every zero field that has a default and normalises a few
// spellings (a trailing "/" on public_url, mounts and CORS origins; lower-case
// hosts; upper-case methods). It is idempotent, and leaves invalid values for
// Validate to report. Zero durations take the default, so a zero
// refresh_margin cannot be asked for.
func (c *Config) ApplyDefaults() {
	s := &c.Server
	setString(&s.Listen, defaultListen)
	s.PublicURL = trimOriginSlash(s.PublicURL)
	setDuration(&s.ShutdownTimeout, defaultShutdownTimeout)
	if s.MaxBodyBytes == 0 {
		s.MaxBodyBytes = defaultMaxBodyBytes
	}
	setString(&s.LogLevel, "info")
	if s.Tracing.SampleRatio == nil {
		one := 1.0
		s.Tracing.SampleRatio = &one
	}

	ss := &c.Sessions
	setString(&ss.Store, defaultStore)
	r := &ss.Redis
	setString(&r.KeyPrefix, defaultKeyPrefix)
	setDuration(&r.DialTimeout, time.Second)
	setDuration(&r.ReadTimeout, 500*time.Millisecond)
	setDuration(&r.WriteTimeout, 500*time.Millisecond)
	if r.PoolSize == 0 {
		r.PoolSize = 10 * runtime.NumCPU()
	}
	setDuration(&ss.IdleTimeout, defaultIdleTimeout)
	setDuration(&ss.AbsoluteTimeout, defaultAbsoluteTimeout)
	setDuration(&ss.RefreshMargin, defaultRefreshMargin)
	setDuration(&ss.ProviderTimeout, defaultProviderTimeout)

	for i := range c.Frontends {
		c.frontendDefaults(&c.Frontends[i])
	}
}

func (c *Config) frontendDefaults(f *Frontend) {
	setString(&f.Kind, KindSPA)
	if len(f.Mount) > 1 && strings.HasSuffix(f.Mount, "/") {
		f.Mount = f.Mount[:len(f.Mount)-1]
	}
	f.Host = strings.ToLower(f.Host)

	if len(f.OIDC.Scopes) == 0 {
		f.OIDC.Scopes = defaultScopes()
	}
	c.oidcDefaults(f)
	setString(&f.Cookie.SameSite, "strict")
	if f.Cookie.Name == "" {
		if c.Secure() {
			f.Cookie.Name = "__Host-bff-" + f.Name
		} else {
			f.Cookie.Name = "bff-" + f.Name
		}
	}
	setDuration(&f.Session.IdleTimeout, c.Sessions.IdleTimeout)
	setDuration(&f.Session.AbsoluteTimeout, c.Sessions.AbsoluteTimeout)

	setString(&f.AfterLogin, f.MountPath("/"))
	setString(&f.AfterLogout, f.MountPath("/"))
	// A mobile frontend gets no default: its return_to are the app's own
	// redirect URIs, which only its team knows.
	if len(f.ReturnTo) == 0 && f.Kind == KindSPA {
		f.ReturnTo = []string{f.MountPath("/")}
	}
	for i, o := range f.CORS.AllowedOrigins {
		f.CORS.AllowedOrigins[i] = normaliseOrigin(o)
	}

	for i := range f.Routes {
		rt := &f.Routes[i]
		setString(&rt.Token, TokenUser)
		setDuration(&rt.Timeout, defaultRouteTimeout)
		for j, m := range rt.Methods {
			rt.Methods[j] = strings.ToUpper(m)
		}
	}
	for i := range f.Aggregates {
		setDuration(&f.Aggregates[i].Timeout, defaultAggregateTimeout)
	}
}

// Secure reports whether the gateway is served over https, which decides the
// cookies' Secure attribute and __Host- prefix.
func (c *Config) Secure() bool {
	u, err := url.Parse(c.Server.PublicURL)
	return err == nil && u.Scheme == "https"
}

// MountPath returns the absolute request path of rel (which starts with "/")
// under this frontend's mount: "/web" + "/bff/login" is "/web/bff/login",
// "/" + "/bff/login" is "/bff/login".
func (f *Frontend) MountPath(rel string) string {
	m := strings.TrimSuffix(f.Mount, "/")
	return m + rel
}

func setString(p *string, def string) {
	if *p == "" {
		*p = def
	}
}

func setDuration(p *time.Duration, def time.Duration) {
	if *p == 0 {
		*p = def
	}
}

// trimOriginSlash drops the one "/" that may follow an origin, so that
// public_url + mount never has a "//".
func trimOriginSlash(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Path != "/" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return s
	}
	return strings.TrimSuffix(s, "/")
}

// normaliseOrigin puts an origin into the form browsers send in the Origin
// header (lower-case scheme and host, no trailing "/"), since CORS compares
// the two as strings.
func normaliseOrigin(s string) string {
	u, err := url.Parse(trimOriginSlash(s))
	if err != nil || u.Scheme == "" || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return s
	}
	return u.Scheme + "://" + strings.ToLower(u.Host)
}
