package main

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"reflect"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/bffgate/bffgate/config"
)

// swapper is what a reload needs of the gateway.
type swapper interface {
	Reload([]config.Frontend) error
	ReloadFailed()
}

// reloader re-reads the configuration on SIGHUP or a change in
// frontends_dir and swaps in the new frontends when the whole file set is
// valid. server and sessions are not applied by a reload (they need a
// restart: listeners, the store client and the cookie keys are built once),
// and the log says so when they changed.
type reloader struct {
	path   string
	gw     swapper
	logger *slog.Logger

	mu      sync.Mutex
	running *config.Config
}

// reload runs one reload; trigger says why, for the log. Reloads never
// overlap.
func (r *reloader) reload(trigger string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	next, ignored, err := config.Reload(r.path, r.running)
	if err == nil {
		err = r.gw.Reload(next.Frontends)
	} else {
		r.gw.ReloadFailed()
	}
	if err != nil {
		r.logger.Error("reload failed; keeping the running frontends", "trigger", trigger, "problems", problemList(err))
		return
	}
	added, removed, changed := diffFrontends(r.running.Frontends, next.Frontends)
	r.running = next
	if len(ignored) > 0 {
		r.logger.Warn("settings changed in the gateway file that a reload does not apply; restart to apply them",
			"trigger", trigger, "sections", ignored)
	}
	if len(added)+len(removed)+len(changed) == 0 {
		r.logger.Info("frontends reloaded, no change", "trigger", trigger, "frontends", len(next.Frontends))
		return
	}
	r.logger.Info("frontends reloaded", "trigger", trigger, "frontends", len(next.Frontends),
		"added", added, "removed", removed, "changed", changed)
}

// problemList splits a joined config error into one string per problem,
// so that each is its own element in the JSON log line.
func problemList(err error) []string {
	var out []string
	var walk func(error)
	walk = func(e error) {
		if m, ok := e.(interface{ Unwrap() []error }); ok {
			for _, c := range m.Unwrap() {
				walk(c)
			}
			return
		}
		out = append(out, e.Error())
	}
	walk(err)
	return out
}

// diffFrontends names the frontends added, removed and changed from old to
// next (by name), each list sorted as the frontends are.
func diffFrontends(old, next []config.Frontend) (added, removed, changed []string) {
	byName := make(map[string]*config.Frontend, len(old))
	for i := range old {
		byName[old[i].Name] = &old[i]
	}
	seen := map[string]bool{}
	for i := range next {
		f := &next[i]
		seen[f.Name] = true
		switch o, ok := byName[f.Name]; {
		case !ok:
			added = append(added, f.Name)
		case !reflect.DeepEqual(*o, *f):
			changed = append(changed, f.Name)
		}
	}
	for i := range old {
		if !seen[old[i].Name] {
			removed = append(removed, old[i].Name)
		}
	}
	return added, removed, changed
}

// defaultDebounce gathers the burst of events an edit or a ConfigMap update
// makes (write, chmod, rename; ..data_tmp created, renamed over ..data, the
// old timestamped folder removed) into one reload.
const defaultDebounce = 300 * time.Millisecond

// watch reloads when anything in dir changes, debounced, until ctx ends. It
// watches the folder itself, not the files: editors and Kubernetes replace
// files (and ConfigMap volumes swap the "..data" symlink) rather than write
// them in place, which a watch on the old file would miss.
func (r *reloader) watch(ctx context.Context, dir string, debounce time.Duration) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	if err := w.Add(dir); err != nil {
		w.Close()
		return err
	}
	go func() {
		defer w.Close()
		var timer *time.Timer
		var fire <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				if timer != nil {
					timer.Stop()
				}
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				r.logger.Debug("frontends_dir event", "name", filepath.Base(ev.Name), "op", ev.Op.String())
				if timer == nil {
					timer = time.NewTimer(debounce)
				} else {
					timer.Reset(debounce)
				}
				fire = timer.C
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				if !errors.Is(err, fsnotify.ErrEventOverflow) {
					r.logger.Warn("watching frontends_dir", "error", err.Error())
					continue
				}
				// Events were lost: reload to be sure.
				r.reload("frontends_dir changed")
			case <-fire:
				fire = nil
				r.reload("frontends_dir changed")
			}
		}
	}()
	return nil
}

// frontendsDir is the folder a config's frontends_dir names, as Load reads
// it; "" when there is none.
func frontendsDir(cfg *config.Config) string {
	d := cfg.FrontendsDir
	if d == "" || filepath.IsAbs(d) {
		return d
	}
	return filepath.Join(filepath.Dir(cfg.Path), d)
}
