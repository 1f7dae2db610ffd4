package aggregate

import "net/http"

// WrapTransport replaces the transport of the handler's part calls with
// wrap(current), for instance to time them. Call it before serving.
func (h *Handler) WrapTransport(wrap func(http.RoundTripper) http.RoundTripper) {
	h.client.Transport = wrap(h.client.Transport)
}
