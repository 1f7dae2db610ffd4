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
		want               string // "" dropped
	}{
		{"http://orders.internal:8080/base/7?x=1", "/web", "/api/orders", true, "/web/api/orders/7?x=1"},
		{"http://orders.internal:8080/base/api/orders/7", "/web", "/api/orders", false, "/web/api/orders/7"},
		{"http://ORDERS.internal:8080/base", "/", "/", true, "/"},
		{"/relative/path", "/web", "/api/orders", true, "/relative/path"},
		{"https://idp.example.com/login", "/web", "/api/orders", true, "https://idp.example.com/login"},
		{"http://orders.internal:8080/other", "/web", "/api/orders", true, ""},
		{"http://orders.internal:9090/base/7", "/web", "/api/orders", true, ""},
		{"https://orders.internal/base/7", "/web", "/api/orders", true, ""},
		// Scheme-relative, and the spellings a browser reads as such.
		{"//orders.internal:8080/base/7?x=1", "/web", "/api/orders", true, "/web/api/orders/7?x=1"},
		{"/\\orders.internal:8080/base/7", "/web", "/api/orders", true, "/web/api/orders/7"},
		{"\\\\orders.internal:8080/base/7", "/web", "/api/orders", true, "/web/api/orders/7"},
		{"/\t/orders.internal:8080/base/7", "/web", "/api/orders", true, "/web/api/orders/7"},
		{"http:\\\\orders.internal:8080/base/7", "/web", "/api/orders", true, "/web/api/orders/7"},
		{"//orders.internal:8080/internal", "/web", "/api/orders", true, ""},
		{"//10.0.0.5:8080/internal", "/web", "/api/orders", true, "//10.0.0.5:8080/internal"},
		{"/7?next=//orders.internal:8080/x", "/web", "/api/orders", true, "/7?next=//orders.internal:8080/x"},
	}
	for _, c := range cases {
		got, ok := publicLocation(c.loc, up, c.mount, c.prefix, c.strip)
		if !ok {
			got = ""
		}
		if got != c.want {
			t.Errorf("publicLocation(%q, strip=%v) = %q, want %q", c.loc, c.strip, got, c.want)
		}
	}
}
