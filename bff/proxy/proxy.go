// Package proxy forwards one route's requests to its upstream with
// httputil.ReverseProxy (Rewrite hook). It knows nothing of sessions: the
// caller puts the bearer token in the request context with WithToken, so the
// same handler serves user, client-credentials and anonymous routes.
package proxy

import (
	"context"
	"errors"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/bffgate/bffgate/bff/httperr"
)

type tokenKey struct{}

// WithToken returns ctx carrying the access token to attach upstream.
func WithToken(ctx context.Context, token string) context.Context {
	return context.WithValue(ctx, tokenKey{}, token)
}

// Token returns the token put in ctx by WithToken ("" for none).
func Token(ctx context.Context) string {
	t, _ := ctx.Value(tokenKey{}).(string)
	return t
}

// Options configure one route's forwarding.
type Options struct {
	// Upstream is the absolute base URL; its path is prepended to the forwarded path.
	Upstream *url.URL
	// Mount and Prefix locate the route in the incoming path ("/web", "/api/orders").
	Mount, Prefix string
	// StripPrefix drops Prefix (the mount is always dropped).
	StripPrefix bool
	// Timeout bounds the wait for the upstream's response headers; bodies may
	// stream for longer (downloads, server-sent events, WebSockets).
	Timeout time.Duration
	// TrustedProxies may send X-Forwarded-* that we extend instead of replace.
	TrustedProxies []netip.Prefix
	// ReservedCookie reports whether a cookie name belongs to the gateway
	// (any frontend's session or login cookie): an upstream's Set-Cookie
	// for it is dropped, or a service could fix or end users' sessions.
	ReservedCookie func(name string) bool
	// PublicURL is the origin browsers reach this route at (public_url, or
	// the frontend's own host): the upstream's X-Forwarded-Host and
	// X-Forwarded-Proto. Nil keeps the incoming request's.
	PublicURL *url.URL
	// RequestID returns the id of the request in ctx, sent upstream as
	// X-Request-Id in place of the client's; nil (or "") passes the
	// client's header on.
	RequestID func(context.Context) string
	Logger    *slog.Logger
}

