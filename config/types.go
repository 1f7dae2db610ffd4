// Package config holds bffgate's configuration types and turns YAML files into
// a validated Config: environment expansion, strict decoding (unknown keys are
// errors), defaults, then a pure Validate that reports every problem at once,
// each with its file and key path. It never touches the network.
package config

import "time"

// Config is the whole gateway configuration (the file given with -config plus
// every frontend file).
type Config struct {
	Server   Server   `yaml:"server"`
	Sessions Sessions `yaml:"sessions"`
	// FrontendsDir holds one file per frontend: every *.yaml and *.yml in it,
	// not recursing, dot-files skipped. Relative to the config file.
	FrontendsDir string `yaml:"frontends_dir"`
	// Frontends may be given inline instead of (or in addition to)
	// FrontendsDir; after Load the inline ones come first, then the files'.
	Frontends []Frontend `yaml:"frontends"`
	// FrontendEnv lists the environment variables that frontend files may
	// read besides their own <NAME>_* ones (SPEC section 4), such as a
	// shared ISSUER_URL. Inline frontends may read any variable.
	FrontendEnv []string `yaml:"frontend_env"`

	// Path is the file this config was loaded from ("" when built in code);
	// messages about server, sessions and inline frontends name it.
	Path string `yaml:"-"`

	// src holds, per file name, the key path lines and expanded values that
	// decoding found (nil for a Config built in code).
	src map[string]*fileInfo
}

// info is what decoding learnt about file; nil (which answers "nothing")
// for a Config built in code.
func (c *Config) info(file string) *fileInfo {
	return c.src[file]
}

// Server configures the listeners.
type Server struct {
	// Listen is the gateway's listener. Default 127.0.0.1:8080.
	Listen string `yaml:"listen"`
	// PublicURL is the external origin (scheme://host[:port], no path; a
	// trailing "/" is dropped); redirect URIs are built from it. Required.
	// http:// is accepted for loopback hosts, elsewhere only with
	// AllowInsecureHTTP.
	PublicURL string `yaml:"public_url"`
	// AdminListen, when set, serves /healthz, /readyz and /metrics there instead of on Listen.
	AdminListen string `yaml:"admin_listen"`
	// TrustedProxies are CIDRs whose X-Forwarded-* headers are honoured. Empty: none.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// ShutdownTimeout bounds the drain of in-flight requests. Default 20s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// MaxBodyBytes limits request bodies (413 above it). Default 10 MiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// AllowInsecureHTTP permits an http:// public_url on a non-loopback host
	// (cookies then lose Secure and the __Host- prefix). Dev only.
	AllowInsecureHTTP bool `yaml:"allow_insecure_http"`
	// LogLevel is the least level logged: debug, info, warn or error.
	// Default info.
	LogLevel string `yaml:"log_level"`
	// Tracing exports OpenTelemetry spans; off while OTLPEndpoint is empty.
	Tracing Tracing `yaml:"tracing"`
}

// Tracing configures OpenTelemetry traces, exported with OTLP over HTTP.
type Tracing struct {
	// OTLPEndpoint is the collector's base URL (http or https, e.g.
	// http://otel-collector:4318); spans are POSTed to <OTLPEndpoint>/v1/traces.
	// Empty: no tracing.
	OTLPEndpoint string `yaml:"otlp_endpoint"`
	// SampleRatio is the share of new traces sampled, 0 to 1; a request with
	// a sampled traceparent is always followed (parent-based). Default 1.
	SampleRatio *float64 `yaml:"sample_ratio"`
}

// Sessions configures the session store and cookie sealing.
type Sessions struct {
	// Store is redis or memory. Default memory.
	Store string `yaml:"store"`
	Redis Redis  `yaml:"redis"`
	// IdleTimeout ends a session not used for this long. Default 30m.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// AbsoluteTimeout ends any session this long after login. Default 12h.
	AbsoluteTimeout time.Duration `yaml:"absolute_timeout"`
	// RefreshMargin: refresh the access token when it expires within this. Default 60s.
	RefreshMargin time.Duration `yaml:"refresh_margin"`
	// ProviderTimeout bounds one request to an identity provider (token,
	// revocation, discovery). A refresh once sent is awaited this long even
	// when the client that caused it has gone. Default 30s.
	ProviderTimeout time.Duration `yaml:"provider_timeout"`
	// CookieKeys seal cookies and handles; the first pair seals, all open.
	// Required for the redis store (every instance must share them); with the
	// memory store, random keys are generated when empty.
	CookieKeys []CookieKey `yaml:"cookie_keys"`
	// Cache is the in-process cache of session records (redis store only).
	Cache SessionCache `yaml:"cache"`
}

// SessionCache configures the in-process cache in front of the Redis store.
// Every instance drops an entry as soon as any instance writes or ends that
// session (Redis pub/sub), so revocation stays immediate.
type SessionCache struct {
	// Enabled: nil means on with the redis store (and moot with memory).
	Enabled *bool `yaml:"enabled"`
	// MaxEntries bounds the cache (about 2 KB each). Zero means 10000.
	MaxEntries int `yaml:"max_entries"`
}

