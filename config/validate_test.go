package config

import (
	"strings"
	"testing"
	"time"
)

// validConfig is a minimal Config built in code, as the demo builds one.
func validConfig() *Config {
	return &Config{
		Server: Server{PublicURL: "http://127.0.0.1:8080"},
		Frontends: []Frontend{{
			Name:  "web",
			Mount: "/",
			OIDC:  OIDC{Issuer: "http://127.0.0.1:9998", ClientID: "web", ClientSecret: "secret"},
			Routes: []Route{{
				Prefix:   "/api",
				Upstream: "http://127.0.0.1:9001",
			}},
		}},
	}
}

func TestValidateInCode(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string // "" for valid
	}{
		{name: "valid", change: func(*Config) {}},
		{
			name:   "no file: messages start with the key path",
			change: func(c *Config) { c.Frontends[0].Routes[0].Upstream = "127.0.0.1:9001" },
			want:   `frontends[0].routes[0].upstream: "127.0.0.1:9001" is not an absolute http(s) URL; did you mean "http://127.0.0.1:9001"?`,
		},
		{
			name:   "http public_url on a LAN host",
			change: func(c *Config) { c.Server.PublicURL = "http://192.168.1.10:8080" },
			want:   "server.public_url: must use https; http is only for loopback hosts, or with server.allow_insecure_http for development",
		},
		{
			name: "http public_url with the loud opt-out",
			change: func(c *Config) {
				c.Server.PublicURL = "http://192.168.1.10:8080"
				c.Server.AllowInsecureHTTP = true
			},
		},
		{
			name:   "same listener twice",
			change: func(c *Config) { c.Server.Listen, c.Server.AdminListen = "127.0.0.1:8080", "127.0.0.1:8080" },
			want:   "server.admin_listen: must differ from server.listen (leave it empty to serve both there)",
		},
		{
			name: "catch-all route leaves room for an aggregate",
			change: func(c *Config) {
				f := &c.Frontends[0]
				f.Routes = append(f.Routes, Route{Prefix: "/", Upstream: "http://127.0.0.1:3000", Token: TokenNone})
				f.Aggregates = []Aggregate{{Path: "/dashboard", Parts: map[string]Part{"a": {Upstream: "http://127.0.0.1:9002", Path: "/a"}}}}
			},
		},
		{
			name: "source file names frontend problems",
			change: func(c *Config) {
				c.Path = "gateway.yaml"
				c.Frontends[0].Source = "frontends/web.yaml"
				c.Frontends[0].Routes[0].Timeout = -time.Second
			},
			want: "frontends/web.yaml: routes[0].timeout: must be positive",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.change(c)
			c.ApplyDefaults()
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.want != "" && (err == nil || err.Error() != tt.want):
				t.Fatalf("Validate = %v\nwant %s", err, tt.want)
			}
		})
	}
}

func TestDefaultsInCode(t *testing.T) {
	c := validConfig()
	c.ApplyDefaults()
	f := c.Frontends[0]
	if c.Secure() {
		t.Error("Secure() on an http public_url")
	}
	if f.Cookie.Name != "bff-web" || f.AfterLogin != "/" || f.AfterLogout != "/" || len(f.ReturnTo) != 1 || f.ReturnTo[0] != "/" {
		t.Errorf("root frontend defaults: cookie %q, after_login %q, after_logout %q, return_to %q", f.Cookie.Name, f.AfterLogin, f.AfterLogout, f.ReturnTo)
	}
	if got := f.MountPath("/bff/callback"); got != "/bff/callback" {
		t.Errorf("MountPath on / = %q", got)
	}
	f.Mount = "/web"
	if got := f.MountPath("/bff/callback"); got != "/web/bff/callback" {
		t.Errorf("MountPath on /web = %q", got)
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		err  Error
		want string
	}{
		{Error{File: "frontends/web.yaml", Path: "routes[2].upstream", Msg: "bad"}, "frontends/web.yaml: routes[2].upstream: bad"},
		{Error{File: "gateway.yaml", Line: 7, Path: "server.listn", Msg: "unknown key"}, "gateway.yaml:7: server.listn: unknown key"},
		{Error{File: "gateway.yaml", Line: 2, Msg: "syntax"}, "gateway.yaml:2: syntax"},
		{Error{Path: "server.public_url", Msg: "is required"}, "server.public_url: is required"},
		{Error{Line: 3, Msg: "syntax"}, "line 3: syntax"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestCookieKeyDecode(t *testing.T) {
	hash, block, err := CookieKey{Hash: testHashKey, Block: testBlockKey}.Decode()
	if err != nil || len(hash) != 32 || len(block) != 32 {
		t.Fatalf("Decode = %d, %d bytes, %v", len(hash), len(block), err)
	}
	_, _, err = CookieKey{Hash: "c2hvcnQ=", Block: "secret-not-base64!"}.Decode()
	if err == nil {
		t.Fatal("Decode accepted bad keys")
	}
	if msg := err.Error(); !strings.Contains(msg, "hash: decodes to 5 bytes") || strings.Contains(msg, "secret-not-base64") {
		t.Errorf("Decode error = %q: want the sizes named and the key never quoted", msg)
	}
}
