package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bffgate/bffgate/internal/localrun"
)

// instance is one `bffgate serve` child process, started, killed and
// restarted by its PID on a fixed address, so that killing it is what
// killing a replica is: its locks, flights and connections vanish at once.
type instance struct {
	n      int
	bin    string
	config string
	addr   string
	logs   *gatewayLog

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the running process has exited
}

// start runs the process and waits until its /readyz answers 200; it
// returns how long that took.
func (in *instance) start(ctx context.Context) (time.Duration, error) {
	t0 := time.Now()
	cmd := exec.Command(in.bin, "serve", "-config", in.config)
	// Should the soak itself die without stopping it, the kernel does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// bffgate serve logs on stderr; its stdout stays empty (/dev/null).
	out, err := cmd.StderrPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("instance %d: starting %s: %w", in.n, in.bin, err)
	}
	done := make(chan struct{})
	go func() {
		in.logs.read(in.n, out)
		_ = cmd.Wait()
		close(done)
	}()
	in.mu.Lock()
	in.cmd, in.done = cmd, done
	in.mu.Unlock()
	fmt.Printf("soak: instance %d pid %d on %s\n", in.n, cmd.Process.Pid, in.addr)
	if err := localrun.WaitReady(ctx, "http://"+in.addr+"/readyz"); err != nil {
		in.stop(syscall.SIGKILL, 0)
		return 0, fmt.Errorf("instance %d: %w (its log lines: %s)", in.n, err, in.logs.last(in.n))
	}
	return time.Since(t0), nil
}

// stop sends sig to the process by its PID and waits for it to exit, up
// to grace; then it is killed. It returns the PID it stopped, 0 when none
// ran.
func (in *instance) stop(sig syscall.Signal, grace time.Duration) int {
	in.mu.Lock()
	cmd, done := in.cmd, in.done
	in.cmd = nil
	in.mu.Unlock()
	if cmd == nil {
		return 0
	}
	pid := cmd.Process.Pid
	_ = syscall.Kill(pid, sig)
	select {
	case <-done:
	case <-time.After(grace):
		_ = syscall.Kill(pid, syscall.SIGKILL)
		<-done
	}
	return pid
}

// running returns the PID of the process, 0 when none runs.
func (in *instance) running() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cmd == nil {
		return 0
	}
	return in.cmd.Process.Pid
}

// rss is the process's VmRSS, "-" when it does not run.
func (in *instance) rss() string {
	pid := in.running()
	if pid == 0 {
		return "-"
	}
	return procRSS(strconv.Itoa(pid))
}

// goroutines reads go_goroutines from the instance's /metrics.
func (in *instance) goroutines(c *http.Client) string {
	if in.running() == 0 {
		return "-"
	}
	resp, err := c.Get("http://" + in.addr + "/metrics")
	if err != nil {
		return "?"
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			return v
		}
	}
	return "?"
}

// procRSS is VmRSS from /proc/PID/status ("self" for this process).
func procRSS(pid string) string {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strings.ReplaceAll(strings.TrimSpace(v), " ", "")
		}
	}
	return "?"
}

// writeConfig writes a gateway file for one instance: both share
// everything (Redis, cookie keys, the frontend) but the listen address.
func writeConfig(path string, c instanceConfig) error {
	yaml := fmt.Sprintf(`# scripts/soak instance %d
server:
  listen: %q
  public_url: %q
  log_level: info
  shutdown_timeout: 5s
sessions:
  store: redis
  redis:
    url: %q
    key_prefix: "bffgate-soak:"
  refresh_margin: %s
  provider_timeout: %s
  cookie_keys:
    - hash: %q
      block: %q
frontends:
  - name: web
    kind: spa
    mount: %q
    oidc:
      issuer: %q
      client_id: %q
      client_secret: %q
    routes:
      - prefix: /api/fast
        upstream: %q
        strip_prefix: true
`, c.n, c.listen, c.public, c.redisURL, c.margin, c.providerTimeout, c.hashKey, c.blockKey,
		mount, c.issuer, clientID, clientSecret, c.upstream)
	return os.WriteFile(path, []byte(yaml), 0o600)
}

type instanceConfig struct {
	n                                int
	listen, public, redisURL, issuer string
	upstream, hashKey, blockKey      string
	margin, providerTimeout          time.Duration
}

var errNoBinary = errors.New("-bffgate: the bffgate binary to run as the two instances (scripts/soak builds one)")
