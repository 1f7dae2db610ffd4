package bff

import (
	"html/template"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/bffgate/bffgate/config"
)

// prefersHTML reports whether the client ranks text/html above JSON in its
// Accept header, as browsers navigating to a page do; API clients and
// curl (no Accept, or */*) get JSON.
func prefersHTML(r *http.Request) bool {
	html, json := -1.0, -1.0
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if v, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f
			}
		}
		switch mt {
		case "text/html":
			html = max(html, q)
		case "application/json":
			json = max(json, q)
		}
	}
	return html > 0 && html >= json
}

var errorPage = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Sign-in failed</title></head>
<body><h1>Sign-in failed</h1>
<p>{{.Message}}</p>
{{if .Retry}}<p><a href="{{.Retry}}">Sign in again</a></p>{{end}}
</body></html>
`))

// writeErrorPage answers a browser with a small HTML page: the message and
// a link that starts a new login. It cannot be framed, sniffed or cached.
func (b *BFF) writeErrorPage(c echo.Context, status int, msg string) error {
	h := c.Response().Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	c.Response().WriteHeader(status)
	retry := b.base + "/bff/login"
	if b.fe.Kind == config.KindMobile {
		retry = "" // only the app can start its login (it holds the PKCE verifier)
	}
	return errorPage.Execute(c.Response(), struct{ Message, Retry string }{msg, retry})
}