// On reports whether the cache is in use: the redis store, not disabled.
func (c SessionCache) On(store string) bool {
	return store == "redis" && (c.Enabled == nil || *c.Enabled)
}

// CookieKey is one securecookie key pair, both base64 (std or URL encoding).
type CookieKey struct {
	Hash  string `yaml:"hash"`  // 32 or 64 bytes
	Block string `yaml:"block"` // 32 bytes (AES-256)
}

// Redis configures the go-redis UniversalClient.
type Redis struct {
	// URL is a redis:// or rediss:// URL for a single node.
	URL string `yaml:"url"`
	// Addrs lists host:port seeds for a cluster, or sentinels with MasterName.
	Addrs      []string `yaml:"addrs"`
	MasterName string   `yaml:"master_name"`
	Username   string   `yaml:"username"`
	Password   string   `yaml:"password"`
	// SentinelUsername and SentinelPassword authenticate to the sentinels
	// themselves (their own requirepass or ACL user), which may differ
	// from the data nodes' username and password.
	SentinelUsername string `yaml:"sentinel_username"`
	SentinelPassword string `yaml:"sentinel_password"`
	DB               int    `yaml:"db"`
	TLS              bool   `yaml:"tls"`
	// KeyPrefix namespaces every key. Default "bffgate:".
	KeyPrefix    string        `yaml:"key_prefix"`
	DialTimeout  time.Duration `yaml:"dial_timeout"`  // default 1s
	ReadTimeout  time.Duration `yaml:"read_timeout"`  // default 500ms
	WriteTimeout time.Duration `yaml:"write_timeout"` // default 500ms
	PoolSize     int           `yaml:"pool_size"`     // default 10 per CPU
	MinIdleConns int           `yaml:"min_idle_conns"`
}

// Frontend kinds.
const (
	KindSPA    = "spa"
	KindMobile = "mobile"
)

// Route token modes.
const (
	TokenUser   = "user"
	TokenClient = "client"
	TokenNone   = "none"
	// TokenUserOrNone sends the user's token when the request carries a
	// live session (and X-CSRF for a spa), else forwards it anonymously.
	TokenUserOrNone = "user_or_none"
	// TokenUserOrClient sends the user's token when the request carries a
	// live session (and X-CSRF for a spa), else the frontend's
	// client-credentials token.
	TokenUserOrClient = "user_or_client"
	// TokenExchange sends a token the provider issued in exchange for the
	// user's (RFC 8693), restricted to the route's exchange audience,
	// resource and scopes.
	TokenExchange = "exchange"
)

// Frontend is one BFF, usually one file owned by that frontend's team.
type Frontend struct {
	// Name is [a-z0-9-]+ and unique.
	Name string `yaml:"name"`
	// Kind is spa (default) or mobile.
	Kind string `yaml:"kind"`
	// Mount is the path prefix this BFF owns ("/web"; a trailing "/" is
	// dropped); "/" for at most one frontend per host. Required.
	Mount string `yaml:"mount"`
	// Host, when set, restricts this frontend to that Host header.
	Host        string           `yaml:"host"`
	OIDC        OIDC             `yaml:"oidc"`
	Cookie      Cookie           `yaml:"cookie"`
	Session     SessionOverrides `yaml:"session"`
	AfterLogin  string           `yaml:"after_login"`  // default Mount + "/"
	AfterLogout string           `yaml:"after_logout"` // default Mount + "/"
	// ReturnTo lists allowed returnTo values: path prefixes for spa (default
	// [Mount + "/"]), exact app redirect URIs for mobile.
	ReturnTo   []string    `yaml:"return_to"`
	CORS       CORS        `yaml:"cors"`
	Routes     []Route     `yaml:"routes"`
	Aggregates []Aggregate `yaml:"aggregates"`

	// Source is the file this frontend came from, for messages: frontends_dir
	// joined with the file name ("frontends/web.yaml"), or Config.Path for an
	// inline frontend.
	Source string `yaml:"-"`
}

// OIDC is the frontend's confidential client at the provider.
type OIDC struct {
	Issuer       string   `yaml:"issuer"`
	ClientID     string   `yaml:"client_id"`
	ClientSecret string   `yaml:"client_secret"`
	Scopes       []string `yaml:"scopes"` // default [openid, profile, email, offline_access]
	// AuthParams are extra authorize parameters (audience, prompt, acr_values...).
	AuthParams map[string]string `yaml:"auth_params"`
	// ClientAuth is how the BFF authenticates at the token, PAR and
	// revocation endpoints: client_secret_basic (default),
	// client_secret_post or private_key_jwt.
	ClientAuth string `yaml:"client_auth"`
	// PrivateKeyFile is the PEM private key (RSA >= 2048 bits or EC P-256)
	// for private_key_jwt, relative to the file it is written in.
	PrivateKeyFile string `yaml:"private_key_file"`
	// PrivateKeyPath is PrivateKeyFile resolved by ApplyDefaults.
	PrivateKeyPath string `yaml:"-"`
	// PAR is auto (default: when the provider offers it), always or never.
	PAR string `yaml:"par"`
	// DPoP asks for DPoP-bound tokens with a key per session; false by
	// default (profile fapi2 implies true).
	DPoP bool `yaml:"dpop"`
	// Profile is "" or fapi2 (FAPI 2.0 Security Profile client).
	Profile string `yaml:"profile"`
}

