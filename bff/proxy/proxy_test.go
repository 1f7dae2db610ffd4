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
		{"///orders.internal:8080/base/7", "/web", "/api/orders", true, "/web/api/orders/7"},
		{"http:orders.internal:8080/base/7", "/web", "/api/orders", true, "/web/api/orders/7"},
		{"HTTP:///orders.internal:8080/base/7", "/web", "/api/orders", true, "/web/api/orders/7"},
		{" \x01//orders.internal:8080/base/7", "/web", "/api/orders", true, "/web/api/orders/7"},
		{"//orders.internal:8080/%zz", "/web", "/api/orders", true, ""},
		{"//ORDERS.internal.:8080/base/7", "/web", "/api/orders", true, "/web/api/orders/7"},
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

// FuzzPublicLocation: whatever an upstream puts in Location, what reaches
// the browser never names the upstream's host, as a browser would read it.
func FuzzPublicLocation(f *testing.F) {
	for _, s := range []string{"http://orders.internal:8080/base/7", "//orders.internal:8080/base/7", "/\\orders.internal:8080/x",
		"http:orders.internal:8080/x", "///orders.internal/x", "/relative", "https://idp.example.com/login"} {
		f.Add(s)
	}
	up, _ := url.Parse("http://orders.internal:8080/base")
	f.Fuzz(func(t *testing.T, loc string) {
		got, ok := publicLocation(loc, up, "/web", "/api/orders", true)
		if !ok {
			return
		}
		u, err := url.Parse(browserURL(got))
		if err != nil {
			t.Fatalf("%q passed as %q, which does not parse: %v", loc, got, err)
		}
		if sameHost(u, up) {
			t.Fatalf("%q passed as %q, which names the upstream's host", loc, got)
		}
	})
}
