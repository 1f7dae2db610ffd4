// Package httperr is the one error shape bffgate answers with:
// {"error": "<code>", "message": "<human text>"}. Handlers return *Error
// values; the edge writes them. Keeping the codes here lets bff, proxy and
// the gateway's own endpoints agree without importing each other.
package httperr

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// Codes from SPEC §3.
const (
	CodeUnauthenticated     = "unauthenticated"
	CodeCSRFRequired        = "csrf_required"
	CodeForbidden           = "forbidden"
	CodeBadRequest          = "bad_request"
	CodeNotFound            = "not_found"
	CodeMethodNotAllowed    = "method_not_allowed"
	CodeTooLarge            = "request_too_large"
	CodeStoreUnavailable    = "session_store_unavailable"
	CodeUpstreamUnavailable = "upstream_unavailable"
	CodeUpstreamTimeout     = "upstream_timeout"
	CodeSessionExpired      = "session_expired"
	CodeProviderUnavailable = "provider_unavailable"
	CodeTokenExchangeFailed = "token_exchange_failed"
	CodeInternal            = "internal_error"
)

// Error is an HTTP error with a stable code. Err, when set, is logged but
// never shown to the client: it may name internal hosts.
type Error struct {
	Status  int
	Code    string
	Message string
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%d %s: %s: %v", e.Status, e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an *Error.
func New(status int, code, msg string) *Error {
	return &Error{Status: status, Code: code, Message: msg}
}

// Wrap returns an *Error that keeps cause for the logs.
func Wrap(status int, code, msg string, cause error) *Error {
	return &Error{Status: status, Code: code, Message: msg, Err: cause}
}

// Write sends e as JSON. Error answers are never cached (some of them
// depend on the session), never sniffed as HTML and never framed.
func Write(w http.ResponseWriter, e *Error) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "frame-ancestors 'none'")
	if e.Status == http.StatusUnauthorized && h.Get("WWW-Authenticate") == "" {
		// Tells API clients (and curl users) why, without inviting a browser prompt.
		h.Set("WWW-Authenticate", `Bearer realm="bffgate"`)
	}
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}{e.Code, e.Message})
}