// Cookie configures the session cookie.
type Cookie struct {
	// Name defaults to __Host-bff-<name> on https, bff-<name> on http.
	Name string `yaml:"name"`
	// SameSite is strict (default) or lax.
	SameSite string `yaml:"same_site"`
}

// SessionOverrides replace sessions.* for one frontend when non-zero;
// ApplyDefaults copies the global values into the zero ones.
type SessionOverrides struct {
	IdleTimeout     time.Duration `yaml:"idle_timeout"`
	AbsoluteTimeout time.Duration `yaml:"absolute_timeout"`
}

// CORS lists the origins allowed to call this BFF with credentials.
type CORS struct {
	AllowedOrigins []string `yaml:"allowed_origins"`
}

// Route forwards M+Prefix/... to Upstream.
type Route struct {
	// Prefix is relative to the mount, starts with "/", matches whole segments.
	Prefix string `yaml:"prefix"`
	// Upstream is an absolute http(s) URL, optionally with a base path.
	Upstream string `yaml:"upstream"`
	// StripPrefix removes Prefix before forwarding (/web/api/orders/7 -> /7).
	StripPrefix bool `yaml:"strip_prefix"`
	// Token is user (default), client, none (anonymous route),
	// user_or_none, user_or_client or exchange. A client route sends the frontend's
	// own client-credentials token instead of the user's, but still
	// requires a live user session (and X-CSRF for a spa). The user_or_*
	// routes are public: they send the user's token only for a live
	// session presented with X-CSRF (a spa) or a handle (mobile), and
	// otherwise nothing or the client token. An exchange route needs a
	// live session like user and sends a token exchanged for the user's
	// (see Exchange).
	Token string `yaml:"token"`
	// Exchange is required with token: exchange and refused with any
	// other token: a pointer, so that a stray `exchange:` is seen.
	Exchange *Exchange `yaml:"exchange"`
	Require  Require   `yaml:"require"`
	Methods  []string  `yaml:"methods"` // default all; upper-cased by ApplyDefaults
	// Timeout bounds the whole upstream exchange. Default 30s.
	Timeout time.Duration `yaml:"timeout"`
}

// Exchange is what a token: exchange route asks the provider for in
// exchange for the user's access token (RFC 8693). At least one of Audience
// and Resource is required: a token for "any service" is the user's token
// again.
type Exchange struct {
	// Audience is the target service's name at the provider (RFC 8693
	// audience), which becomes the exchanged token's aud at most providers.
	Audience string `yaml:"audience"`
	// Resource is the target service's absolute URI without fragment (RFC
	// 8707 resource indicator).
	Resource string `yaml:"resource"`
	// Scopes are asked for the exchanged token; empty leaves them to the
	// provider.
	Scopes []string `yaml:"scopes"`
}

// Require holds coarse checks made before forwarding (403 when not met).
type Require struct {
	// Claims maps an ID-token claim (dotted for nested) to accepted values; any value matches.
	Claims map[string][]string `yaml:"claims"`
	// ACR (step-up): the session's acr must be one of these, else 401
	// step_up_required. Empty: any.
	ACR []string `yaml:"acr"`
	// MaxAge (step-up): the user authenticated (auth_time) at most this long
	// ago, else 401 step_up_required. Zero: no limit.
	MaxAge time.Duration `yaml:"max_age"`
}

// Limits of a login's acr_values and max_age (M/bff/login), which a route's
// require.acr and require.max_age must stay within: the 401 step_up_required
// body hands them to the browser for that login.
const (
	MaxACRValues = 512                     // characters of acr_values
	MaxStepUpAge = (1 << 31) * time.Second // max_age
)

// Any reports whether the route checks anything about the session.
func (r Require) Any() bool { return len(r.Claims) > 0 || len(r.ACR) > 0 || r.MaxAge != 0 }

// Aggregate fans one GET out to several upstream calls.
type Aggregate struct {
	Path    string          `yaml:"path"`
	Timeout time.Duration   `yaml:"timeout"` // default 10s
	Parts   map[string]Part `yaml:"parts"`
}

// Part is one call of an Aggregate.
type Part struct {
	Upstream string `yaml:"upstream"`
	Path     string `yaml:"path"`
	Required bool   `yaml:"required"`
}
