package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/strait-mesh/strait/controlplane/config/embedded"
	"github.com/strait-mesh/strait/samples/bookstore"
)

// upOptions are the flags of `strait up`.
type upOptions struct {
	dir     string // state directory: bin/, data/, config/, scenarios/, logs/, up.pid
	binDir  string // prebuilt binaries; empty: beside strait, else built from the source tree
	mode    string // workload mode passed to `strait run`
	xds     string
	http    string
	mesh    string // straitd's TLS mesh port: the CA the proxies' agents get certificates from
	timeout time.Duration
}

// bookstoreWorkloads are the demo's workloads: name, service, version.
var bookstoreWorkloads = [][3]string{
	{"details-v1", "details", "v1"},
	{"ratings-v1", "ratings", "v1"},
	{"reviews-v1", "reviews", "v1"},
	{"reviews-v2", "reviews", "v2"},
	{"reviews-v3", "reviews", "v3"},
	{"web-v1", "web", "v1"},
}

func newUp(g *globals) *cobra.Command {
	o := upOptions{}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run a whole mesh on this machine: straitd, an ingress gateway on :8080 and the bookstore demo",
		Long: "up starts straitd with its embedded store under --dir, an ingress proxy in router mode on\n" +
			"localhost:8080, and the bookstore demo (web, details, reviews v1-v3, ratings), each with its own\n" +
			"sidecar. It prints what to open and what to try, then runs until Ctrl-C or `strait down`, and\n" +
			"removes everything it created. Logs go to DIR/logs/.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return up(cmd.Context(), o, g.stdout)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dir, "dir", defaultUpDir, "state directory (binaries, store, config, logs)")
	f.StringVar(&o.binDir, "bin", "", "directory with straitd, strait-proxy, strait and bookstore (default: beside strait, else built from the source tree)")
	f.StringVar(&o.mode, "mode", "explicit", "workload mode for `strait run`: explicit (loopback, no root) or netns (root; own namespaces, mesh DNS)")
	f.StringVar(&o.xds, "xds-listen", "", "also open straitd's plaintext ADS port at this address, e.g. 127.0.0.1:15010, for development clients (the mesh's proxies speak xDS over mutual TLS on the mesh port)")
	f.StringVar(&o.http, "http-listen", "127.0.0.1:15014", "straitd's HTTP address")
	f.StringVar(&o.mesh, "mesh-listen", "127.0.0.1:15012", "straitd's TLS mesh address: the CA of the proxies' workload certificates and their xDS over mutual TLS")
	f.DurationVar(&o.timeout, "timeout", 2*time.Minute, "how long to wait for the mesh to come up")
	return cmd
}

func newDown(g *globals) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop a mesh started with `strait up` and remove what it created",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return down(cmd.Context(), dir, g.stdout)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", defaultUpDir, "state directory of `strait up`")
	return cmd
}

// step prints one progress line and returns a function that completes it.
func step(w io.Writer, what string) func(error) error {
	fmt.Fprintf(w, "  • %s ... ", what)
	start := time.Now()
	return func(err error) error {
		if err != nil {
			fmt.Fprintln(w, "failed")
			return fmt.Errorf("%s: %w", what, err)
		}
		fmt.Fprintf(w, "done (%.1fs)\n", time.Since(start).Seconds())
		return nil
	}
}

// child is a process started by up, stopped in reverse order.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

func (c *child) stop(grace time.Duration) {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.done:
	case <-time.After(grace):
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(grace):
			_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
			<-c.done
		}
	}
}

