package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/bffgate/bffgate/internal/demo"
)

// TestBrowserDemo drives the demo SPA in a real headless Chromium against
// `bffgate demo` started in-process: log in at the demo provider, read the
// user, call both services, log out and check that the session is gone. It
// runs once as the admin (reports 200) and once as the plain user (reports
// 403), each in a fresh browser profile.
//
// It needs Debian's chromium (scripts/test installs it); without a chromium
// binary it skips. The screenshots (after login, after the calls) go to
// t.TempDir(), or to $BFFGATE_SCREENSHOT_DIR when set, so that they survive
// the test.
func TestBrowserDemo(t *testing.T) {
	chromium := browserFindChromium()
	if chromium == "" {
		t.Skip("no chromium binary (looked for /usr/bin/chromium and chromium, chromium-browser on PATH); " +
			"install Debian's chromium (apt-get install -y chromium) to run the browser test")
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	d := startBrowserDemo(ctx, t)
	t.Logf("demo up at %s (provider %s) after %v", d.base, d.issuer, time.Since(start).Round(time.Millisecond))

	for _, tc := range []struct {
		name, username string
		wantReports    int
	}{
		{"admin", demo.AdminUsername(d.issuer), http.StatusOK},
		{"user", demo.UserUsername, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			browseDemo(ctx, t, chromium, d, tc.username, tc.wantReports)
		})
		if t.Failed() {
			break
		}
	}
	t.Logf("total %v", time.Since(start).Round(time.Millisecond))
}

