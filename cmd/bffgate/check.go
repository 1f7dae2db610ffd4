package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/bffgate/bffgate/config"
)

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", defaultCfg, "configuration file")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "bffgate check: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	cfg, err := config.Load(*path)
	if err != nil {
		printProblems(stderr, err)
		fmt.Fprintf(stderr, "%s: configuration is invalid\n", *path)
		return exitFail
	}
	fmt.Fprint(stdout, cfg.Summary())
	fmt.Fprintf(stdout, "%s: configuration is valid\n", *path)
	return exitOK
}