func up(parent context.Context, o upOptions, out io.Writer) error {
	dir, err := filepath.Abs(o.dir)
	if err != nil {
		return err
	}
	pidFile := filepath.Join(dir, "up.pid")
	if b, err := os.ReadFile(pidFile); err == nil {
		if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); pid > 0 && syscall.Kill(pid, 0) == nil {
			return fmt.Errorf("a mesh is already up (pid %d); run `strait down --dir %s` first", pid, o.dir)
		}
	}
	for _, sub := range []string{"logs", "data", "config", "scenarios"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	defer os.Remove(pidFile)

	fmt.Fprintf(out, "Starting a Strait mesh (state in %s, logs in %s)\n", o.dir, filepath.Join(o.dir, "logs"))
	var children []*child
	defer func() {
		if len(children) == 0 {
			return
		}
		done := step(out, "stopping the mesh and removing what it created")
		for i := len(children) - 1; i >= 0; i-- {
			children[i].stop(10 * time.Second)
		}
		_ = done(nil)
	}()
	// launch starts a child; a restarted one appends to its log instead of replacing it.
	launch := func(name string, restart bool, argv ...string) (*child, error) {
		flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
		if restart {
			flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
		}
		logf, err := os.OpenFile(filepath.Join(dir, "logs", name+".log"), flags, 0o644)
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
		if err := cmd.Start(); err != nil {
			logf.Close()
			return nil, fmt.Errorf("starting %s: %w", name, err)
		}
		c := &child{name: name, cmd: cmd, done: make(chan struct{})}
		go func() { _ = cmd.Wait(); logf.Close(); close(c.done) }()
		return c, nil
	}
	start := func(name string, argv ...string) error {
		c, err := launch(name, false, argv...)
		if err == nil {
			children = append(children, c)
		}
		return err
	}
	// ctx bounds start-up; once up, only parent (Ctrl-C, SIGTERM from `strait down`) stops it.
	ctx, cancel := context.WithTimeout(parent, o.timeout)
	defer cancel()

	done := step(out, "finding the binaries")
	bin, err := findBinaries(ctx, o.binDir, filepath.Join(dir, "bin"), out)
	if err = done(err); err != nil {
		return err
	}

	done = step(out, "writing the bookstore's configuration")
	err = writeFiles(filepath.Join(dir, "config"), "config")
	if err == nil {
		err = writeFiles(filepath.Join(dir, "scenarios"), "scenarios")
	}
	if err = done(err); err != nil {
		return err
	}

	done = step(out, "starting straitd (control plane)")
	// The demo's MeshConfig (Istio's "mesh" section): every proxy writes Istio's access log line
	// for each request to its log in logs/. An edit applies when straitd restarts.
	meshFile := filepath.Join(dir, "mesh.yaml")
	if _, err := os.Stat(meshFile); os.IsNotExist(err) {
		if err := os.WriteFile(meshFile, []byte(upMeshConfig), 0o644); err != nil {
			return done(err)
		}
	}
	straitdArgs := []string{filepath.Join(bin, "straitd"), "--config-dir", filepath.Join(dir, "config"),
		"--data-dir", filepath.Join(dir, "data"), "--http-listen", o.http, "--mesh-address", o.mesh,
		"--autoregister-grace", "1s", "--mesh-config", meshFile}
	if o.xds != "" {
		straitdArgs = append(straitdArgs, "--xds-listen", o.xds) // plaintext, for development clients
	}
	err = start("straitd", straitdArgs...)
	if err == nil {
		err = waitURL(ctx, "http://"+o.http+"/ready", children)
	}
	if err = done(err); err != nil {
		return err
	}

	// Each proxy's identity: a bootstrap token for its namespace and service account, and the
	// trust bundle, in files only this user can read (removed when up ends).
	idDir := filepath.Join(dir, "identity")
	defer os.RemoveAll(idDir)
	adminToken, err := embedded.ReadAdminToken(filepath.Join(dir, "data", adminTokenFile))
	if err != nil {
		return err
	}
	identity := func(name, namespace, serviceAccount string) ([]string, error) {
		return mintIdentity(ctx, o.http, adminToken, o.mesh, filepath.Join(idDir, name), namespace, serviceAccount)
	}

	done = step(out, "starting the ingress gateway on localhost:8080")
	idArgs, err := identity("ingress", "default", "default")
	if err == nil {
		err = start("ingress", append([]string{filepath.Join(bin, "strait-proxy"), "--mode", "router", "--namespace", "default",
			"--service-account", "default", "--workload-name", "ingress", "--labels", "istio=ingressgateway",
			"--admin-address", "127.0.0.1:15000", "--status-address", "127.0.0.1:15020", "--health-address", "127.0.0.1:15021",
			"--prometheus-address", "127.0.0.1:15090", "--drain-duration", "1s"}, idArgs...)...)
	}
	if err = done(err); err != nil {
		return err
	}

	for i, wl := range bookstoreWorkloads {
		name, svc, ver := wl[0], wl[1], wl[2]
		done = step(out, fmt.Sprintf("starting %s with its sidecar", name))
		// `strait run`'s service account defaults to the service's name.
		idArgs, err := identity(name, "default", svc)
		if err == nil {
			argv := append([]string{filepath.Join(bin, "strait"), "--straitd", o.http,
				"--admin-token-file", filepath.Join(dir, "data", adminTokenFile), "run",
				"--name", name, "--service", svc, "--labels", "version=" + ver, "--port", "9080",
				"--mode", o.mode, "--proxy-bin", filepath.Join(bin, "strait-proxy")}, idArgs...)
			err = start(name, append(argv, "--", filepath.Join(bin, "bookstore"), "--service", svc, "--version", ver)...)
		}
		// Start workloads one at a time: each claims its own loopback addresses when its sidecar
		// binds them, so wait until the sidecar has connected to straitd.
		if err == nil {
			want := i + 2 // the ingress and the workloads so far
			err = poll(ctx, children, func() error { return connectedAtLeast(ctx, o.http, want) })
		}
		if err = done(err); err != nil {
			return err
		}
	}

	done = step(out, "waiting for the bookstore to answer through the ingress")
	if err = done(waitBookstore(ctx, children)); err != nil {
		return err
	}
	fmt.Fprintf(out, `
The mesh is up.
  Open    http://localhost:8080/            the bookstore, through the ingress gateway
          http://localhost:8080/api/book/0  as JSON; X-Bookstore-Versions says who answered
  Try     strait apply -f %[1]s/scenarios/reviews-v1.yaml            all reviews from v1
          strait apply -f %[1]s/scenarios/reviews-canary-90-10.yaml   a 90/10 canary
          strait apply -f %[1]s/scenarios/reviews-jason-v2.yaml       sign in as jason: v2
          strait apply -f %[1]s/scenarios/ratings-delay-jason.yaml    a fault delay for jason
          strait proxy-status                                          every proxy's sync state
  Stop    Ctrl-C here, or strait down
`, o.dir)
	if filepath.Clean(o.dir) != defaultUpDir {
		fmt.Fprintf(out, "  (strait apply and delete need straitd's admin token: --admin-token-file %s)\n",
			filepath.Join(o.dir, "data", adminTokenFile))
	}
	fmt.Fprintln(out, "ready")

	// Run until interrupted or a child other than straitd dies. straitd is supervised: the
	// proxies serve on with their last configuration while it is down, so it is restarted with
	// backoff from its persisted store (data dir) and the watched config dir.
	died := make(chan *child, len(children))
	watch := func(c *child) { go func() { <-c.done; died <- c }() }
	for _, c := range children {
		watch(c)
	}
	for {
		var c *child
		select {
		case <-parent.Done():
			fmt.Fprintln(out, "\nInterrupted.")
			return nil
		case c = <-died:
		}
		if c != children[0] { // children[0] is straitd
			return fmt.Errorf("%s exited unexpectedly; see %s", c.name, filepath.Join(o.dir, "logs", c.name+".log"))
		}
		nc, err := superviseStraitd(parent, out, c, func() (*child, error) { return launch("straitd", true, straitdArgs...) },
			func(ctx context.Context, nc *child) error {
				return waitURL(ctx, "http://"+o.http+"/ready", []*child{nc})
			}, filepath.Join(o.dir, "logs", "straitd.log"))
		if err != nil {
			return nil // interrupted while restarting
		}
		children[0] = nc
		watch(nc)
	}
}

