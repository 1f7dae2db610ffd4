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

const usage = `bffgate: a Backends-for-Frontends OIDC session gateway

usage:
  bffgate serve -config FILE        run the gateway (the default command when only -config is given)
  bffgate check -config FILE [-online]
                                    validate the configuration and print the frontends;
                                    -online also reaches each provider and the session store
  bffgate demo [-listen ADDR] [-redis URL] [-idp-listen ADDR]
                                    everything embedded, for a first look
  bffgate demo idp [-listen ADDR] [-issuer URL] [-public-url URL ...]
  bffgate demo services [-listen ADDR] [-issuer URL]
                                    demo parts, one per container (docker-compose.yml)
  bffgate sessions list|revoke -config FILE [--frontend F] [--sub S] [--sid S] [--id ID]
                                    list or revoke live sessions (redis store; list: --json;
                                    revoke: a filter or --all)
  bffgate version                   print version and build information (also --version)
  bffgate help [COMMAND]            this text, or a command's (also -h, --help)

Start with "bffgate demo", or "bffgate check -config gateway.yaml" for your own files.
Exit codes: 0 ok, 1 bad configuration or runtime failure, 2 bad usage.
`

// commandUsage is each command's help, printed by "bffgate help COMMAND",
// "bffgate COMMAND -h" and, on stderr, after a usage error.
func commandUsage(cmd string) (string, bool) {
	switch cmd {
	case "serve":
		return serveUsage, true
	case "check":
		return checkUsage, true
	case "demo":
		return demoUsage, true
	case "sessions":
		return sessionsUsage, true
	case "version":
		return "usage:\n  bffgate version    print version and build information\n", true
	}
	return "", false
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	cmd := "serve"
	if a := args[0]; a != "" && a[0] != '-' {
		cmd, args = a, args[1:]
	} else {
		// Flags before any command: the overview and the version are
		// answered here; anything else is serve's (bffgate -config FILE).
		switch {
		case isHelp(a):
			fmt.Fprint(stdout, usage)
			return exitOK
		case a == "--version" || a == "-version":
			fmt.Fprintln(stdout, versionString())
			return exitOK
		}
	}
	if cmd == "help" {
		if len(args) == 0 {
			fmt.Fprint(stdout, usage)
			return exitOK
		}
		u, ok := commandUsage(args[0])
		if !ok {
			fmt.Fprintf(stderr, "bffgate help: unknown command %q\n\n%s", args[0], usage)
			return exitUsage
		}
		fmt.Fprint(stdout, u)
		return exitOK
	}
	// "-h" among a command's flags asks for its help: the same text, on
	// stdout and with exit 0, for every command.
	if u, ok := commandUsage(cmd); ok && wantsHelp(args) {
		fmt.Fprint(stdout, u)
		return exitOK
	}
	switch cmd {
	case "serve":
		return cmdServe(ctx, args, stdout, stderr)
	case "check":
		return cmdCheck(ctx, args, stdout, stderr)
	case "demo":
		return cmdDemo(ctx, args, stdout, stderr)
	case "sessions":
		return cmdSessions(ctx, args, stdout, stderr)
	case "version":
		if len(args) > 0 {
			fmt.Fprintf(stderr, "bffgate version: unexpected argument %q\n", args[0])
			return exitUsage
		}
		fmt.Fprintln(stdout, versionString())
		return exitOK
	default:
		fmt.Fprintf(stderr, "bffgate: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
}

func isHelp(a string) bool {
	return a == "-h" || a == "-help" || a == "--help"
}

// wantsHelp reports whether a help flag comes before the end of flags ("--").
func wantsHelp(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if isHelp(a) {
			return true
		}
	}
	return false
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
