package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/bffgate/bffgate/dpop"
	"github.com/bffgate/bffgate/internal/demo"
	"github.com/bffgate/bffgate/internal/gateway"
	"github.com/bffgate/bffgate/internal/panva/launch"
)

type demoFAPI2Flags struct {
	listen, redisURL, idpListen, panvaDir string
	idpExplicit                           bool // -idp-listen was given
	// wrapServices, when set, wraps the services' handler: a test's
	// eavesdropper on the gateway-to-service hop.
	wrapServices func(http.Handler) http.Handler
}

// cmdDemoFAPI2 is `bffgate demo -fapi2`: the all-in-one demo with panva's
// oidc-provider (in its FAPI 2.0 mode, with DPoP nonces) instead of the
// zitadel example OP, which issues no DPoP-bound tokens. The frontends use
// profile fapi2 with a private_key_jwt key made for this run, and the
// services accept only DPoP-bound tokens with a valid proof.
func cmdDemoFAPI2(ctx context.Context, f demoFAPI2Flags, stdout, stderr io.Writer) int {
	// Before any listener: a missing node or npm ci is the likely failure,
	// and the message says what to run.
	dir := f.panvaDir
	if dir == "" {
		var err error
		if dir, err = launch.FindDir(); err != nil {
			fmt.Fprintf(stderr, "bffgate demo -fapi2: %v (-panva-dir DIR)\n", err)
			return exitFail
		}
	}
	if err := launch.Check(dir); err != nil {
		fmt.Fprintf(stderr, "bffgate demo -fapi2: %v\n", err)
		return exitFail
	}
	logger := newLogger(stderr)

	tmp, err := os.MkdirTemp("", "bffgate-demo-fapi2-")
	if err != nil {
		fmt.Fprintf(stderr, "bffgate demo -fapi2: %v\n", err)
		return exitFail
	}
	defer os.RemoveAll(tmp)

	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for _, l := range []struct{ flag, addr string }{{"-listen", f.listen}, {"services", "127.0.0.1:0"}} {
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			fmt.Fprintf(stderr, "bffgate demo: %s: %v\n", l.flag, err)
			return exitFail
		}
		lns = append(lns, ln)
	}
	gwLn, svcLn := lns[0], lns[1]
	idpPort, err := freeProviderPort(f.idpListen, f.idpExplicit)
	if err != nil {
		fmt.Fprintf(stderr, "bffgate demo: -idp-listen: %v\n", err)
		return exitFail
	}

	ep := demo.Endpoints{PublicURL: "http://localhost:" + port(gwLn)}
	ep.OrdersURL, ep.ReportsURL, ep.SPAURL = demoServiceURLs("http://" + svcLn.Addr().String())
	// oidc-provider has no token-exchange grant: the page's payments card
	// shows its refusal (403 token_exchange_failed), what any provider
	// without the grant gives, rather than the page itself from the / route.
	ep.PaymentsURL = "http://" + svcLn.Addr().String() + demoPaymentsPath
	// The provider on localhost too: the gateway's SameSite=Strict session
	// cookie needs the login to come back from the same site.
	op, err := launch.Start(ctx, dir, filepath.Join(tmp, "panva.json"), launch.Options{
		FAPI2:            true,
		RequireDPoPNonce: true,
		Clients:          demo.FAPI2Clients(ep),
		Port:             idpPort,
		IssuerHost:       "localhost",
		Roles:            demo.FAPI2Roles(),
	}, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "bffgate demo -fapi2: oidc-provider: %v\n", err)
		return exitFail
	}
	defer op.Stop()
	ep.Issuer = op.Issuer

	services, err := newDemoDPoPServices(ctx, ep.Issuer)
	if err != nil {
		fmt.Fprintf(stderr, "bffgate demo: %v\n", err)
		return exitFail
	}
	if f.wrapServices != nil {
		services = f.wrapServices(services)
	}
	svc := &http.Server{Handler: services, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = svc.Serve(svcLn) }()
	defer svc.Close()

	cfg := demo.Config(ep, f.redisURL)
	keys := map[string]string{}
	for _, fe := range cfg.Frontends {
		path := filepath.Join(tmp, fe.Name+"-client.key")
		if err := writeClientKey(path); err != nil {
			fmt.Fprintf(stderr, "bffgate demo -fapi2: client key: %v\n", err)
			return exitFail
		}
		keys[fe.Name] = path
	}
	demo.UseFAPI2(cfg, func(name string) string { return keys[name] })
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		printProblems(stderr, err)
		return exitFail
	}
	store := "memory"
	if f.redisURL != "" {
		store = f.redisURL
	}
	fmt.Fprintf(stdout, `bffgate demo is running (FAPI 2.0: PAR, private_key_jwt, DPoP-bound tokens).

  Open            %s/web/
  Mobile app      %s/web/mobile.html   (the native-app flow, played by a page)
  Log in as       %s   (any password; roles: admin, user)
              or  any other name   (role: user; the reports service answers 403)
  Provider        %s   (panva's oidc-provider, FAPI 2.0 profile, DPoP nonces)
  Client keys     %s/web/bff/jwks  %s/app/bff/jwks
  Services        %s/orders  %s/reports
                  accept only "Authorization: DPoP" with a proof made with the
                  key the token is bound to; their answers show token_type and
                  the key's thumbprint (jkt)
  Sessions        %s
  Health          %s/healthz  %s/readyz  %s/metrics

Stop with Ctrl-C.
`, ep.PublicURL, ep.PublicURL, demo.AdminLogin, ep.Issuer, ep.PublicURL, ep.PublicURL,
		"http://"+svcLn.Addr().String(), "http://"+svcLn.Addr().String(), store,
		ep.PublicURL, ep.PublicURL, ep.PublicURL)
	return serve(ctx, cfg, gateway.Options{Logger: logger}, nil, gwLn, nil, stderr)
}

// freeProviderPort returns the port for the provider: addr's, or when addr
// is the flag's default and that port is taken, any free one. The
// listener is closed again for node to take the port: a narrow race, and
// node then fails with a clear "listen" error.
func freeProviderPort(addr string, explicit bool) (int, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	if host != "127.0.0.1" {
		return 0, fmt.Errorf("%s: with -fapi2 the provider listens on 127.0.0.1 only", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil && !explicit {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return strconv.Atoi(port(ln))
}

// writeClientKey writes a new EC P-256 key (PKCS#8 PEM) to path: the
// frontend's private_key_jwt key for this run, whose public half the
// gateway serves at <mount>/bff/jwks.
func writeClientKey(path string) error {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// newDemoDPoPServices is newDemoServices for DPoP-bound tokens: the orders
// and reports services introspect the token at issuer and check its DPoP
// proof. One verifier serves both, so its nonces and replay cache cover
// the listener's one origin.
func newDemoDPoPServices(ctx context.Context, issuer string) (http.Handler, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	in, err := demo.NewIntrospector(ctx, issuer, demo.IntrospectionClientID, demo.IntrospectionClientSecret, client)
	if err != nil {
		return nil, err
	}
	v := &dpop.Verifier{Nonces: dpop.NewNonces(5 * time.Minute)}
	mux := http.NewServeMux()
	for _, svc := range []struct{ name, path, role string }{
		{"orders", demoOrdersPath, demo.OrdersRole},
		{"reports", demoReportsPath, demo.ReportsRole},
	} {
		h, err := demo.NewDPoPService(svc.name, in, demo.ClientIDs(), svc.role, v)
		if err != nil {
			return nil, err
		}
		mountDemo(mux, svc.path, h)
	}
	mountDemo(mux, demoSPAPath, demo.SPAHandler())
	return mux, nil
}
