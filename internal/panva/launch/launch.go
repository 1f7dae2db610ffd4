// Package launch runs panva's oidc-provider from the repository's launcher
// script (internal/panva/launcher) as a child process. It is what both the
// integration tests (through package panva) and `bffgate demo -fapi2` use,
// so it does not import package testing and never installs anything itself:
// a missing node or node_modules is an error that says what to run.
package launch

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"time"
)

// Options configure one provider process; the JSON names are the
// launcher's configuration keys (see the comment atop launcher.js).
type Options struct {
	// FAPI2 turns on the provider's FAPI 2.0 Security Profile.
	FAPI2 bool `json:"fapi2"`
	// RequireDPoPNonce makes every DPoP request first get use_dpop_nonce.
	RequireDPoPNonce bool `json:"requireDPoPNonce"`
	// RequirePAR sets require_pushed_authorization_requests everywhere.
	RequirePAR bool `json:"requirePAR"`
	// AccessTokenTTL in seconds; 0 means 300.
	AccessTokenTTL int `json:"accessTokenTTL"`
	// Clients are oidc-provider client metadata (client_id, client_secret,
	// redirect_uris, token_endpoint_auth_method, jwks_uri, ...).
	Clients []map[string]any `json:"clients"`
	// Port to listen on (127.0.0.1); 0 means any free port.
	Port int `json:"port,omitempty"`
	// IssuerHost is the host name in the issuer URL; "" means 127.0.0.1.
	// "localhost" puts the provider on the same site as a gateway at
	// http://localhost, which SameSite=Strict session cookies need.
	IssuerHost string `json:"issuerHost,omitempty"`
	// Roles, when set, adds a "roles" claim to access tokens (shown by
	// introspection): Roles[login], or Roles["*"] for any other login.
	Roles map[string][]string `json:"roles,omitempty"`
}

// SourceDir is the launcher folder of the source tree this package was
// built from. A binary built elsewhere or with -trimpath may not find it
// there; FindDir looks in more places.
func SourceDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "launcher")
}

// relDir is the launcher folder relative to the module root.
const relDir = "internal/panva/launcher"

// FindDir returns the launcher folder: the one under the module root of
// the current directory or any parent (a go.mod naming our module), else
// SourceDir when it exists.
func FindDir() (string, error) {
	wd, err := os.Getwd()
	if err == nil {
		for dir := wd; ; dir = filepath.Dir(dir) {
			if isModuleRoot(dir) {
				return filepath.Join(dir, relDir), nil
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	if d := SourceDir(); isFile(filepath.Join(d, "launcher.js")) {
		return filepath.Clean(d), nil
	}
	return "", fmt.Errorf("cannot find %s: run from inside a bffgate checkout, or name the folder explicitly", relDir)
}

func isModuleRoot(dir string) bool {
	mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	return err == nil && bytes.HasPrefix(bytes.TrimSpace(mod), []byte("module github.com/bffgate/bffgate\n")) &&
		isFile(filepath.Join(dir, relDir, "launcher.js"))
}

func isFile(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}

// Check reports whether the provider can start from dir: launcher.js is
// there, node is on PATH, and `npm ci` has installed the committed
// package-lock. The error says what to run.
func Check(dir string) error {
	if !isFile(filepath.Join(dir, "launcher.js")) {
		return fmt.Errorf("%s has no launcher.js: not the oidc-provider launcher folder", dir)
	}
	if _, err := exec.LookPath("node"); err != nil {
		return errors.New("node is not on PATH: install Node.js 20 or later and npm (Debian: apt-get install -y nodejs npm), then run: cd " + dir + " && npm ci")
	}
	if !Installed(dir) {
		return errors.New("oidc-provider is not installed (or not the pinned version): run: cd " + dir + " && npm ci")
	}
	return nil
}

// Installed reports whether `npm ci` already installed dir's package-lock:
// npm writes node_modules/.package-lock.json with the same versions.
func Installed(dir string) bool {
	lock, err := os.ReadFile(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		return false
	}
	installed, err := os.ReadFile(filepath.Join(dir, "node_modules", ".package-lock.json"))
	if err != nil {
		return false
	}
	var a, b struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	if json.Unmarshal(lock, &a) != nil || json.Unmarshal(installed, &b) != nil {
		return false
	}
	for name, p := range a.Packages {
		if name == "" {
			continue
		}
		if b.Packages[name].Version != p.Version {
			return false
		}
	}
	return true
}

// Process is a running provider.
type Process struct {
	// Issuer is the provider's issuer URL (its root).
	Issuer string

	cmd    *exec.Cmd
	exited chan struct{}
}

// startTimeout bounds the wait for the launcher's issuer line; node loads
// oidc-provider in well under a second, but a busy shared machine is slow.
const startTimeout = 30 * time.Second

// Start runs `node launcher.js CONFIG` in dir with o written to cfgFile,
// and returns once the provider listens. The provider's stderr goes to
// stderr. Stop it with Stop; ctx bounds only the start.
func Start(ctx context.Context, dir, cfgFile string, o Options, stderr io.Writer) (*Process, error) {
	raw, err := json.Marshal(o)
	if err != nil {
		return nil, fmt.Errorf("oidc-provider config: %w", err)
	}
	if err := os.WriteFile(cfgFile, raw, 0o600); err != nil {
		return nil, fmt.Errorf("oidc-provider config: %w", err)
	}
	cmd := exec.Command("node", "launcher.js", cfgFile)
	cmd.Dir = dir
	cmd.Stderr = stderr
	dieWithParent(cmd)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start node: %w", err)
	}
	p := &Process{cmd: cmd, exited: make(chan struct{})}
	issuer := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			var line struct {
				Issuer string `json:"issuer"`
			}
			if !sent && json.Unmarshal(sc.Bytes(), &line) == nil && line.Issuer != "" {
				issuer <- line.Issuer
				sent = true
			}
		}
		// Wait only after stdout is drained (os/exec's rule for pipes).
		_ = cmd.Wait()
		close(p.exited)
	}()
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	select {
	case p.Issuer = <-issuer:
		return p, nil
	case <-p.exited:
		return nil, errors.New("node exited before the provider listened (its output is above)")
	case <-ctx.Done():
		p.Stop()
		return nil, fmt.Errorf("no issuer line from the launcher: %w", ctx.Err())
	}
}

// Stop ends the provider: SIGTERM, then SIGKILL after 5 s.
func (p *Process) Stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// Exited is closed when the process has ended.
func (p *Process) Exited() <-chan struct{} { return p.exited }
