package bff

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/bffgate/bffgate/config"
)

// stepUpSatisfied reports whether the session's ID token meets a route's
// require.acr and require.max_age (SPEC §5 step-up).
func stepUpSatisfied(claims json.RawMessage, req config.Require, now time.Time) bool {
	if len(req.ACR) == 0 && req.MaxAge == 0 {
		return true
	}
	var c struct {
		ACR      string `json:"acr"`
		AuthTime *int64 `json:"auth_time"`
	}
	if err := json.Unmarshal(claims, &c); err != nil {
		return false
	}
	if len(req.ACR) > 0 && !slices.Contains(req.ACR, c.ACR) {
		return false
	}
	if req.MaxAge > 0 && (c.AuthTime == nil || now.Sub(time.Unix(*c.AuthTime, 0)) > req.MaxAge) {
		return false
	}
	return true
}

// stepUpRequired is the 401 that tells the SPA how to log in again: the
// body names the acr_values and max_age to pass to M/bff/login.
func stepUpRequired(c echo.Context, req config.Require) error {
	body := map[string]any{
		"error":   "step_up_required",
		"message": "this route needs a stronger or more recent login: log in again with acr_values and max_age",
	}
	if len(req.ACR) > 0 {
		body["acr_values"] = strings.Join(req.ACR, " ")
	}
	if req.MaxAge > 0 {
		body["max_age"] = int64(req.MaxAge / time.Second)
	}
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	// RFC 9470 (OAuth 2.0 Step Up Authentication Challenge).
	h.Set("WWW-Authenticate", `Bearer error="insufficient_user_authentication"`)
	return c.JSON(http.StatusUnauthorized, body)
}
