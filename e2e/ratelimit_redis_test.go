package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
)

// TestGlobalRateLimitEnvoyRatelimitRedis is Istio's global rate-limit task with the rate limit
// service Istio's task deploys: Envoy's own ratelimit service (github.com/envoyproxy/ratelimit,
// built from the module tools/ratelimit pins) counting in a real Redis (Debian's redis-server).
// Two ingress gateways share one budget through it; with the service stopped, requests fail with
// 500 (failure_mode_deny: true) or pass (false).
func TestGlobalRateLimitEnvoyRatelimitRedis(t *testing.T) {
	skipShort(t)
	redisBin := needTool(t, "redis-server", "redis-server")
	rlsBin := envoyRatelimitBinary(t)
	const ip = "127.0.0.26"
	redisPort, grpcPort, httpPort, debugPort := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	dir := t.TempDir()

	// Redis on loopback, in memory only (no RDB snapshots, no AOF).
	redis := testenv.Start(t, "redis-server", nil, redisBin, "--bind", ip, "--port", fmt.Sprint(redisPort),
		"--dir", dir, "--save", "", "--appendonly", "no")
	redis.WaitOutput(t, regexp.MustCompile(`Ready to accept connections`), 30*time.Second)

	// The ratelimit service reads RUNTIME_ROOT/RUNTIME_SUBDIRECTORY/config/*.yaml.
	cfgDir := filepath.Join(dir, "runtime", "ratelimit", "config")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(cfgDir, "config.yaml"), globalRateLimitServiceConfig)
	env := []string{
		"BACKEND_TYPE=redis", "REDIS_SOCKET_TYPE=tcp", "REDIS_TYPE=SINGLE", fmt.Sprintf("REDIS_URL=%s:%d", ip, redisPort),
		"RUNTIME_ROOT=" + filepath.Join(dir, "runtime"), "RUNTIME_SUBDIRECTORY=ratelimit", "RUNTIME_WATCH_ROOT=false",
		"USE_STATSD=false", "LOG_LEVEL=info",
		"GRPC_HOST=" + ip, fmt.Sprintf("GRPC_PORT=%d", grpcPort),
		"HOST=" + ip, fmt.Sprintf("PORT=%d", httpPort),
		"DEBUG_HOST=" + ip, fmt.Sprintf("DEBUG_PORT=%d", debugPort),
	}
	rls := testenv.Start(t, "ratelimit", env, rlsBin)
	health := fmt.Sprintf("http://%s:%d/healthcheck", ip, httpPort)
	testenv.Eventually(t, 30*time.Second, func() error {
		select {
		case <-rls.Exited():
			t.Fatalf("ratelimit service exited:\n%s", rls.Output())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		code, body, err := testenv.Get(ctx, health, nil)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("healthcheck: %d %s", code, body)
		}
		return nil
	})

	globalRateLimitTask(t, ip, grpcPort, func() { rls.Stop(5 * time.Second) })

	// The counts were kept in Redis: the service's keys name the domain and descriptor.
	if !strings.Contains(redisKeys(t, ip, redisPort), "ratelimit_PATH_/productpage_") {
		t.Errorf("no counter of /productpage in Redis")
	}
}

// redisKeys lists the keys of the Redis at ip:port (KEYS *, spoken in RESP by hand: the test
// needs no Redis client).
func redisKeys(t *testing.T, ip string, port int) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", ip, port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte("*2\r\n$4\r\nKEYS\r\n$1\r\n*\r\n")); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	var b strings.Builder
	head, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if _, err := fmt.Sscanf(head, "*%d\r\n", &n); err != nil {
		t.Fatalf("KEYS answered %q", head)
	}
	for range min(n, 1000) * 2 { // $LEN line, then the key
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(line, "$") {
			b.WriteString(line)
		}
	}
	return b.String()
}

// envoyRatelimitBinary returns the binary of Envoy's ratelimit service (its src/service_cmd),
// built from the version tools/ratelimit/go.mod pins into the user's cache directory
// (~/.cache/strait/ratelimit/VERSION/ratelimit, XDG_CACHE_HOME when set), so that only the first
// run builds it. A failed build skips the test, or fails it under STRAIT_E2E_REQUIRE_TOOLS (CI).
func envoyRatelimitBinary(t *testing.T) string {
	t.Helper()
	toolDir, err := filepath.Abs(filepath.Join("..", "tools", "ratelimit"))
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile(filepath.Join(toolDir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*github\.com/envoyproxy/ratelimit (v\S+)`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("tools/ratelimit/go.mod requires no github.com/envoyproxy/ratelimit version")
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "strait", "ratelimit", string(m[1]))
	bin := filepath.Join(dir, "ratelimit")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	fail := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("STRAIT_E2E_REQUIRE_TOOLS") != "" {
			t.Fatalf(format, args...)
		}
		t.Skipf("skipping: "+format, args...)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fail("creating %s: %v", dir, err)
	}
	tmp, err := os.CreateTemp(dir, ".ratelimit-*")
	if err != nil {
		fail("creating a file in %s: %v", dir, err)
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp.Name(), "github.com/envoyproxy/ratelimit/src/service_cmd")
	cmd.Dir = toolDir
	if out, err := cmd.CombinedOutput(); err != nil {
		fail("building Envoy's ratelimit service %s (tools/ratelimit): %v\n%s", m[1], err, out)
	}
	t.Logf("built Envoy's ratelimit service %s in %s", m[1], time.Since(start).Round(time.Second))
	// Renamed into place: a concurrent run sees the whole binary or none.
	if err := os.Rename(tmp.Name(), bin); err != nil {
		fail("installing %s: %v", bin, err)
	}
	return bin
}
