package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/bffgate/bffgate/internal/demo"
	"github.com/bffgate/bffgate/internal/gateway"
)

const demoUsage = `usage:
  bffgate demo [-listen ADDR] [-redis URL] [-idp-listen ADDR] [-fapi2 [-panva-dir DIR]]
        everything in one process: provider, services, page and gateway;
        -fapi2 (or -dpop) runs panva's oidc-provider (node) instead, with
        frontends in profile fapi2 and services that verify DPoP proofs
  bffgate demo idp [-listen ADDR] [-issuer URL] [-public-url URL ...]
        only the demo OpenID provider; -public-url (repeatable) is a gateway
        origin: the demo clients (web-bff, app-bff) accept the callback of a
        frontend at any mount under it, and any post-logout URI there
  bffgate demo services [-listen ADDR] [-issuer URL]
        the two demo services and the demo page on one listener:
        /orders/... (role user), /reports/... (role admin), /payments/...
        (role user, only tokens for payments-api), /spa/... (the page)
`

// Paths of the demo services' listener (demo services, and the all-in-one
// demo's internal listener). Each handler sees the path below its prefix, so
// a gateway route's upstream is the listener's URL plus the prefix.
const (
	demoOrdersPath  = "/orders"
	demoReportsPath = "/reports"
	// demoPaymentsPath is the service that accepts only tokens exchanged
	// for its own audience (demo.PaymentsAudience).
	demoPaymentsPath = "/payments"
	demoSPAPath      = "/spa"
)

// cmdDemo runs the all-in-one demo, or one of its parts when the first
// argument names one (idp, services): the parts let the demo run as separate
// containers (docker-compose.yml).
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	// The embedded example provider logs every request through slog's
	// default logger; keep only its warnings, in our JSON format and on our
	// stderr, instead of a text line per request among the gateway's JSON.
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	defer slog.SetDefault(prev)
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "idp":
			return cmdDemoIDP(ctx, args[1:], stdout, stderr)
		case "services":
			return cmdDemoServices(ctx, args[1:], stdout, stderr)
		default:
			fmt.Fprintf(stderr, "bffgate demo: unknown subcommand %q\n%s", args[0], demoUsage)
			return exitUsage
		}
	}
	return cmdDemoAll(ctx, args, stdout, stderr)
}

// newDemoFlags returns a flag set whose usage is the demo's.
func newDemoFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, demoUsage, "\nflags of ", name, ":\n")
		fs.PrintDefaults()
	}
	return fs
}

// parseDemoFlags parses args and refuses positional arguments.
func parseDemoFlags(fs *flag.FlagSet, args []string, stderr io.Writer) bool {
	if err := fs.Parse(args); err != nil {
		return false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "bffgate %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return false
	}
	return true
}

