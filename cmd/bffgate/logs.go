package main

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/bffgate/bffgate/bff"
	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/internal/observe"
	"github.com/bffgate/bffgate/sessions"
)

// newLoggerAt is the process's one log format: slog JSON at level.
func newLoggerAt(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
}

// logLevel turns a validated server.log_level into its slog level.
func logLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}

type libraryLevelKey struct{}

// withLibraryLogs routes the libraries' process-wide loggers (go-redis
// has one, set by redis.SetLogger) through a JSON handler on w, once, here
// in the composition root. Their level is the returned context's: a command
// sets it with setLibraryLevel when it has read server.log_level.
func withLibraryLogs(ctx context.Context, w io.Writer) context.Context {
	level := new(slog.LevelVar)
	redis.SetLogger(observe.RedisLogger{Logger: newLoggerAt(w, level)})
	return context.WithValue(ctx, libraryLevelKey{}, level)
}

// setLibraryLevel applies a config's log level to the library logs, when
// withLibraryLogs set them up (not in tests that call run directly).
func setLibraryLevel(ctx context.Context, level slog.Level) {
	if lv, ok := ctx.Value(libraryLevelKey{}).(*slog.LevelVar); ok {
		lv.Set(level)
	}
}

// revokedEvent logs, as JSON on w at the config's level, the "revoked"
// audit event of each session `sessions revoke` ends. The client of an
// operator's revocation is this command: client_ip stays empty.
func revokedEvent(ctx context.Context, cfg *config.Config, w io.Writer) func(sessions.Found) {
	logger := newLoggerAt(w, logLevel(cfg.Server.LogLevel))
	return func(s sessions.Found) {
		bff.Audit(ctx, logger, slog.LevelInfo, bff.AuditEvent{
			Event: bff.EventRevoked, Frontend: s.Meta.Frontend, Subject: s.Meta.Subject, ProviderSID: s.Meta.ProviderSID,
		}, slog.String("by", "bffgate sessions revoke"))
	}
}

// startTracing builds the OTLP tracer provider of server.tracing. The
// OpenTelemetry SDK reports export failures through its process-wide error
// handler, by default as plain text: here, the composition root, it is set
// once to the JSON log.
func startTracing(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*sdktrace.TracerProvider, error) {
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		logger.Warn("trace export failed", "library", "opentelemetry", "error", err.Error())
	}))
	return observe.NewTracerProvider(ctx, cfg.Server.Tracing, version)
}

// stopTracing flushes the spans still batched, for at most 5 s.
func stopTracing(tp *sdktrace.TracerProvider, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tp.Shutdown(ctx); err != nil {
		logger.Warn("trace export at shutdown failed", "error", err.Error())
	}
}
