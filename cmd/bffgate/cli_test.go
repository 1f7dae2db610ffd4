package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
)

// TestCLIHelpAndExitCodes (issue 9 item 7, SPEC section 1): help and version
// spellings, the same help behaviour for every command (stdout, exit 0), and
// exit 2 for bad usage with the reason on stderr.
func TestCLIHelpAndExitCodes(t *testing.T) {
	t.Chdir(t.TempDir()) // no bffgate.yaml here
	tests := []struct {
		args       []string
		code       int
		stdout     string // substring of stdout ("" for none expected)
		stderr     string // substring of stderr
		stdoutNone bool
	}{
		{args: nil, code: exitOK, stdout: "bffgate check -config FILE"},
		{args: []string{"help"}, code: exitOK, stdout: "bffgate sessions list|revoke"},
		{args: []string{"help", "sessions"}, code: exitOK, stdout: "[--id ID] [--json]"},
		{args: []string{"-h"}, code: exitOK, stdout: "bffgate demo"},
		{args: []string{"--help"}, code: exitOK, stdout: "bffgate version"},
		{args: []string{"version"}, code: exitOK, stdout: "bffgate dev"},
		{args: []string{"--version"}, code: exitOK, stdout: "bffgate dev"},
		{args: []string{"help", "check"}, code: exitOK, stdout: "-online"},
		{args: []string{"check", "-h"}, code: exitOK, stdout: "bffgate check -config FILE"},
		{args: []string{"check", "--help"}, code: exitOK, stdout: "bffgate check -config FILE"},
		{args: []string{"serve", "-h"}, code: exitOK, stdout: "bffgate serve -config FILE"},
		{args: []string{"demo", "-h"}, code: exitOK, stdout: "bffgate demo"},
		{args: []string{"demo", "idp", "--help"}, code: exitOK, stdout: "bffgate demo idp"},
		{args: []string{"sessions", "list", "-h"}, code: exitOK, stdout: "bffgate sessions list"},
		{args: []string{"help", "nope"}, code: exitUsage, stderr: `unknown command "nope"`, stdoutNone: true},
		{args: []string{"nope"}, code: exitUsage, stderr: `unknown command "nope"`, stdoutNone: true},
		{args: []string{"check", "-nope"}, code: exitUsage, stderr: "-nope", stdoutNone: true},
		{args: []string{"version", "extra"}, code: exitUsage, stderr: "unexpected argument", stdoutNone: true},
		{args: []string{"check", "examples/gateway.yaml"}, code: exitUsage, stderr: "did you mean -config examples/gateway.yaml?", stdoutNone: true},
		{args: []string{"serve", "gateway.yml"}, code: exitUsage, stderr: "did you mean -config gateway.yml?", stdoutNone: true},
		// No bffgate.yaml and no -config: say what to do, not "open bffgate.yaml: no such file".
		{args: []string{"check"}, code: exitUsage, stderr: "Give the gateway file with -config FILE", stdoutNone: true},
		{args: []string{"serve"}, code: exitUsage, stderr: "bffgate demo", stdoutNone: true},
		{args: []string{"-config", "missing.yaml"}, code: exitFail, stderr: "missing.yaml does not exist", stdoutNone: true},
	}
	for _, tt := range tests {
		t.Run(strings.Join(append([]string{"bffgate"}, tt.args...), " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), tt.args, &out, &errb)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out.String(), errb.String())
			}
			if !strings.Contains(out.String(), tt.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tt.stdout, out.String())
			}
			if !strings.Contains(errb.String(), tt.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.stderr, errb.String())
			}
			if tt.stdoutNone && out.Len() > 0 {
				t.Errorf("stdout on a usage error: %s", out.String())
			}
			if strings.Contains(errb.String(), "no such file") {
				t.Errorf("stderr has a bare OS error: %s", errb.String())
			}
		})
	}
}

// The overview's sessions line names every flag of the sessions synopsis, so
// that "bffgate --help" and "bffgate help sessions" do not disagree.
func TestHelpOverviewNamesEverySessionsFlag(t *testing.T) {
	synopsis, _, _ := strings.Cut(sessionsUsage, "\n\n")
	flags := regexp.MustCompile(`--[a-z]+`).FindAllString(synopsis, -1)
	if len(flags) == 0 {
		t.Fatalf("no flags found in the sessions synopsis:\n%s", synopsis)
	}
	var out bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, &out, &bytes.Buffer{}); code != exitOK {
		t.Fatalf("--help: exit %d", code)
	}
	_, line, _ := strings.Cut(out.String(), "bffgate sessions ")
	line, _, _ = strings.Cut(line, "bffgate version")
	for _, f := range flags {
		if !strings.Contains(line, f) {
			t.Errorf("bffgate --help does not name %s for sessions:\n%s", f, line)
		}
	}
}
