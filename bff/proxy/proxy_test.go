package proxy

import (
	"net/url"
	"testing"
)

func TestPublicLocation(t *testing.T) {
	up, _ := url.Parse("http://orders.internal:8080/base")
	cases := []struct {
		loc, mount, prefix string
		strip              bool
		want               string
	}{
		{"http://orders.internal:8080/base/7?x=1", "/web", "/api/orders", true, "/web/api/orders/7?x=1"},
		{"http://orders.internal:8080/base/api/orders/7", "/web", "/api/orders", false, "/web/api/orders/7"},
		{"http://ORDERS.internal:8080/base", "/", "/", true, "/"},
		{"/relative/path", "/web", "/api/orders", true, "/relative/path"},
		{"https://idp.example.com/login", "/web", "/api/orders", true, "https://idp.example.com/login"},
		{"http://orders.internal:8080/other", "/web", "/api/orders", true, "http://orders.internal:8080/other"},
		{"http://orders.internal:9090/base/7", "/web", "/api/orders", true, "http://orders.internal:9090/base/7"},
	}
	for _, c := range cases {
		if got := publicLocation(c.loc, up, c.mount, c.prefix, c.strip); got != c.want {
			t.Errorf("publicLocation(%q, strip=%v) = %q, want %q", c.loc, c.strip, got, c.want)
		}
	}
}