// cmdDemoAll runs the gateway with an embedded provider, two services and the
// demo SPA, all on loopback. The public URL uses "localhost" so the browser's
// cookies and the provider's redirect URIs agree on one host name.
func cmdDemoAll(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newDemoFlags("demo", stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "gateway listen address")
	redisURL := fs.String("redis", "", "use this Redis (redis://host:port/db) for sessions instead of memory")
	idpListen := fs.String("idp-listen", "127.0.0.1:9998", "listen address of the embedded OpenID provider")
	var fapi2 bool
	fs.BoolVar(&fapi2, "fapi2", false, "FAPI 2.0 and DPoP: panva's oidc-provider (needs node), frontends in profile fapi2, services that verify DPoP proofs")
	fs.BoolVar(&fapi2, "dpop", false, "same as -fapi2")
	panvaDir := fs.String("panva-dir", "", "with -fapi2: the oidc-provider launcher folder (default internal/panva/launcher of the bffgate checkout around the current directory)")
	if !parseDemoFlags(fs, args, stderr) {
		return exitUsage
	}
	if fapi2 {
		f := demoFAPI2Flags{listen: *listen, redisURL: *redisURL, idpListen: *idpListen, panvaDir: *panvaDir}
		fs.Visit(func(fl *flag.Flag) { f.idpExplicit = f.idpExplicit || fl.Name == "idp-listen" })
		return cmdDemoFAPI2(ctx, f, stdout, stderr)
	}
	if *panvaDir != "" {
		fmt.Fprintln(stderr, "bffgate demo: -panva-dir needs -fapi2")
		return exitUsage
	}
	logger := newLogger(stderr)

	// Every listener is closed on return; closing one a server already
	// closed is harmless.
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	idpExplicit := false
	fs.Visit(func(f *flag.Flag) { idpExplicit = idpExplicit || f.Name == "idp-listen" })
	for _, l := range []struct{ flag, addr string }{{"-listen", *listen}, {"-idp-listen", *idpListen}, {"services", "127.0.0.1:0"}} {
		ln, err := net.Listen("tcp", l.addr)
		if err != nil && l.flag == "-idp-listen" && !idpExplicit {
			// The default provider port is taken: any free one will do, the
			// banner prints where it went.
			ln, err = net.Listen("tcp", "127.0.0.1:0")
		}
		if err != nil {
			fmt.Fprintf(stderr, "bffgate demo: %s: %v\n", l.flag, err)
			return exitFail
		}
		lns = append(lns, ln)
	}
	gwLn, idpLn, svcLn := lns[0], lns[1], lns[2]
	ep := demo.Endpoints{
		PublicURL: "http://localhost:" + port(gwLn),
		Issuer:    "http://localhost:" + port(idpLn),
	}
	ep.OrdersURL, ep.ReportsURL, ep.SPAURL = demoServiceURLs("http://" + svcLn.Addr().String())
	ep.PaymentsURL = "http://" + svcLn.Addr().String() + demoPaymentsPath

	idp, err := newDemoIDP(ep.Issuer, []string{ep.PublicURL}, nil)
	if err != nil {
		fmt.Fprintf(stderr, "bffgate demo: provider: %v\n", err)
		return exitFail
	}
	services, err := newDemoServices(ctx, ep.Issuer)
	if err != nil {
		fmt.Fprintf(stderr, "bffgate demo: %v\n", err)
		return exitFail
	}
	for i, h := range []http.Handler{idp, services} {
		s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = s.Serve(lns[i+1]) }()
		defer s.Close()
	}

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
  Mobile app      %s/web/mobile.html   (the native-app flow, played by a page)
  Log in as       %s / %s   (roles: admin, user)
              or  %s / %s            (role: user; the reports service answers 403)
  Provider        %s
  Sessions        %s
  Health          %s/healthz  %s/readyz  %s/metrics

Stop with Ctrl-C.
`, ep.PublicURL, ep.PublicURL, demo.AdminUsername(ep.Issuer), demo.Password, demo.UserUsername, demo.Password,
		ep.Issuer, store, ep.PublicURL, ep.PublicURL, ep.PublicURL)
	return serve(ctx, cfg, gateway.Options{Logger: logger}, nil, gwLn, nil, stderr)
}

// cmdDemoIDP runs only the demo OpenID provider.
func cmdDemoIDP(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newDemoFlags("demo idp", stderr)
	listen := fs.String("listen", "127.0.0.1:9998", "listen address")
	issuer := fs.String("issuer", "", "issuer URL, the root URL browsers and gateways reach the provider at (default http://localhost:<listen port>)")
	var publicURLs []string
	fs.Func("public-url", "a gateway's public origin whose redirect URIs the demo clients accept (repeatable; default http://localhost:8080)", func(s string) error {
		publicURLs = append(publicURLs, s)
		return nil
	})
	if !parseDemoFlags(fs, args, stderr) {
		return exitUsage
	}
	if len(publicURLs) == 0 {
		publicURLs = []string{"http://localhost:8080"}
	}
	logger := newLogger(stderr)

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "bffgate demo idp: -listen: %v\n", err)
		return exitFail
	}
	if *issuer == "" {
		*issuer = "http://localhost:" + port(ln)
	}
	idp, err := newDemoIDP(*issuer, publicURLs, logger)
	if err != nil {
		ln.Close()
		fmt.Fprintf(stderr, "bffgate demo idp: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stdout, `bffgate demo provider is running.

  Issuer          %s
  Listening on    %s
  Users           %s / %s   (roles: admin, user)
                  %s / %s            (role: user)
`, *issuer, ln.Addr(), demo.AdminUsername(*issuer), demo.Password, demo.UserUsername, demo.Password)
	printDemoClients(stdout, publicURLs)
	return serveDemoPart(ctx, ln, idp, logger)
}

// cmdDemoServices runs only the demo services and the demo page.
func cmdDemoServices(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newDemoFlags("demo services", stderr)
	listen := fs.String("listen", "127.0.0.1:8090", "listen address")
	issuer := fs.String("issuer", "http://localhost:9998", "issuer URL of the provider whose access tokens the services accept")
	if !parseDemoFlags(fs, args, stderr) {
		return exitUsage
	}
	logger := newLogger(stderr)

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	h, err := newDemoServices(ctx, *issuer)
	if err != nil {
		fmt.Fprintf(stderr, "bffgate demo services: %v\n", err)
		return exitFail
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "bffgate demo services: -listen: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stdout, `bffgate demo services are running.

  Listening on    %s
  Orders          %s/...    (needs role %s)
  Reports         %s/...   (needs role %s)
  Payments        %s/...  (needs role %s and a token for audience %s)
  Page            %s/...
  Issuer          %s   (audiences %s)
