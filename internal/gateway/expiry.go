package gateway

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/bffgate/bffgate/bff"
	"github.com/bffgate/bffgate/sessions"
)

// DefaultExpirySweep is how often each instance looks for sessions that the
// store expired by their TTL (Options.ExpirySweep).
const DefaultExpirySweep = 5 * time.Second

// sweepExpired runs until ctx ends: every interval (with jitter, so that
// instances started together do not sweep in step) it asks the Manager for
// the sessions Redis expired and logs each as a session_expired audit event
// and counts it as ended for cause "expired". Every instance sweeps; the
// schedule's atomic removal makes one of them report each session.
func (g *Gateway) sweepExpired(ctx context.Context, interval time.Duration) {
	for {
		wait := interval/2 + rand.N(interval) // mean interval
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		for _, b := range g.Router.BFFs() {
			_, err := g.Sessions.SweepExpired(ctx, b.Name(), func(x sessions.Expired) {
				g.metrics.SessionsEnded(x.Frontend, bff.EndExpired, 1)
				// No request: no client IP, and the line has no request id.
				bff.Audit(ctx, g.logger, slog.LevelInfo, bff.AuditEvent{
					Event: bff.EventSessionExpired, Frontend: x.Frontend, Subject: x.Subject, ProviderSID: x.ProviderSID,
				}, slog.String("cause", "timeout"))
			})
			if err != nil && ctx.Err() == nil {
				// The store is down: readiness and the startup watch say so
				// at warn; this retries on the next tick and loses nothing,
				// since the schedule keeps the entries.
				g.logger.Debug("expiry sweep failed", "frontend", b.Name(), "error", err)
			}
		}
	}
}
