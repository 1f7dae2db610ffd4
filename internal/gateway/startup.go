package gateway

import (
	"context"
	"time"
)

// Back-off of the start-up checks: the provider loader's own schedule, so
// each check is a real retry rather than its cached failure.
const (
	startupFirstRetry = time.Second
	startupMaxRetry   = 30 * time.Second
)

// WatchStartup checks from the start that the session store answers and
// every frontend's provider metadata loads (which warms discovery for the
// first login). Each part that cannot be reached is logged at warn, with the
// delay before the next try, and retried with back-off (1 s doubling to
// 30 s) until every part is ready, logged once at info, or ctx ends. So an
// outage at start is in the log at once and on each retry, and /readyz
// probes add nothing to it.
func (g *Gateway) WatchStartup(ctx context.Context) {
	wait := startupFirstRetry
	for attempt := 1; ; attempt++ {
		failing, err := g.Ready(ctx)
		if err == nil {
			if attempt > 1 {
				g.logger.InfoContext(ctx, "ready: the session store and every identity provider answer", "attempts", attempt)
			}
			return
		}
		if ctx.Err() != nil {
			return
		}
		g.logger.WarnContext(ctx, "not ready: cannot reach a dependency; retrying",
			"failing", failing, "error", err.Error(), "attempt", attempt, "retry_in", wait.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, startupMaxRetry)
	}
}
