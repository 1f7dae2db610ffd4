package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
)

func cmdCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check", checkUsage, stderr)
	path, given := configFlag(fs)
	online := fs.Bool("online", false, "also reach each provider and the session store")
	if !parseFlags(fs, args, stderr) {
		return exitUsage
	}
	cfg, code := loadConfig("check", *path, given(), stderr)
	if cfg == nil {
		if code == exitFail {
			fmt.Fprintf(stderr, "%s: configuration is invalid\n", *path)
		}
		return code
	}
	fmt.Fprint(stdout, cfg.Summary())
	warnings := cfg.Warnings()
	for _, w := range warnings {
		fmt.Fprintf(stderr, "warning: %v\n", w)
	}
	if len(warnings) > 0 {
		fmt.Fprintf(stdout, "%s: configuration is valid, with %d warning(s)\n", *path, len(warnings))
	} else {
		fmt.Fprintf(stdout, "%s: configuration is valid\n", *path)
	}
	if *online {
		client := &http.Client{Timeout: onlineTimeout}
		if n := checkOnline(ctx, cfg, client, stdout); n > 0 {
			fmt.Fprintf(stderr, "%s: %d online check(s) failed\n", *path, n)
			return exitFail
		}
	}
	return exitOK
}
