package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/bffgate/bffgate/internal/demo"
	"github.com/bffgate/bffgate/internal/gateway"
)

// cmdDemo runs the gateway with an embedded provider, two services and the
// demo SPA, all on loopback. The public URL uses "localhost" so the browser's
// cookies and the provider's redirect URIs agree on one host name.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "gateway listen address")
	redisURL := fs.String("redis", "", "use this Redis (redis://host:port/db) for sessions instead of memory")
	idpListen := fs.String("idp-listen", "127.0.0.1:9998", "listen address of the embedded OpenID provider")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "bffgate demo: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	logger := newLogger(stderr)

	gwLn, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "bffgate demo: -listen: %v\n", err)
		return exitFail
	}
	idpLn, err := net.Listen("tcp", *idpListen)
	if err != nil {
		gwLn.Close()
		fmt.Fprintf(stderr, "bffgate demo: -idp-listen: %v\n", err)
		return exitFail
	}
	ep := demo.Endpoints{
		PublicURL: "http://localhost:" + port(gwLn),
		Issuer:    "http://localhost:" + port(idpLn),
	}
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	start := func(ln net.Listener, h http.Handler) string {
		s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = s.Serve(ln) }()
		closers = append(closers, func() { _ = s.Close() })
		return "http://" + ln.Addr().String()
	}
	loopback := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err) // loopback with port 0 only fails on a broken machine
		}
		return ln
	}

	idp, err := demo.NewIDP(ep.Issuer, demo.Clients(ep), demo.IDPOptions{})
	if err != nil {
		fmt.Fprintf(stderr, "bffgate demo: provider: %v\n", err)
		return exitFail
	}
	start(idpLn, idp)
	client := &http.Client{Timeout: 10 * time.Second}
	for _, svc := range []struct {
		name, role string
		url        *string
	}{{"orders", "user", &ep.OrdersURL}, {"reports", "admin", &ep.ReportsURL}} {
		h, err := demo.NewService(ctx, svc.name, ep.Issuer, []string{demo.WebClientID}, svc.role, client)
		if err != nil {
			fmt.Fprintf(stderr, "bffgate demo: service %s: %v\n", svc.name, err)
			return exitFail
		}
		*svc.url = start(loopback(), h)
	}
	ep.SPAURL = start(loopback(), demo.SPAHandler())

	cfg := demo.Config(ep, *redisURL)
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		printProblems(stderr, err)
		return exitFail
	}
	store := "memory"
	if *redisURL != "" {
		store = *redisURL
	}
	fmt.Fprintf(stdout, `bffgate demo is running.

  Open            %s/web/
  Log in as       test-user@localhost / verysecure   (roles: admin, user)
              or  test-user2 / verysecure            (role: user; the reports service answers 403)
  Provider        %s
  Sessions        %s
  Health          %s/healthz  %s/readyz  %s/metrics

Stop with Ctrl-C.
`, ep.PublicURL, ep.Issuer, store, ep.PublicURL, ep.PublicURL, ep.PublicURL)
	return serve(ctx, cfg, gateway.Options{Logger: logger}, nil, gwLn, nil, stderr)
}

func port(ln net.Listener) string {
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	return p
}
