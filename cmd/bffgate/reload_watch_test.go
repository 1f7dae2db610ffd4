package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/bffgate/bffgate/config"
)

// fakeGateway records what a reloader swaps in.
type fakeGateway struct {
	mu       sync.Mutex
	swaps    [][]config.Frontend
	failures int
}

func (g *fakeGateway) Reload(fes []config.Frontend) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.swaps = append(g.swaps, fes)
	return nil
}

func (g *fakeGateway) ReloadFailed() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.failures++
}

func (g *fakeGateway) counts() (swaps, failures int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.swaps), g.failures
}

func (g *fakeGateway) last() []config.Frontend {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.swaps[len(g.swaps)-1]
}

const watchGateway = `server:
  public_url: "http://127.0.0.1:8080"
sessions:
  idle_timeout: %s
frontends_dir: frontends
`

func watchFrontend(name, mount, prefix string) string {
	return fmt.Sprintf("name: %s\nmount: %s\noidc: {issuer: \"http://127.0.0.1:9998\", client_id: %s, client_secret: s}\nroutes:\n  - {prefix: %s, upstream: \"http://127.0.0.1:9001\"}\n", name, mount, name, prefix)
}

func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// newTestReloader loads dir/gateway.yaml and returns a reloader on a fake
// gateway, logging into log.
func newTestReloader(t *testing.T, dir string, log *syncBuffer) (*reloader, *fakeGateway) {
	t.Helper()
	cfg, err := config.Load(filepath.Join(dir, "gateway.yaml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	gw := &fakeGateway{}
	logger := slog.New(slog.NewJSONHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return &reloader{path: cfg.Path, gw: gw, logger: logger, running: cfg}, gw
}

// TestReloadLogsWhatChanged (issue 9 item 10): a reload names the frontends
// added, removed and changed; a failed one keeps the running set, counts the
// failure and logs every problem; server and sessions changes are not
// applied, and the log says a restart is needed.
func TestReloadLogsWhatChanged(t *testing.T) {
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "gateway.yaml"), fmt.Sprintf(watchGateway, "30m"))
	mustWrite(t, filepath.Join(dir, "frontends", "web.yaml"), watchFrontend("web", "/web", "/api"))
	mustWrite(t, filepath.Join(dir, "frontends", "old.yaml"), watchFrontend("old", "/old", "/api"))
	log := &syncBuffer{}
	r, gw := newTestReloader(t, dir, log)

	// web changed, old removed, shop added.
	mustWrite(t, filepath.Join(dir, "frontends", "web.yaml"), watchFrontend("web", "/web", "/api/v2"))
	if err := os.Remove(filepath.Join(dir, "frontends", "old.yaml")); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(dir, "frontends", "shop.yaml"), watchFrontend("shop", "/shop", "/api"))
	r.reload("SIGHUP")
	entries := log.entries("frontends reloaded")
	if len(entries) != 1 {
		t.Fatalf("want one 'frontends reloaded' line; log:\n%s", log)
	}
	for key, want := range map[string]string{"added": "[shop]", "removed": "[old]", "changed": "[web]", "trigger": "SIGHUP"} {
		if got := fmt.Sprint(entries[0][key]); got != want {
			t.Errorf("%s = %s, want %s", key, got, want)
		}
	}

	// Two bad files: nothing swapped, every problem logged, failure counted.
	mustWrite(t, filepath.Join(dir, "frontends", "web.yaml"), watchFrontend("web", "/web", "/api")+"bogus: 1\n")
	mustWrite(t, filepath.Join(dir, "frontends", "shop.yaml"), watchFrontend("shop", "shop", "/api"))
	r.reload("SIGHUP")
	if swaps, failures := gw.counts(); swaps != 1 || failures != 1 {
		t.Errorf("after a failed reload: %d swaps, %d failures; want 1, 1", swaps, failures)
	}
	failed := log.entries("reload failed; keeping the running frontends")
	if len(failed) != 1 {
		t.Fatalf("failure not logged; log:\n%s", log)
	}
	problems, _ := failed[0]["problems"].([]any)
	if len(problems) != 2 {
		t.Errorf("problems = %v, want the two, one element each", failed[0]["problems"])
	}

	// server and sessions: not applied (the frontends keep deriving from the
	// running values), and said so.
	mustWrite(t, filepath.Join(dir, "frontends", "web.yaml"), watchFrontend("web", "/web", "/api"))
	mustWrite(t, filepath.Join(dir, "frontends", "shop.yaml"), watchFrontend("shop", "/shop", "/api"))
	mustWrite(t, filepath.Join(dir, "gateway.yaml"), fmt.Sprintf(watchGateway, "5m"))
	r.reload("SIGHUP")
	warn := log.entries("settings changed in the gateway file that a reload does not apply; restart to apply them")
	if len(warn) != 1 || fmt.Sprint(warn[0]["sections"]) != "[sessions]" {
		t.Errorf("restart warning = %v; log:\n%s", warn, log)
	}
	for _, f := range gw.last() {
		if f.Session.IdleTimeout != 30*time.Minute {
			t.Errorf("frontend %s: idle timeout %v after reload, want the running 30m", f.Name, f.Session.IdleTimeout)
		}
	}
}