// superviseStraitd restarts straitd after it died (dead is the old process), with backoff from 1 s
// doubling to 30 s, until a new one is ready or ctx ends (then it returns ctx's error). It says
// what happens on out.
func superviseStraitd(ctx context.Context, out io.Writer, dead *child, launch func() (*child, error),
	ready func(context.Context, *child) error, logPath string) (*child, error) {
	fmt.Fprintf(out, "straitd exited unexpectedly (%v); the proxies keep serving their last configuration; restarting it (log: %s)\n",
		dead.cmd.ProcessState, logPath)
	backoff := time.Second
	for attempt := 1; ; attempt++ {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		nc, err := launch()
		if err == nil {
			rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			err = ready(rctx, nc)
			cancel()
			if err != nil {
				nc.stop(5 * time.Second)
			}
		}
		if err == nil {
			fmt.Fprintf(out, "straitd is back (restart attempt %d)\n", attempt)
			return nc, nil
		}
		backoff = min(2*backoff, 30*time.Second)
		fmt.Fprintf(out, "restarting straitd failed (attempt %d): %v; trying again in %s\n", attempt, err, backoff)
	}
}

// upMeshConfig is the MeshConfig strait up writes to <dir>/mesh.yaml on its first run.
const upMeshConfig = `# MeshConfig for strait up's mesh (Istio's "mesh" section of the istio ConfigMap).
# Every proxy logs each request in Istio's default format to its log in logs/.
accessLogFile: /dev/stdout
`

