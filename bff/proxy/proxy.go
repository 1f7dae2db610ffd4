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
	Logger         *slog.Logger
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
			if !fromTrusted {
				// Rewrite strips only Forwarded and X-Forwarded-For/Host/Proto;
				// frameworks also believe these (Spring: X-Forwarded-Prefix/Port).
				for k := range pr.Out.Header {
					if strings.HasPrefix(k, "X-Forwarded-") || untrustedHeaders[k] {
						delete(pr.Out.Header, k)
					}
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
			if fromTrusted {
				if v := pr.In.Header.Get("X-Forwarded-Host"); v != "" {
					pr.Out.Header.Set("X-Forwarded-Host", v)
				}
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
		},
		ModifyResponse: func(resp *http.Response) error {
			filterResponseHeaders(resp.Header, o.ReservedCookie)
			if loc := resp.Header.Get("Location"); loc != "" {
				resp.Header.Set("Location", publicLocation(loc, target, o.Mount, o.Prefix, o.StripPrefix))
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

// publicLocation maps an upstream's redirect to its own absolute URL back
// to the path the browser uses for it, so internal host names never leak
// and the browser stays on the gateway. Other locations pass unchanged.
func publicLocation(loc string, target *url.URL, mount, prefix string, strip bool) string {
	u, err := url.Parse(loc)
	if err != nil || !u.IsAbs() || u.Scheme != target.Scheme || !strings.EqualFold(u.Host, target.Host) {
		return loc
	}
	base := strings.TrimSuffix(target.Path, "/")
	if u.Path != base && !strings.HasPrefix(u.Path, base+"/") {
		return loc
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
	return out.String()
}

// untrustedHeaders are client-supplied routing hints that upstream frameworks
// trust; X-Forwarded-* is handled by prefix.
var untrustedHeaders = map[string]bool{"X-Real-Ip": true, "X-Original-Url": true, "X-Rewrite-Url": true, "X-Client-Ip": true}

// filterResponseHeaders keeps the gateway in charge of what only it may
// set: its own cookies, and CORS (per frontend, cors.allowed_origins).
func filterResponseHeaders(h http.Header, reserved func(string) bool) {
	for k := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			delete(h, k)
		}
	}
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