`, ln.Addr(), demoOrdersPath, demo.OrdersRole, demoReportsPath, demo.ReportsRole, demoPaymentsPath, demo.OrdersRole, demo.PaymentsAudience,
		demoSPAPath, *issuer, strings.Join(demo.ClientIDs(), ", "))
	return serveDemoPart(ctx, ln, h, logger)
}

// newDemoIDP is the demo provider with the demo's clients (web-bff, app-bff)
// accepting a callback at any mount of every gateway origin in publicURLs.
func newDemoIDP(issuer string, publicURLs []string, logger *slog.Logger) (http.Handler, error) {
	return demo.NewIDP(issuer, demo.AnyMountClients(publicURLs), demo.IDPOptions{Logger: logger})
}

// printDemoClients tells the user of `demo idp` what to put in a frontend
// file: each client's id and secret, and the URIs it accepts, so a frontend
// at a mount of their own logs in without reading docker-compose.yml.
func printDemoClients(w io.Writer, publicURLs []string) {
	fmt.Fprintf(w, "\n  Clients (client_secret_basic; oidc.client_id / oidc.client_secret of a frontend file):\n")
	for _, c := range demo.AnyMountClients(publicURLs) {
		fmt.Fprintf(w, "  Client          %s / %s\n", c.ID, c.Secret)
	}
	fmt.Fprintf(w, "\n  Accepted by every client, for a frontend at any mount M:\n")
	for _, u := range publicURLs {
		u = strings.TrimSuffix(u, "/")
		fmt.Fprintf(w, "  Redirect URI    %s/<M>/bff/callback\n", u)
		fmt.Fprintf(w, "  After logout    %s/<any path>\n", u)
	}
}

// newDemoServices serves the orders, reports and payments services and the
// demo page under demoOrdersPath, demoReportsPath, demoPaymentsPath and
// demoSPAPath; anything else is 404. Orders and reports verify access
// tokens from issuer issued to the demo's clients (demo.ClientIDs);
// payments only tokens for its own audience, which the gateway obtains by
// token exchange, so the user's own token is refused there.
func newDemoServices(ctx context.Context, issuer string) (http.Handler, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	mux := http.NewServeMux()
	for _, svc := range []struct{ name, path, role string }{
		{"orders", demoOrdersPath, demo.OrdersRole},
		{"reports", demoReportsPath, demo.ReportsRole},
	} {
		h, err := demo.NewService(ctx, svc.name, issuer, demo.ClientIDs(), svc.role, client)
		if err != nil {
			return nil, err
		}
		mountDemo(mux, svc.path, h)
	}
	payments, err := demo.NewService(ctx, "payments", issuer, []string{demo.PaymentsAudience}, demo.OrdersRole, client)
	if err != nil {
		return nil, err
	}
	mountDemo(mux, demoPaymentsPath, payments)
	mountDemo(mux, demoSPAPath, demo.SPAHandler())
	return mux, nil
}

// mountDemo serves h at prefix and below it, with the prefix stripped.
func mountDemo(mux *http.ServeMux, prefix string, h http.Handler) {
	h = http.StripPrefix(prefix, h)
	mux.Handle(prefix, h)
	mux.Handle(prefix+"/", h)
}

// demoServiceURLs are the upstream URLs of the services and the page on the
// services listener at base (scheme://host:port).
func demoServiceURLs(base string) (orders, reports, spa string) {
	return base + demoOrdersPath, base + demoReportsPath, base + demoSPAPath
}

// serveDemoPart serves h on ln until ctx ends or SIGTERM/SIGINT, then drains
// for up to 5s and returns exitOK.
func serveDemoPart(ctx context.Context, ln net.Listener, h http.Handler, logger *slog.Logger) int {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	srv := newServer(h, logger)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			logger.Warn("in-flight requests cut at shutdown", "error", err)
		}
		return exitOK
	case err := <-errc:
		logger.Error("server failed", "error", err)
		return exitFail
	}
}

func port(ln net.Listener) string {
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	return p
}
