package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/internal/gateway"
)

func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("serve", serveUsage, stderr)
	path, given := configFlag(fs)
	if !parseFlags(fs, args, stderr) {
		return exitUsage
	}
	cfg, code := loadConfig("serve", *path, given(), stderr)
	if cfg == nil {
		return code
	}
	level := logLevel(cfg.Server.LogLevel)
	logger := newLoggerAt(stderr, level)
	setLibraryLevel(ctx, level)
	for _, w := range cfg.Warnings() {
		logger.Warn("configuration warning", "problem", w.Error())
	}
	o := gateway.Options{Logger: logger}
	if cfg.Server.Tracing.OTLPEndpoint != "" {
		tp, err := startTracing(ctx, cfg, logger)
		if err != nil {
			fmt.Fprintf(stderr, "bffgate: %s: %v\n", cfg.Path, err)
			return exitFail
		}
		defer stopTracing(tp, logger)
		o.TracerProvider = tp
	}
	return serve(ctx, cfg, o, &reloadSource{path: *path}, nil, nil, stderr)
}

// listening, when non-nil, receives the bound addresses (gateway, admin) once
// the listeners are open.
type listening func(addr, admin string)

// reloadSource is where serve reloads the frontends from: the gateway file
// at path, on SIGHUP and when its frontends_dir changes (debounce 0: the
// default).
type reloadSource struct {
	path     string
	debounce time.Duration
}

// serve runs the gateway until SIGTERM/SIGINT (or ctx ends), then drains.
// With a reload source, SIGHUP and changes in frontends_dir reload the
// frontends (nil: the demo, built in code, has nothing to reload). ln, when
// non-nil, is the already open gateway listener (the demo needs its port
// before it can build the config).
func serve(ctx context.Context, cfg *config.Config, o gateway.Options, src *reloadSource, ln net.Listener, onListen listening, stderr io.Writer) int {
	logger := o.Logger
	gw, err := gateway.New(cfg, o)
	if err != nil {
		fmt.Fprintf(stderr, "bffgate: %v\n", err)
		return exitFail
	}
	defer gw.Close()

	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Server.Listen); err != nil {
			fmt.Fprintf(stderr, "bffgate: %s: server.listen: %v\n", cfg.Path, err)
			return exitFail
		}
	}
	servers := []*http.Server{newServer(gw.Handler(cfg.Server.AdminListen == ""), logger)}
	listeners := []net.Listener{ln}
	adminAddr := ""
	if cfg.Server.AdminListen != "" {
		aln, err := net.Listen("tcp", cfg.Server.AdminListen)
		if err != nil {
			ln.Close()
			fmt.Fprintf(stderr, "bffgate: %s: server.admin_listen: %v\n", cfg.Path, err)
			return exitFail
		}
		adminAddr = aln.Addr().String()
		servers = append(servers, newServer(gw.AdminHandler(), logger))
		listeners = append(listeners, aln)
	}
	logger.Info("bffgate listening", "addr", ln.Addr().String(), "admin", adminAddr, "frontends", len(cfg.Frontends))
	if onListen != nil {
		onListen(ln.Addr().String(), adminAddr)
	}

	errc := make(chan error, len(servers))
	for i, s := range servers {
		go func() { errc <- s.Serve(listeners[i]) }()
	}
	// Warm provider metadata so the first login does not pay for discovery,
	// and warn of a store or provider that cannot be reached, on each retry.
	go gw.WatchStartup(ctx)

	var r *reloader
	if src != nil {
		r = &reloader{path: src.path, gw: gw, logger: logger, running: cfg}
		if dir := frontendsDir(cfg); dir != "" {
			debounce := src.debounce
			if debounce == 0 {
				debounce = defaultDebounce
			}
			wctx, stop := context.WithCancel(ctx)
			defer stop()
			if err := r.watch(wctx, dir, debounce); err != nil {
				logger.Warn("cannot watch frontends_dir for changes; SIGHUP still reloads", "dir", dir, "error", err.Error())
			}
		}
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sig)
	for {
		select {
		case s := <-sig:
			if s == syscall.SIGHUP {
				if r == nil {
					logger.Warn("SIGHUP: this process has no files to reload")
					continue
				}
				r.reload("SIGHUP")
				continue
			}
			logger.Info("shutting down", "signal", s.String(), "timeout", cfg.Server.ShutdownTimeout.String())
			return shutdown(servers, cfg.Server.ShutdownTimeout, logger)
		case <-ctx.Done():
			return shutdown(servers, cfg.Server.ShutdownTimeout, logger)
		case err := <-errc:
			if errors.Is(err, http.ErrServerClosed) {
				continue
			}
			logger.Error("server failed", "error", err)
			_ = shutdown(servers, time.Second, logger)
			return exitFail
		}
	}
}

func shutdown(servers []*http.Server, timeout time.Duration, logger *slog.Logger) int {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	code := exitOK
	for _, s := range servers {
		if err := s.Shutdown(ctx); err != nil {
			logger.Warn("in-flight requests cut at shutdown_timeout", "error", err)
		}
	}
	return code
}

func newServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}