// New returns the route's forwarding handler. Each call clones its own
// transport so one slow upstream cannot starve another's connection pool.
func New(o Options) *httputil.ReverseProxy {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// Upstreams are internal services: environment proxies are for egress,
	// and would route service calls through them by surprise.
	tr.Proxy = nil
	tr.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	tr.ResponseHeaderTimeout = o.Timeout
	// Go's default of 2 idle connections per host forces a new upstream
	// connection for most requests under concurrency.
	tr.MaxIdleConns = 1024
	tr.MaxIdleConnsPerHost = 256
	tr.IdleConnTimeout = 90 * time.Second

	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	target := o.Upstream
	mountLen := len(strings.TrimSuffix(o.Mount, "/"))
	prefix := strings.TrimSuffix(o.Prefix, "/")
	trusted := o.TrustedProxies

	return &httputil.ReverseProxy{
		Transport:  tr,
		BufferPool: bufferPool{&sync.Pool{New: func() any { b := make([]byte, 32*1024); return &b }}},
		ErrorLog:   log.New(slogWriter{logger}, "", 0),
		Rewrite: func(pr *httputil.ProxyRequest) {
			rest := pr.In.URL.Path[mountLen:]
			if o.StripPrefix {
				rest = rest[len(prefix):]
			}
			if rest == "" {
				rest = "/"
			}
			pr.Out.URL.Path = rest
			pr.Out.URL.RawPath = ""
			pr.SetURL(target)

			fromTrusted := isTrusted(pr.In.RemoteAddr, trusted)
			for k := range pr.Out.Header {
				// The route's methods check ran on the request's method;
				// Express, Rails, Laravel and Spring's HiddenHttpMethodFilter
				// would act on the override instead. A trusted proxy passes
				// its clients' headers on, so they go whoever sends them.
				if methodOverrideHeaders[k] || !fromTrusted && untrustedHeader(k) {
					delete(pr.Out.Header, k)
				}
			}
			if fromTrusted {
				// Rewrite removed the client's X-Forwarded-*; a trusted proxy's
				// chain is kept and extended with its own address.
				if v := pr.In.Header.Values("X-Forwarded-For"); len(v) > 0 {
					pr.Out.Header["X-Forwarded-For"] = v
				}
			}
			pr.SetXForwarded()
			// The host and scheme the browser uses are configuration, not
			// whatever Host a client (or a proxy's client) sent: services
			// build absolute links and password-reset mails from them.
			if o.PublicURL != nil {
				pr.Out.Header.Set("X-Forwarded-Host", o.PublicURL.Host)
				pr.Out.Header.Set("X-Forwarded-Proto", o.PublicURL.Scheme)
			} else if fromTrusted {
				if v := pr.In.Header.Get("X-Forwarded-Proto"); v != "" {
					pr.Out.Header.Set("X-Forwarded-Proto", v)
				}
			}

			// The browser's credentials are for the gateway only.
			pr.Out.Header.Del("Cookie")
			pr.Out.Header.Del("Authorization")
			pr.Out.Header.Del("X-Csrf")
			if tok := Token(pr.In.Context()); tok != "" {
				pr.Out.Header.Set("Authorization", "Bearer "+tok)
			}
			if o.RequestID != nil {
				if id := o.RequestID(pr.In.Context()); id != "" {
					pr.Out.Header.Set("X-Request-Id", id)
				}
			}
		},
		ModifyResponse: func(resp *http.Response) error {
			filterResponseHeaders(resp.Header, o.ReservedCookie)
			for _, k := range []string{"Location", "Content-Location"} {
				loc := resp.Header.Get(k)
				if loc == "" {
					continue
				}
				if pub, ok := publicLocation(loc, target, o.Mount, o.Prefix, o.StripPrefix); ok {
					resp.Header.Set(k, pub)
				} else {
					logger.LogAttrs(resp.Request.Context(), slog.LevelWarn, "dropped an upstream's "+k+" to its own address outside the route",
						slog.String("upstream", target.Host))
					resp.Header.Del(k)
				}
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			e := classify(err)
			logger.LogAttrs(r.Context(), slog.LevelWarn, "upstream request failed",
				slog.String("upstream", target.Host), slog.String("error", err.Error()))
			httperr.Write(w, e)
		},
	}
}

// publicLocation maps an upstream's redirect to its own address (absolute,
// scheme-relative "//host/..." or a browser's "/\host/...") back to the
// path the browser uses for it, so the browser stays on the gateway and
// internal host names never reach it. ok is false for a redirect to the
// upstream's host name outside the route (another port, another base
// path): there is no public path for it, and passing it on would disclose
// the host. Other locations (relative paths, other hosts) pass unchanged.
func publicLocation(loc string, target *url.URL, mount, prefix string, strip bool) (string, bool) {
	u, err := url.Parse(browserURL(loc))
	if err != nil {
		// A browser may still find a host in it: pass on only what can be
		// checked.
		return "", false
	}
	if u.Host == "" || !sameHost(u, target) {
		return loc, true
	}
	base := strings.TrimSuffix(target.Path, "/")
	if !samePort(u, target) || u.Path != base && !strings.HasPrefix(u.Path, base+"/") {
		return "", false
	}
	rest := u.Path[len(base):]
	public := strings.TrimSuffix(mount, "/")
	if strip {
		public += strings.TrimSuffix(prefix, "/")
	}
	out := &url.URL{Path: public + rest, RawQuery: u.RawQuery, Fragment: u.Fragment}
	if out.Path == "" {
		out.Path = "/"
	}
	return out.String(), true
}

// browserURL reads loc as a browser does before resolving it (WHATWG URL):
// leading and trailing spaces and controls, tabs and newlines removed;
// backslashes as slashes; any run of two or more slashes at the start
// ("///host", "/\host") and any slashes after "http:" or "https:"
// (also none: "http:host") introduce the host.
func browserURL(loc string) string {
	loc = strings.TrimFunc(loc, func(r rune) bool { return r <= ' ' })
	loc = strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return -1
		}
		return r
	}, loc)
	end := len(loc)
	if i := strings.IndexAny(loc, "?#"); i >= 0 {
		end = i
	}
	loc = strings.ReplaceAll(loc[:end], "\\", "/") + loc[end:]
	lower := strings.ToLower(loc)
	for _, scheme := range []string{"http:", "https:"} {
		if strings.HasPrefix(lower, scheme) {
			return scheme + "//" + strings.TrimLeft(loc[len(scheme):], "/")
		}
	}
	if strings.HasPrefix(loc, "//") {
		return "//" + strings.TrimLeft(loc, "/")
	}
	return loc
}

// sameHost: u names target's host, whatever its case, and with or
// without the trailing dot of a fully qualified name.
func sameHost(u, target *url.URL) bool {
	return strings.EqualFold(strings.TrimSuffix(u.Hostname(), "."), strings.TrimSuffix(target.Hostname(), "."))
}

