// Package frontends turns the configured frontends into running BFFs and
// routes each request to one of them by Host and mount. The routing table is
// swapped atomically on reload, so in-flight requests finish on the set they
// started with.
package frontends

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/bffgate/bffgate/bff"
	"github.com/bffgate/bffgate/bff/httperr"
	"github.com/bffgate/bffgate/config"
)

// Router dispatches to the BFF owning the request's host and path.
type Router struct {
	table atomic.Pointer[table]
	deps  bff.Deps
	// MaxBodyBytes limits request bodies; 0 means no limit.
	maxBody int64
}

type entry struct {
	host string // lower-case name, no port; "" matches any host
	// port, when set, is the only port of host this frontend answers on;
	// "" is any port.
	port string
	base string // mount without trailing slash; "" for "/"
	bff  *bff.BFF
	// routes are the frontend's route prefixes, for the case check.
	routes routeSet
}

type table struct{ entries []entry }

// New builds a BFF for every frontend of cfg.
func New(cfg *config.Config, deps bff.Deps) (*Router, error) {
	r := &Router{deps: deps, maxBody: cfg.Server.MaxBodyBytes}
	t, err := build(cfg.Frontends, deps)
	if err != nil {
		return nil, err
	}
	r.table.Store(t)
	return r, nil
}

// Swap replaces the frontend set (hot reload). On error the running set stays.
func (r *Router) Swap(fes []config.Frontend) error {
	t, err := build(fes, r.deps)
	if err != nil {
		return err
	}
	r.table.Store(t)
	return nil
}

// BFFs lists the running BFFs in routing order.
func (r *Router) BFFs() []*bff.BFF {
	t := r.table.Load()
	out := make([]*bff.BFF, len(t.entries))
	for i, e := range t.entries {
		out[i] = e.bff
	}
	return out
}

// Ready reports the first frontend whose provider metadata is not loaded.
func (r *Router) Ready(ctx context.Context) error {
	var errs []error
	for _, b := range r.BFFs() {
		if err := b.Ready(ctx); err != nil {
			errs = append(errs, fmt.Errorf("frontend %q: %w", b.Name(), err))
		}
	}
	return errors.Join(errs...)
}

func build(fes []config.Frontend, deps bff.Deps) (*table, error) {
	t := &table{}
	// Every BFF must know every frontend's cookie, so that no upstream can
	// set one of them (the cookies share the host, Path=/).
	deps.SessionCookies = nil
	for _, fe := range fes {
		deps.SessionCookies = append(deps.SessionCookies, fe.Cookie.Name)
	}
	for _, fe := range fes {
		b, err := bff.New(fe, deps)
		if err != nil {
			return nil, err
		}
		base := strings.TrimSuffix(fe.Mount, "/")
		prefixes := make([]string, len(fe.Routes))
		for i, rt := range fe.Routes {
			prefixes[i] = base + strings.TrimSuffix(rt.Prefix, "/")
		}
		host, port := splitHost(strings.ToLower(fe.Host))
		t.entries = append(t.entries, entry{
			host:   host,
			port:   port,
			base:   base,
			bff:    b,
			routes: newRouteSet(prefixes),
		})
	}
	// Host-specific frontends before host-agnostic ones, then longest mount
	// first, so "/" only catches what no other mount claims; on one mount,
	// a frontend bound to a port before one bound to the name alone.
	sort.SliceStable(t.entries, func(i, j int) bool {
		a, b := t.entries[i], t.entries[j]
		if (a.host != "") != (b.host != "") {
			return a.host != ""
		}
		if len(a.base) != len(b.base) {
			return len(a.base) > len(b.base)
		}
		return a.port != "" && b.port == ""
	})
	return t, nil
}

func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if err := checkRequest(w, req); err != nil {
		httperr.Write(w, err)
		return
	}
	if err := checkPath(req.URL); err != nil {
		httperr.Write(w, err)
		return
	}
	// Route on the decoded path, the one the proxy forwards: echo would
	// otherwise match the client's encoding (/api/v1/%61dmin is not
	// /api/v1/admin to it) and skip a nested route's checks.
	req.URL.RawPath = ""
	if r.maxBody > 0 {
		if req.ContentLength > r.maxBody {
			httperr.Write(w, httperr.New(http.StatusRequestEntityTooLarge, httperr.CodeTooLarge,
				fmt.Sprintf("request body larger than %d bytes", r.maxBody)))
			return
		}
		if req.Body != nil && req.Body != http.NoBody {
			req.Body = http.MaxBytesReader(w, req.Body, r.maxBody)
		}
	}
	host, port := splitHost(strings.ToLower(req.Host))
	path := req.URL.Path
	for _, e := range r.table.Load().entries {
		if e.host != "" && (e.host != host || e.port != "" && e.port != port) {
			continue
		}
		if e.base == "" || path == e.base || strings.HasPrefix(path, e.base+"/") {
			if e.routes.shadowed(path) {
				httperr.Write(w, badPath("this path names a more specific route when compared without regard to case; use the route's exact spelling"))
				return
			}
			e.bff.ServeHTTP(w, req)
			return
		}
	}
	httperr.Write(w, httperr.New(http.StatusNotFound, httperr.CodeNotFound, "no frontend is mounted at this path"))
}

// splitHost splits a Host header or a frontend's host into its name (IPv6
// without brackets) and its port, "" when it has none.
func splitHost(h string) (name, port string) {
	if host, p, err := net.SplitHostPort(h); err == nil {
		return host, p
	}
	return strings.Trim(h, "[]"), ""
}
