package bff

import (
	"net/url"
	"testing"
)

// FuzzParseSessionRequest feeds POST M/bff/session bodies, JSON and
// form-encoded, to the parser the app's token request goes through. It must
// never panic, accept only a request that names both a code and a verifier
// (and, form-encoded, the authorization_code grant), answer every refusal
// with an RFC 6749 error code, and read a form the way url.ParseQuery does.
// Seeds: testdata/fuzz/FuzzParseSessionRequest.
func FuzzParseSessionRequest(f *testing.F) {
	const form = "application/x-www-form-urlencoded"
	f.Add("application/json", []byte(`{"code":"c","code_verifier":"v"}`))
	f.Add(form, []byte("grant_type=authorization_code&code=c&code_verifier=v&redirect_uri=com.example.app%3A%2Fcb"))
	f.Add(form+"; charset=UTF-8", []byte("grant_type=refresh_token&refresh_token=x"))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		req, err := parseSessionRequest(contentType, body)
		if req.OAuth != isForm(contentType) {
			t.Fatalf("OAuth %v for Content-Type %q", req.OAuth, contentType)
		}
		if err != nil {
			switch err.Code {
			case "invalid_request", "unsupported_grant_type":
			default:
				t.Fatalf("error code %q is not an RFC 6749 token error", err.Code)
			}
			if err.Description == "" {
				t.Fatal("an error without a description")
			}
			return
		}
		if req.Code == "" || req.Verifier == "" {
			t.Fatalf("accepted without code or verifier: %+v", req)
		}
		if !req.OAuth {
			return
		}
		v, perr := url.ParseQuery(string(body))
		if perr != nil {
			t.Fatalf("accepted a form url.ParseQuery refuses: %v", perr)
		}
		if v.Get("grant_type") != "authorization_code" || v.Get("code") != req.Code ||
			v.Get("code_verifier") != req.Verifier || v.Get("redirect_uri") != req.RedirectURI {
			t.Fatalf("parsed %+v from %q", req, body)
		}
		for k, vs := range v {
			if len(vs) > 1 {
				t.Fatalf("accepted the repeated parameter %q", k)
			}
		}
	})
}