// samePort: u (absolute or scheme-relative, which takes target's scheme
// as the browser would) names target's port, default ports spelt or not.
func samePort(u, target *url.URL) bool {
	port := func(v *url.URL) string {
		if p := v.Port(); p != "" {
			return p
		}
		if strings.EqualFold(v.Scheme, "https") || v.Scheme == "" && target.Scheme == "https" {
			return "443"
		}
		return "80"
	}
	return port(u) == port(target)
}

// methodOverrideHeaders tell frameworks to act as if the request had
// another method.
var methodOverrideHeaders = map[string]bool{
	"X-Http-Method-Override": true, "X-Http-Method": true, "X-Method-Override": true,
}

// untrustedHeader reports whether k (canonical) is a client-supplied
// routing or identity hint that upstream frameworks believe: the client's
// address (X-Real-Ip, True-Client-Ip, the CDNs' own), the user an
// authenticating proxy vouches for (Remote-User, X-Auth-Request-User), or
// the original host and path (Spring: X-Forwarded-Prefix; Envoy, IIS and
// nginx ingress their own). Only a trusted proxy may send them.
func untrustedHeader(k string) bool {
	if untrustedHeaders[k] {
		return true
	}
	for _, p := range untrustedPrefixes {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

var untrustedPrefixes = []string{"X-Forwarded-", "X-Original-", "X-Envoy-", "X-Auth-Request-", "X-Remote-"}

var untrustedHeaders = map[string]bool{
	"X-Real-Ip": true, "X-Client-Ip": true, "Client-Ip": true, "True-Client-Ip": true,
	"Cf-Connecting-Ip": true, "Cf-Connecting-Ipv6": true, "Fastly-Client-Ip": true, "X-Cluster-Client-Ip": true,
	"X-Originating-Ip": true, "X-Proxyuser-Ip": true, "X-Appengine-User-Ip": true, "X-Azure-Clientip": true,
	"Forwarded-For": true, "X-Forwarded": true,
	"Remote-User": true, "Remote-Addr": true, "X-User": true, "X-Username": true, "X-Email": true,
	"X-Authenticated-User": true, "X-Webauth-User": true, "X-Ms-Client-Principal": true, "X-Ms-Client-Principal-Name": true,
	"X-Host": true, "X-Http-Host": true, "X-Rewrite-Url": true,
}

// filterResponseHeaders keeps the gateway in charge of what only it may
// set: its own cookies, CORS (per frontend, cors.allowed_origins) and the
// browser's site data.
func filterResponseHeaders(h http.Header, reserved func(string) bool) {
	for k := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			delete(h, k)
		}
	}
	// "Clear-Site-Data: cookies" would end every session of the host, and
	// "storage" wipe every frontend's data: only the gateway may ask.
	h.Del("Clear-Site-Data")
	if reserved == nil || len(h["Set-Cookie"]) == 0 {
		return
	}
	kept := h["Set-Cookie"][:0]
	for _, line := range h["Set-Cookie"] {
		name, _, _ := strings.Cut(line, "=")
		if !reserved(strings.TrimSpace(name)) {
			kept = append(kept, line)
		}
	}
	if len(kept) == 0 {
		delete(h, "Set-Cookie")
	} else {
		h["Set-Cookie"] = kept
	}
}

// classify maps a transport error to the SPEC's codes.
func classify(err error) *httperr.Error {
	var ne net.Error
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return httperr.Wrap(http.StatusRequestEntityTooLarge, httperr.CodeTooLarge, "request body too large", err)
	}
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return httperr.Wrap(http.StatusGatewayTimeout, httperr.CodeUpstreamTimeout, "the upstream service did not answer in time", err)
	}
	return httperr.Wrap(http.StatusBadGateway, httperr.CodeUpstreamUnavailable, "the upstream service is unavailable", err)
}

// IsTrusted reports whether remoteAddr (host:port) is inside one of the prefixes.
func isTrusted(remoteAddr string, trusted []netip.Prefix) bool {
	if len(trusted) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	addr := ap.Addr().Unmap()
	for _, p := range trusted {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// ParseTrusted turns CIDRs or single IPs into prefixes.
func ParseTrusted(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, err
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// bufferPool reuses copy buffers across requests: the proxy otherwise
// allocates 32 KiB per response body.
type bufferPool struct{ p *sync.Pool }

func (b bufferPool) Get() []byte    { return *(b.p.Get().(*[]byte)) }
func (b bufferPool) Put(buf []byte) { b.p.Put(&buf) }

type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Warn(strings.TrimSpace(string(p)), slog.String("component", "proxy"))
	return len(p), nil
}
