// Command bffgate is the composition root: it parses the command line,
// loads the configuration, builds the session store (the only place that
// knows which one is concrete), the frontends and the HTTP servers, and
// handles signals.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

// Exit codes (SPEC §1).
const (
	exitOK     = 0
	exitFail   = 1
	exitUsage  = 2
	defaultCfg = "bffgate.yaml"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	ctx := withLibraryLogs(context.Background(), os.Stderr)
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  bffgate serve -config FILE        run the gateway (default command)
  bffgate check -config FILE        validate the configuration and print the frontends
  bffgate demo [-listen ADDR] [-redis URL] [-idp-listen ADDR]
                                    everything embedded, for a first look
  bffgate demo idp [-listen ADDR] [-issuer URL] [-public-url URL ...]
  bffgate demo services [-listen ADDR] [-issuer URL]
                                    demo parts, one per container (docker-compose.yml)
  bffgate sessions list|revoke -config FILE [--frontend F] [--sub S] [--sid S]
                                    list or revoke live sessions (redis store; revoke: a filter or --all)
  bffgate version                   print version and build information
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return cmdServe(ctx, args, stdout, stderr)
	case "check":
		return cmdCheck(args, stdout, stderr)
	case "demo":
		return cmdDemo(ctx, args, stdout, stderr)
	case "sessions":
		return cmdSessions(ctx, args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, versionString())
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "bffgate: unknown command %q\n%s", cmd, usage)
		return exitUsage
	}
}

func versionString() string {
	s := "bffgate " + version
	if bi, ok := debug.ReadBuildInfo(); ok {
		s += " " + bi.GoVersion
		for _, kv := range bi.Settings {
			if kv.Key == "vcs.revision" || kv.Key == "vcs.time" || kv.Key == "vcs.modified" {
				s += " " + kv.Key + "=" + kv.Value
			}
		}
	}
	return s
}