// adminTokenFile is straitd's admin token in its data dir (controlplane.AdminTokenFile).
const adminTokenFile = "admin-token"

// mintIdentity asks straitd (HTTP address straitd, authenticated by adminToken) for a bootstrap
// token for namespace/serviceAccount, writes it and the trust bundle to 0600 files in dir
// (created 0700), and returns strait-proxy's flags (which `strait run` passes on) for its agent:
// --ca-address (straitd's answer, else meshAddr), --ca-root-cert and --bootstrap-token-file.
func mintIdentity(ctx context.Context, straitd, adminToken, meshAddr, dir, namespace, serviceAccount string) ([]string, error) {
	resp, err := embedded.NewClient(straitd).MintBootstrapToken(ctx, adminToken,
		embedded.BootstrapTokenRequest{Namespace: namespace, ServiceAccount: serviceAccount})
	if err != nil {
		return nil, fmt.Errorf("minting a bootstrap token for %s/%s: %w", namespace, serviceAccount, err)
	}
	if resp.TrustBundle == "" {
		return nil, fmt.Errorf("minting a bootstrap token for %s/%s: straitd sent no trust bundle", namespace, serviceAccount)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	tokenFile, rootsFile := filepath.Join(dir, "bootstrap-token"), filepath.Join(dir, "root-cert.pem")
	for f, data := range map[string]string{tokenFile: resp.Token + "\n", rootsFile: resp.TrustBundle} {
		if err := writePrivate(f, []byte(data)); err != nil {
			return nil, err
		}
	}
	caAddr := resp.CAAddress
	if caAddr == "" {
		caAddr = meshAddr
	}
	return []string{"--ca-address", caAddr, "--ca-root-cert", rootsFile, "--bootstrap-token-file", tokenFile}, nil
}

// writePrivate writes data to path with mode 0600, replacing a file of an earlier run.
func writePrivate(path string, data []byte) error {
	_ = os.Remove(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func writeFiles(dst, sub string) error {
	return fs.WalkDir(bookstore.Files, sub, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := bookstore.Files.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, filepath.Base(path)), b, 0o644)
	})
}

