// Package redistest starts throwaway redis-server processes for tests that
// must kill their Redis or need a cluster. Each server runs on a free
// loopback port in a temporary directory and is stopped by its own PID when
// the test ends; nothing here touches the shared 127.0.0.1:6379.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is one redis-server process that can be stopped and started again
// on the same port and directory (with persistence flags, its data survives).
type Server struct {
	Addr  string
	t     testing.TB
	port  int
	dir   string
	extra []string
	cmd   *exec.Cmd
}

// Start runs redis-server on a free port without persistence unless extra
// says otherwise; t is skipped when redis-server is not installed.
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed (scripts/test installs it)")
	}
	s := &Server{t: t, port: FreePort(t), dir: t.TempDir(), extra: extra}
	s.Addr = "127.0.0.1:" + strconv.Itoa(s.port)
	s.Restart()
	t.Cleanup(s.Stop)
	return s
}

// Restart starts the process again after Stop (or the first time).
func (s *Server) Restart() {
	s.t.Helper()
	args := append([]string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no"}, s.extra...)
	s.cmd = exec.Command("redis-server", args...)
	s.cmd.Dir = s.dir
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !Pings(context.Background(), s.Addr) {
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server on %s did not answer", s.Addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the process and reaps it; calling it twice is harmless.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.ProcessState != nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
}

// Pings reports whether a Redis answers at addr within a second.
func Pings(ctx context.Context, addr string) bool {
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 300 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	err := c.Ping(ctx).Err()
	// A server with requirepass answers too, refusing the unauthenticated PING.
	return err == nil || strings.HasPrefix(err.Error(), "NOAUTH")
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// StartCluster runs a Redis Cluster of n masters (no replicas) and returns
// their addresses once every node reports cluster_state:ok.
func StartCluster(t testing.TB, n int) []string {
	t.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Skip("redis-cli is not installed; skipping the cluster test")
	}
	var addrs []string
	for range n {
		addrs = append(addrs, Start(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf").Addr)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, addr := range addrs {
		c := redis.NewClient(&redis.Options{Addr: addr})
		for {
			info, err := c.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				c.Close()
				t.Fatalf("cluster on %v not ok: %v %s", addrs, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = c.Close()
	}
	return addrs
}

// String names the server in messages.
func (s *Server) String() string { return fmt.Sprintf("redis-server %s", s.Addr) }

// StartSentinel runs one Redis Sentinel that monitors master (host:port)
// under masterName, and returns the sentinel's address once it reports the
// master.
func StartSentinel(t testing.TB, masterName, master string) string {
	t.Helper()
	return StartSentinels(t, Sentinels{Name: masterName, Master: master})[0]
}

// Sentinels describes a group of Sentinels that monitor one master.
type Sentinels struct {
	Name   string // the master's name
	Master string // its host:port
	// Count is the number of sentinels (default 1) and Quorum how many must
	// agree that the master is down (default 1).
	Count, Quorum int
	// Replicas is how many replicas every sentinel must know of before
	// StartSentinels returns; a replica attached before the sentinels start
	// is found at their first INFO.
	Replicas int
	// DownAfter is down-after-milliseconds (default 5s). A test that forces
	// its failovers with SENTINEL FAILOVER sets it long, so that a loaded
	// machine's slow PING answer cannot start another one.
	DownAfter time.Duration
	// Password is the sentinels' own requirepass, MasterPassword the
	// master's (sentinel auth-pass); empty for none.
	Password, MasterPassword string
}

// StartSentinels runs the group and returns the sentinels' addresses once
// each of them names the master and knows the replicas and the other
// sentinels (they find each other through the master's hello channel, about
// every two seconds), so that a failover can start at once.
func StartSentinels(t testing.TB, g Sentinels) []string {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed (scripts/test installs it)")
	}
	host, port, err := net.SplitHostPort(g.Master)
	if err != nil {
		t.Fatal(err)
	}
	g.Count, g.Quorum = max(g.Count, 1), max(g.Quorum, 1)
	if g.DownAfter == 0 {
		g.DownAfter = 5 * time.Second
	}
	var addrs []string
	for range g.Count {
		dir := t.TempDir()
		sport := FreePort(t)
		conf := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor %s %s %s %d\nsentinel down-after-milliseconds %s %d\n",
			sport, dir, g.Name, host, port, g.Quorum, g.Name, g.DownAfter.Milliseconds())
		if g.MasterPassword != "" {
			conf += fmt.Sprintf("sentinel auth-pass %s %s\n", g.Name, g.MasterPassword)
		}
		if g.Password != "" {
			conf += fmt.Sprintf("requirepass %s\n", g.Password)
		}
		path := dir + "/sentinel.conf"
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("redis-server", path, "--sentinel")
		cmd.Dir = dir
		if err := cmd.Start(); err != nil {
			t.Fatalf("start redis sentinel: %v", err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		addrs = append(addrs, "127.0.0.1:"+strconv.Itoa(sport))
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, addr := range addrs {
		sc := redis.NewSentinelClient(&redis.Options{Addr: addr, Password: g.Password})
		for {
			got, err := sc.GetMasterAddrByName(context.Background(), g.Name).Result()
			m, merr := sc.Master(context.Background(), g.Name).Result()
			if err == nil && merr == nil && len(got) == 2 && net.JoinHostPort(got[0], got[1]) == g.Master &&
				m["num-slaves"] == strconv.Itoa(g.Replicas) && m["num-other-sentinels"] == strconv.Itoa(g.Count-1) {
				break
			}
			if time.Now().After(deadline) {
				_ = sc.Close()
				t.Fatalf("sentinel on %s does not report %s with %d replicas and %d other sentinels: %v %v %v",
					addr, g.Name, g.Replicas, g.Count-1, got, err, m)
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = sc.Close()
	}
	return addrs
}

// StartReplica runs a redis-server that replicates master, and returns once
// its link to the master is up and the first sync is done.
func StartReplica(t testing.TB, master *Server) *Server {
	t.Helper()
	host, port, err := net.SplitHostPort(master.Addr)
	if err != nil {
		t.Fatal(err)
	}
	r := Start(t, "--replicaof", host, port)
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := c.Info(context.Background(), "replication").Result()
		if err == nil && strings.Contains(info, "master_link_status:up") {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s of %s never linked: %v %s", r.Addr, master.Addr, err, info)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