func browserFindChromium() string {
	if fi, err := os.Stat("/usr/bin/chromium"); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// tail returns the last n lines, for failure messages.
func (b *syncBuffer) tail(n int) string {
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

type browserDemo struct {
	base   string // gateway origin, http://localhost:PORT
	issuer string // provider issuer, http://localhost:PORT
	stderr *syncBuffer
}

var (
	browserOpenLine     = regexp.MustCompile(`(?m)^\s*Open\s+(http://\S+)/web/\s*$`)
	browserProviderLine = regexp.MustCompile(`(?m)^\s*Provider\s+(http://\S+)\s*$`)
)

// startBrowserDemo runs `bffgate demo` in-process on free loopback ports, waits until
// it is ready, and stops it (cancel, then wait for run to return) at cleanup.
func startBrowserDemo(ctx context.Context, t *testing.T) *browserDemo {
	t.Helper()
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	demoCtx, stop := context.WithCancel(ctx)
	done := make(chan int, 1)
	go func() {
		done <- run(demoCtx, []string{"demo", "-listen", "127.0.0.1:0", "-idp-listen", "127.0.0.1:0"}, stdout, stderr)
	}()
	t.Cleanup(func() {
		stop()
		select {
		case code := <-done:
			if code != exitOK {
				t.Errorf("bffgate demo exited %d after cancel; stderr:\n%s", code, stderr.tail(30))
			}
		case <-time.After(30 * time.Second):
			t.Errorf("bffgate demo did not return within 30s of cancel")
		}
	})

	d := &browserDemo{stderr: stderr}
	for d.base == "" {
		out := stdout.String()
		o, p := browserOpenLine.FindStringSubmatch(out), browserProviderLine.FindStringSubmatch(out)
		if o != nil && p != nil {
			d.base, d.issuer = o[1], p[1]
			break
		}
		select {
		case code := <-done:
			t.Fatalf("bffgate demo exited %d before printing its URL; stdout:\n%s\nstderr:\n%s", code, out, stderr.tail(30))
		case <-ctx.Done():
			t.Fatalf("bffgate demo printed no URL: %v; stdout:\n%s\nstderr:\n%s", ctx.Err(), out, stderr.tail(30))
		case <-time.After(20 * time.Millisecond):
		}
	}

	// The gateway answers once it has the provider's metadata.
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		var last string
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.base+"/readyz", nil)
		res, err := client.Do(req)
		if err != nil {
			last = err.Error()
		} else {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return d
			}
			last = res.Status
		}
		select {
		case <-ctx.Done():
			t.Fatalf("bffgate demo not ready at %s/readyz (last: %s); stderr:\n%s", d.base, last, stderr.tail(30))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// browseDemo runs the whole browser flow as one user in a fresh Chromium.
func browseDemo(ctx context.Context, t *testing.T, chromium string, d *browserDemo, username string, wantReports int) {
	profile := filepath.Join(t.TempDir(), "profile") // fresh, removed after the leftover check below
	browserOut := &syncBuffer{}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 900),
		chromedp.CombinedOutput(browserOut),
	)
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		// Close the browser gracefully (bounded), then stop the allocator,
		// which waits for the process, then make sure no child of this
		// profile outlives it.
		closeCtx, cancelClose := context.WithTimeout(bctx, 10*time.Second)
		_ = chromedp.Cancel(closeCtx)
		cancelClose()
		cancelBrowser()
		cancelAlloc()
		if n := browserWaitChromiumGone(profile, 5*time.Second); n > 0 {
			t.Errorf("%d chromium processes of profile %s outlived the browser (killed now)", n, profile)
		}
	})

	started := time.Now()
	var (
		mu         sync.Mutex
		exceptions []string
	)
	// Listen starts the browser and opens its tab.
	if err := chromedp.Listen(bctx, func(ev any) {
		if ev, ok := ev.(*runtime.EventExceptionThrown); ok && ev.ExceptionDetails != nil {
			e := ev.ExceptionDetails
			msg := e.Text
			if e.Exception != nil && e.Exception.Description != "" {
				msg += " " + e.Exception.Description
			}
			mu.Lock()
			exceptions = append(exceptions, fmt.Sprintf("%s:%d: %s", e.URL, e.LineNumber+1, msg))
			mu.Unlock()
		}
	}); err != nil {
		t.Fatalf("start chromium %s: %v\nbrowser output:\n%s", chromium, err, browserOut.tail(20))
	}
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range exceptions {
			t.Errorf("uncaught JavaScript exception: %s", e)
		}
	}()

	spa := d.base + demo.WebMount + "/"
	last := started
	lap := func(what string) {
		t.Logf("%-34s %6v", what, time.Since(last).Round(time.Millisecond))
		last = time.Now()
	}
	// fail reports a failed step with where the browser is and the demo's log.
	fail := func(step string, err error) {
		t.Helper()
		sctx, c := context.WithTimeout(bctx, 2*time.Second)
		defer c()
		loc, _ := chromedp.Run(sctx, chromedp.Location())
		state, _ := chromedp.Run(sctx, chromedp.Evaluate[string](`document.body ? String(document.body.dataset.state) : ""`))
		status, _ := chromedp.Run(sctx, chromedp.Evaluate[string](`(document.getElementById("status")||{}).textContent||""`))
		t.Fatalf("%s: %v\n  at %s (body[data-state]=%q, #status=%q)\n  demo stderr:\n%s\n  browser output:\n%s",
			step, err, loc, state, status, d.stderr.tail(20), browserOut.tail(10))
	}
	do := func(step string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, actions...); err != nil {
			fail(step, err)
		}
	}
	location := func(step string) string {
		t.Helper()
		loc, err := chromedp.Run(bctx, chromedp.Location())
		if err != nil {
			fail(step, err)
		}
		return loc
	}
	// screenshot saves the page as PNG in t.TempDir(), or in
	// $BFFGATE_SCREENSHOT_DIR when set, so that it survives the test.
	shotDir := os.Getenv("BFFGATE_SCREENSHOT_DIR")
	if shotDir == "" {
		shotDir = t.TempDir()
	}
	screenshot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100)) // quality 100: PNG
		if err != nil {
			fail("screenshot "+name, err)
		}
		file := filepath.Join(shotDir, name+"-"+path.Base(t.Name())+".png")
		if err := os.WriteFile(file, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s: %s (%d bytes)", name, file, len(png))
	}
	// userStatus is what the page's own fetch of /web/bff/user answers.
	userStatus := func(step string) int {
		t.Helper()
		n, err := chromedp.Run(bctx, chromedp.Evaluate[int](
			`fetch("`+demo.WebMount+`/bff/user", {headers: {"X-CSRF": "1"}, credentials: "same-origin", cache: "no-store"}).then(r => r.status)`,
			chromedp.EvalAwaitPromise))
		if err != nil {
			fail(step, err)
		}
		return n
	}

	// 1. The SPA shows the logged-out state with a Login button.
	do("open the SPA logged out",
		chromedp.Navigate(spa),
		chromedp.WaitVisible(chromedp.CSS(`body[data-state="out"] #login`)),
	)
	lap("start chromium, SPA logged out")

	// 2. Login goes to the provider's login form.
	do("click Login and reach the provider's form",
		chromedp.Click(chromedp.CSS(`#login`)),
		chromedp.WaitVisible(chromedp.CSS(`input[name="username"]`)),
	)
	if loc := location("provider location"); !strings.HasPrefix(loc, d.issuer+"/login/username") {
		t.Fatalf("login form at %s, want under %s/login/username", loc, d.issuer)
	}
	lap("login redirect to provider")

	// 3. Submit the form; the gateway's callback sends us back logged in.
	do("submit the provider's login form",
		chromedp.SendKeys(chromedp.CSS(`input[name="username"]`), username),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), demo.Password),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`body[data-state="in"] #user-name`)),
	)
	if loc := location("location after login"); loc != spa {
		t.Errorf("after login at %s, want %s", loc, spa)
	}
	name, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(`#user-name`)))
	if err != nil {
		fail("read #user-name", err)
	}
	if strings.TrimSpace(name) == "" {
		fail("read #user-name", fmt.Errorf("#user-name is empty"))
	}
	t.Logf("signed in as %q", name)
	if n := userStatus("fetch /web/bff/user while logged in"); n != http.StatusOK {
		t.Errorf("/web/bff/user while logged in: %d, want 200", n)
	}
	// The session cookie is HttpOnly: the page's script cannot see it.
	if c, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.cookie`)); err != nil {
		fail("read document.cookie", err)
	} else if strings.Contains(c, "bff-") {
		t.Errorf("document.cookie shows a gateway cookie: %q", c)
	}
	lap("login form + callback + /bff/user")

	screenshot("after-login")

	// 4. Both services through the gateway; the SPA shows the status.
	for _, call := range []struct {
		button, result string
		want           int
	}{
		{"#call-orders", "#orders-result", http.StatusOK},
		{"#call-reports", "#reports-result", wantReports},
	} {
		do("call "+call.button,
			chromedp.Click(chromedp.CSS(call.button)),
			chromedp.WaitVisible(chromedp.CSS(call.result+"[data-status]")),
		)
		got, err := chromedp.Run(bctx, chromedp.AttributeValue(chromedp.CSS(call.result), "data-status"))
		if err != nil {
			fail("read "+call.result, err)
		}
		if got.Value != strconv.Itoa(call.want) {
			text, _ := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(call.result)))
			t.Errorf("%s: status %s, want %d; shows %q", call.result, got.Value, call.want, text)
		}
	}
	lap("orders + reports calls")
	screenshot("after-calls")

	// 5. Log out: through the provider's end-session and back to the SPA,
	// which now shows the logged-out state.
	do("log out",
		chromedp.Click(chromedp.CSS(`#logout`)),
		chromedp.WaitVisible(chromedp.CSS(`body[data-state="out"] #login`)),
		// The page says the user was signed out, not just "not signed in".
		chromedp.WaitVisible(chromedp.CSS(`#signed-out`)),
	)
	if loc := location("location after logout"); loc != spa {
		t.Errorf("after logout at %s, want %s", loc, spa)
	}
	if n := userStatus("fetch /web/bff/user after logout"); n != http.StatusUnauthorized {
		t.Errorf("/web/bff/user after logout: %d, want 401", n)
	}
	// A reload does not bring the session back.
	do("reload after logout",
		chromedp.Reload(),
		chromedp.WaitVisible(chromedp.CSS(`body[data-state="out"] #login`)),
		// The notice is for the logout itself, not every later visit.
		chromedp.WaitNotVisible(chromedp.CSS(`#signed-out`)),
	)
	lap("logout + session gone")
}

// browserWaitChromiumGone waits up to limit for every process started with profile
// as its user data directory to exit, then kills any that remain and returns
// how many it found at the end.
func browserWaitChromiumGone(profile string, limit time.Duration) int {
	deadline := time.Now().Add(limit)
	for {
		pids := browserChromiumPIDs(profile)
		if len(pids) == 0 {
			return 0
		}
		if time.Now().After(deadline) {
			for _, p := range pids {
				if proc, err := os.FindProcess(p); err == nil {
					_ = proc.Kill()
				}
			}
			return len(pids)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// browserChromiumPIDs lists the processes whose command line has
// --user-data-dir=profile (Chromium passes it to every child process).
func browserChromiumPIDs(profile string) []int {
	want := []byte("--user-data-dir=" + profile)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, arg := range bytes.Split(cmdline, []byte{0}) {
			if bytes.Equal(arg, want) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}
