package observe

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// RedisLogger adapts logger to go-redis's logging interface
// (redis.SetLogger), so the client's own messages (a pool that cannot dial,
// a failed cluster reload) are JSON lines like every other, at warn level
// and tagged "library": "go-redis", instead of plain text on stderr.
type RedisLogger struct{ Logger *slog.Logger }

// Printf logs one go-redis message; its "redis: " prefix goes, the library
// attribute says where the line comes from.
func (l RedisLogger) Printf(ctx context.Context, format string, v ...any) {
	if ctx == nil {
		ctx = context.Background()
	}
	msg := strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: ")
	l.Logger.LogAttrs(ctx, slog.LevelWarn, msg, slog.String("library", "go-redis"))
}