// TestWatchReloadsOnConfigMapSymlinkSwap reproduces how Kubernetes updates
// a ConfigMap volume: the files are links through "..data", a link to a
// timestamped folder, and an update writes a new folder, points
// "..data_tmp" at it and renames that over "..data" in one step. The
// watcher sees that as a change and reloads once (debounced).
func TestWatchReloadsOnConfigMapSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	fdir := filepath.Join(dir, "frontends")
	mustWrite(t, filepath.Join(dir, "gateway.yaml"), fmt.Sprintf(watchGateway, "30m"))
	mustWrite(t, filepath.Join(fdir, "..2026_12_01_00_00_00.1", "web.yaml"), watchFrontend("web", "/web", "/api"))
	for _, l := range [][2]string{
		{"..2026_12_01_00_00_00.1", filepath.Join(fdir, "..data")},
		{filepath.Join("..data", "web.yaml"), filepath.Join(fdir, "web.yaml")},
	} {
		if err := os.Symlink(l[0], l[1]); err != nil {
			t.Fatal(err)
		}
	}
	log := &syncBuffer{}
	r, gw := newTestReloader(t, dir, log)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const debounce = 150 * time.Millisecond
	if err := r.watch(ctx, fdir, debounce); err != nil {
		t.Fatal(err)
	}

	// The atomic swap, as the kubelet's AtomicWriter does it.
	mustWrite(t, filepath.Join(fdir, "..2026_12_01_00_05_00.2", "web.yaml"), watchFrontend("web", "/web", "/api/v2"))
	if err := os.Symlink("..2026_12_01_00_05_00.2", filepath.Join(fdir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(fdir, "..data_tmp"), filepath.Join(fdir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(fdir, "..2026_12_01_00_00_00.1")); err != nil {
		t.Fatal(err)
	}

	waitFor(t, "the reload", log, func() bool { n, _ := gw.counts(); return n > 0 })
	if got := gw.last()[0].Routes[0].Prefix; got != "/api/v2" {
		t.Errorf("after the swap the route is %s, want /api/v2", got)
	}
	time.Sleep(4 * debounce) // a second reload would show by now
	if n, _ := gw.counts(); n != 1 {
		t.Errorf("%d reloads for one swap, want 1 (debounced)", n)
	}
	if e := log.entries("frontends reloaded"); len(e) != 1 || fmt.Sprint(e[0]["changed"]) != "[web]" || e[0]["trigger"] != "frontends_dir changed" {
		t.Errorf("log: %v", e)
	}
}
