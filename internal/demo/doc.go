// Package demo holds the pieces `bffgate demo` embeds for a first look, and that
// end-to-end tests reuse: a development OpenID provider built on the zitadel/oidc
// example OP (NewIDP), two microservices that verify the user's JWT access token
// and authorize by role (NewService), a plain HTML+JS page served through the
// gateway (SPAHandler), and the matching gateway configuration (Config, Clients).
//
// Nothing here is meant for production: the provider keeps everything in memory,
// its users and passwords are fixed (AdminUsername, UserUsername, Password), and
// the client secret is a published constant.
//
// A typical wiring, each piece on its own listener because the provider's login
// UI uses absolute paths and must be served at the root of its origin:
//
//	ep := demo.Endpoints{PublicURL: "http://127.0.0.1:8080", Issuer: "http://127.0.0.1:9998", ...}
//	idp, _ := demo.NewIDP(ep.Issuer, demo.Clients(ep), demo.IDPOptions{})
//	orders, _ := demo.NewService(ctx, "orders", ep.Issuer, demo.ClientIDs(), demo.OrdersRole, nil)
//	reports, _ := demo.NewService(ctx, "reports", ep.Issuer, demo.ClientIDs(), demo.ReportsRole, nil)
//	spa := demo.SPAHandler()
//	cfg := demo.Config(ep, "")
package demo
