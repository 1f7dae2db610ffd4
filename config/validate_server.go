package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"
)

func (v *validator) server() {
	s, file := &v.c.Server, v.c.Path
	if s.PublicURL == "" {
		v.add(file, "server.public_url", "is required: the external origin, such as https://app.example.com")
	} else if msg := checkOrigin(s.PublicURL, s.AllowInsecureHTTP); msg != "" {
		v.add(file, "server.public_url", "%s", msg)
	}
	if msg := checkListen(s.Listen); msg != "" {
		v.add(file, "server.listen", "%s", msg)
	}
	if s.AdminListen != "" {
		if msg := checkListen(s.AdminListen); msg != "" {
			v.add(file, "server.admin_listen", "%s", msg)
		} else if s.AdminListen == s.Listen && !strings.HasSuffix(s.Listen, ":0") {
			v.add(file, "server.admin_listen", "must differ from server.listen (leave it empty to serve both there)")
		}
	}
	for i, p := range s.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err == nil {
			continue
		}
		if _, err := netip.ParseAddr(p); err == nil {
			continue
		}
		k := fmt.Sprintf("server.trusted_proxies[%d]", i)
		v.add(file, k, "%s is not an IP address or CIDR such as 10.0.0.0/8", v.q(file, k, p))
	}
	v.positive(file, "server.shutdown_timeout", s.ShutdownTimeout)
	if s.MaxBodyBytes <= 0 {
		v.add(file, "server.max_body_bytes", "must be positive")
	}
	switch s.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		v.add(file, "server.log_level", "must be debug, info, warn or error, not %q", s.LogLevel)
	}
	if e := s.Tracing.OTLPEndpoint; e != "" {
		if u, err := url.Parse(e); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
			v.add(file, "server.tracing.otlp_endpoint", "%q is not an http(s) URL such as http://otel-collector:4318", e)
		}
	}
	if r := s.Tracing.SampleRatio; r != nil && (*r < 0 || *r > 1) {
		v.add(file, "server.tracing.sample_ratio", "must be between 0 and 1, not %v", *r)
	}
}
