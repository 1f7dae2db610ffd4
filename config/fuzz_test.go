package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse loads fuzzed gateway files with variable and ${file:} expansion
// (issue 8: fuzz the parsers). The environment and the files are stubs
// driven by the fuzzer, so nothing is read from the real environment, and
// ${file:} never touches the disk. Whatever the input: no panic, and either
// problems (each an *Error naming its file) and no Config, or a Config that
// validates, lists and warns without panicking.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*/*/gateway.yaml")
	for _, p := range seeds {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data, "value")
		}
	}
	f.Add([]byte("server: {public_url: \"${URL}\", listen: ${LISTEN:-127.0.0.1:0}}\nfrontends: [{name: web, mount: /web, oidc: {issuer: \"${file:issuer}\", client_id: c, client_secret: \"${file:secret}\"}}]\n"), "https://app.example.com")
	f.Add([]byte("max: ${A}${B:-x}$${C}${file:}${1}${"), "#: \"")
	f.Fuzz(func(t *testing.T, data []byte, value string) {
		lookup := func(name string) (string, bool) {
			if strings.HasPrefix(name, "UNSET") {
				return "", false
			}
			return value, true
		}
		readFile := func(path string) ([]byte, error) {
			if strings.Contains(path, "missing") {
				return nil, os.ErrNotExist
			}
			return []byte(value + "\n"), nil
		}
		c, err := parse(filepath.Join("fuzz", "gateway.yaml"), data, lookup, readFile, nil)
		if err != nil {
			if c != nil {
				t.Fatal("a Config along with problems")
			}
			for _, e := range unjoin(err) {
				var ce *Error
				if !errors.As(e, &ce) || ce.File == "" {
					t.Fatalf("problem %q is not an *Error naming its file", e)
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Load accepted a config that Validate refuses: %v", err)
		}
		_ = c.Summary()
		_ = c.Warnings()
	})
}
