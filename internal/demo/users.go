package demo

import (
	"bytes"
	"html/template"
	"net/http"
	"strconv"
	"strings"

	"github.com/zitadel/oidc/v3/example/server/storage"
)

// The example user store's ids of the two demo users.
var demoUserIDs = []string{"id1", "id2"}

// demoEmails gives each demo user an email that matches its login name
// (test-user@<host>, and test-user2@<host> for test-user2) instead of the
// example's @zitadel.ch addresses, which made the page show an address the
// user never typed. The store is this provider's own, fresh from
// storage.NewUserStore, so changing its users touches no one else.
func demoEmails(users storage.UserStore, issuer string) {
	host := demoHost(issuer)
	for _, id := range demoUserIDs {
		if u := users.GetUserByID(id); u != nil {
			u.Email = u.Username
			if !strings.Contains(u.Email, "@") {
				u.Email += "@" + host
			}
		}
	}
}

// demoHost is the issuer's host name, as storage.NewUserStore derives it.
func demoHost(issuer string) string {
	_, rest, _ := strings.Cut(issuer, "://")
	host, _, _ := strings.Cut(rest, ":")
	return host
}

// usersHint is what the login form adds: the demo users and their password.
var usersHint = template.Must(template.New("users").Parse(`<div id="demo-users" style="margin-top:1rem;font-size:13px">
<p><strong>Demo users</strong> (password <code>{{.Password}}</code>):</p>
<ul>
<li><code>{{.Admin}}</code>: roles admin, user</li>
<li><code>{{.User}}</code>: role user</li>
</ul>
</div>
`))

// loginPath is the example OP's login form.
const loginPath = "/login/username"

// listDemoUsers adds the list of demo users to the example's login form
// (its template is embedded in the example package), so nobody has to look
// the names up in the README.
func listDemoUsers(next http.Handler, issuer string) http.Handler {
	var hint bytes.Buffer
	_ = usersHint.Execute(&hint, struct{ Admin, User, Password string }{AdminUsername(issuer), UserUsername, Password})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != loginPath {
			next.ServeHTTP(w, r)
			return
		}
		rec := &bufferedResponse{header: http.Header{}, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		body := rec.body.Bytes()
		if rec.header.Get("Content-Type") == "" {
			// What net/http would have sniffed had the example written to w.
			rec.header.Set("Content-Type", http.DetectContentType(body))
		}
		if strings.HasPrefix(rec.header.Get("Content-Type"), "text/html") {
			body = bytes.Replace(body, []byte("</form>"), append([]byte("</form>"), hint.Bytes()...), 1)
		}
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(rec.status)
		_, _ = w.Write(body)
	})
}

// bufferedResponse keeps a response so that listDemoUsers can edit it.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
	wrote  bool
}

func (b *bufferedResponse) Header() http.Header { return b.header }
func (b *bufferedResponse) Write(p []byte) (int, error) {
	b.wrote = true
	return b.body.Write(p)
}
func (b *bufferedResponse) WriteHeader(status int) {
	if !b.wrote {
		b.status = status
		b.wrote = true
	}
}