// findBinaries returns a directory holding straitd, strait-proxy, strait and bookstore: flag if
// set, else the directory of this executable if it holds them all, else a build from the source
// tree in the working directory into buildDir.
func findBinaries(ctx context.Context, flag, buildDir string, progress io.Writer) (string, error) {
	names := []string{"straitd", "strait-proxy", "strait", "bookstore"}
	has := func(d string) bool {
		for _, n := range names {
			if _, err := os.Stat(filepath.Join(d, n)); err != nil {
				return false
			}
		}
		return true
	}
	if flag != "" {
		if !has(flag) {
			return "", fmt.Errorf("%s lacks one of %s", flag, strings.Join(names, ", "))
		}
		return flag, nil
	}
	if exe, err := os.Executable(); err == nil && has(filepath.Dir(exe)) {
		return filepath.Dir(exe), nil
	}
	mod, err := os.ReadFile("go.mod")
	if err != nil || !strings.Contains(string(mod), "module github.com/strait-mesh/strait") {
		return "", errors.New("binaries not found beside strait; run from the Strait source tree or pass --bin")
	}
	if progress != nil {
		fmt.Fprint(progress, "building them from the source tree (the first run takes a minute or two) ... ")
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", buildDir+"/",
		"./cmd/straitd", "./cmd/strait-proxy", "./cmd/strait", "./samples/bookstore/cmd/bookstore")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, b)
	}
	return buildDir, nil
}

func httpGet(ctx context.Context, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, resp.Header.Get("X-Bookstore-Versions"), nil
}

// waitURL polls url until it answers 200, a child exits, or ctx ends.
func waitURL(ctx context.Context, url string, children []*child) error {
	return poll(ctx, children, func() error {
		code, _, err := httpGet(ctx, url)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("status %d", code)
		}
		return err
	})
}

// connectedAtLeast checks that at least n proxies are connected to straitd.
func connectedAtLeast(ctx context.Context, addr string, n int) error {
	body, err := fetch(ctx, addr, "/debug/syncz")
	if err != nil {
		return err
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(body, &entries); err != nil {
		return err
	}
	if len(entries) < n {
		return fmt.Errorf("%d proxies connected, want %d", len(entries), n)
	}
	return nil
}

// waitBookstore waits until the ingress serves a page that every service contributed to.
func waitBookstore(ctx context.Context, children []*child) error {
	return poll(ctx, children, func() error {
		code, versions, err := httpGet(ctx, "http://127.0.0.1:8080/api/book/0")
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("status %d", code)
		}
		for _, s := range []string{"web=", "details=", "reviews="} {
			if !strings.Contains(versions, s) {
				return fmt.Errorf("not every service answered yet (%q)", versions)
			}
		}
		return nil
	})
}

func poll(ctx context.Context, children []*child, cond func() error) error {
	var last error
	for {
		if last = cond(); last == nil {
			return nil
		}
		for _, c := range children {
			select {
			case <-c.done:
				return fmt.Errorf("%s exited; see its log", c.name)
			default:
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// running reports whether pid is a live process (a zombie waiting for its parent to reap it has
// finished its work and counts as stopped).
func running(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// down stops the `strait up` whose pid is in DIR/up.pid and waits until it has cleaned up.
func down(ctx context.Context, dir string, out io.Writer) error {
	b, err := os.ReadFile(filepath.Join(dir, "up.pid"))
	if errors.Is(err, os.ErrNotExist) {
		fmt.Fprintln(out, "No mesh is up.")
		return nil
	}
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return fmt.Errorf("bad pid file %s", filepath.Join(dir, "up.pid"))
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		os.Remove(filepath.Join(dir, "up.pid"))
		fmt.Fprintln(out, "No mesh is up (stale pid file removed).")
		return nil
	}
	fmt.Fprintf(out, "Stopping the mesh (pid %d) ... ", pid)
	deadline := time.Now().Add(60 * time.Second)
	for running(pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("strait up (pid %d) did not stop within 60s", pid)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	fmt.Fprintln(out, "done")
	return nil
}
