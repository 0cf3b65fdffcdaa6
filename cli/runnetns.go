package cli

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/strait-mesh/strait/internal/netns"
	"github.com/strait-mesh/strait/proxy/intercept"
)

// startNetns starts the workload in its own network namespace with netfilter interception (iptables, else nftables): the
// bridge (created when missing), an address, the namespace and its veth, the rules, the sidecar as
// the proxy uid, then COMMAND as the invoking user. Every step registers its undo in w.cleanup.
func (w *workload) startNetns(ctx context.Context, proxyBin string, argv []string, stdin io.Reader, stdout, stderr io.Writer) (*exec.Cmd, error) {
	o := w.o
	gw, err := netip.ParsePrefix(o.bridgeAddr)
	if err != nil || !gw.Addr().Is4() {
		return nil, fmt.Errorf("--bridge-address %q: want an IPv4 address with prefix length, e.g. 198.18.0.1/15", o.bridgeAddr)
	}
	br := netns.Bridge{Name: o.bridge, Gateway: gw}
	// The bridge is shared by workloads: creating it and attaching to it, and deleting it when
	// unused, happen under one lock.
	unlock, err := netns.Lock("bridge-" + br.Name)
	if err != nil {
		return nil, err
	}
	locked := true
	defer func() {
		if locked {
			unlock()
		}
	}()
	if err := netns.EnsureBridge(br); err != nil {
		return nil, err
	}
	w.defer_(func() error {
		unlock, err := netns.Lock("bridge-" + br.Name)
		if err != nil {
			return err
		}
		defer unlock()
		_, err = netns.DeleteBridgeIfUnused(br.Name)
		return err
	})
	nsName := "strait-" + o.namespace + "-" + o.name
	hostIf := vethName(nsName)
	if err := removeStale(nsName, hostIf); err != nil {
		return nil, err
	}
	addr, release, err := allocate(br, nsName)
	if err != nil {
		return nil, err
	}
	w.defer_(release)
	w.ip = addr.String()
	ns, err := netns.Add(nsName)
	if err != nil {
		return nil, err
	}
	w.defer_(ns.Delete)
	if err := netns.Attach(ns, br, hostIf, addr); err != nil {
		return nil, err
	}
	w.defer_(func() error { return netns.DeleteLink(hostIf) })
	unlock()
	locked = false

	// The sidecar reaches straitd from inside the namespace: a loopback ADS (or CA) address is
	// relayed from the bridge's address for the lifetime of this workload.
	for _, addr := range []*string{&w.xds, &w.ca} {
		host, _, err := net.SplitHostPort(*addr)
		if err != nil {
			continue
		}
		if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() {
			relay, err := startRelay(net.JoinHostPort(gw.Addr().String(), "0"), *addr)
			if err != nil {
				return nil, err
			}
			w.defer_(relay.Close)
			*addr = relay.Addr().String()
		}
	}
	// The sidecar runs as --proxy-uid: it reads copies of its identity files from a directory of
	// its own (0700), removed with the workload.
	if w.ca != "" {
		if err := w.shareIdentityFiles(o.proxyUID); err != nil {
			return nil, err
		}
	}
	if err := w.register(ctx, nil, ""); err != nil {
		return nil, err
	}
	backend, _, err := intercept.SelectBackend(intercept.BackendAuto)
	if err != nil {
		return nil, err
	}
	if err := ns.Do(func() error {
		return intercept.Install(ctx, intercept.Config{ProxyUID: o.proxyUID, ProxyGID: o.proxyUID, RedirectDNS: o.captureDNS},
			intercept.Options{Backend: backend})
	}); err != nil {
		return nil, fmt.Errorf("installing interception in %s: %w", nsName, err)
	}
	fmt.Fprintf(stderr, "strait run: %s in network namespace %s at %s (bridge %s), sidecar uid %d, %s interception\n",
		o.name, nsName, addr, br.Name, o.proxyUID, backend)

	dnsAddr := "" // the sidecar's DNS proxy, where the app's redirected queries arrive
	if o.captureDNS {
		dnsAddr = "127.0.0.1:15053"
	}
	proxy := exec.Command(proxyBin, w.proxyArgs(append([]string{"--dns-address", dnsAddr}, w.statusArgs()...)...)...)
	proxy.Stdout = &prefixWriter{w: stderr, prefix: "[" + o.name + " sidecar] "}
	proxy.Stderr = proxy.Stdout
	proxy.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM,
		Credential: &syscall.Credential{Uid: uint32(o.proxyUID), Gid: uint32(o.proxyUID)}}
	pp, err := startProc(proxy, ns.Start)
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", proxyBin, err)
	}
	w.defer_(func() error { pp.stop(10 * time.Second); return nil })
	if err := waitReady(ctx, ns, pp); err != nil {
		return nil, err
	}

	app := exec.Command(argv[0], argv[1:]...)
	app.Stdin, app.Stdout, app.Stderr = stdin, stdout, stderr
	app.Env = w.appEnv("netns")
	app.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if cred := invokingUser(); cred != nil {
		app.SysProcAttr.Credential = cred
	}
	if err := ns.Start(app); err != nil {
		return nil, fmt.Errorf("starting %s: %w", argv[0], err)
	}
	return app, nil
}

// shareIdentityFiles copies --ca-root-cert and --bootstrap-token-file into a new directory owned
// by uid (mode 0700, files 0600) and points the sidecar's flags at the copies.
func (w *workload) shareIdentityFiles(uid int) error {
	dir, err := os.MkdirTemp("", "strait-identity-")
	if err != nil {
		return err
	}
	w.defer_(func() error { return os.RemoveAll(dir) })
	for name, f := range map[string]*string{"root-cert.pem": &w.o.caRootCert, "bootstrap-token": &w.o.bootstrapTokenFile} {
		b, err := os.ReadFile(*f)
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, name)
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			return err
		}
		if err := os.Chown(dst, uid, uid); err != nil {
			return fmt.Errorf("giving the sidecar (uid %d) its identity file: %w", uid, err)
		}
		*f = dst
	}
	return os.Chown(dir, uid, uid)
}

// removeStale deletes the namespace and veth a `strait run` of the same workload left behind when
// it was killed (no process is left inside), and refuses when the workload is still running.
func removeStale(nsName, hostIf string) error {
	if !netns.Exists(nsName) {
		return netns.DeleteLink(hostIf)
	}
	pids, err := netns.IP("netns", "pids", nsName)
	if err != nil {
		return err
	}
	if strings.TrimSpace(pids) != "" {
		return fmt.Errorf("network namespace %s exists with processes in it: is another %s running?", nsName, strings.TrimPrefix(nsName, "strait-"))
	}
	if err := (&netns.NS{Name: nsName}).Delete(); err != nil {
		return err
	}
	return netns.DeleteLink(hostIf)
}

// invokingUser returns the user who ran sudo (SUDO_UID/SUDO_GID), or nil to keep this process's.
func invokingUser() *syscall.Credential {
	uid, err1 := strconv.ParseUint(os.Getenv("SUDO_UID"), 10, 32)
	gid, err2 := strconv.ParseUint(os.Getenv("SUDO_GID"), 10, 32)
	if err1 != nil || err2 != nil {
		return nil
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

// proc is a started child process whose Wait is owned by a goroutine.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited
}

// startProc starts cmd (through start, e.g. inside a namespace) and watches it.
func startProc(cmd *exec.Cmd, start func(*exec.Cmd) error) (*proc, error) {
	if err := start(cmd); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

// stop sends SIGTERM to the process group and SIGKILL after grace.
func (p *proc) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// waitReady polls the sidecar's admin /ready (127.0.0.1:15000 inside ns) until it answers 200.
func waitReady(ctx context.Context, ns *netns.NS, proxy *proc) error {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = ns.Do(func() error {
				c, err = (&net.Dialer{Timeout: time.Second}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		}}}
	return pollReady(ctx, hc, "http://127.0.0.1:15000/ready", proxy)
}

// pollReady polls url until it answers 200, the proxy exits, ctx ends or 60 s pass.
func pollReady(ctx context.Context, hc *http.Client, url string, proxy *proc) error {
	deadline := time.Now().Add(60 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", url, resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-proxy.done:
			return errors.New("the sidecar exited before it was ready (see its output above)")
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("the sidecar did not become ready: %w", last)
}

// vethName is the host end of a workload's veth: "st" and a hash of the namespace name (interface
// names are at most 15 characters).
func vethName(nsName string) string {
	h := fnv.New32a()
	h.Write([]byte(nsName))
	return fmt.Sprintf("st%08x", h.Sum32())
}

// allocate picks a free workload address on the bridge's subnet, skipping the bridge's own: a
// file per address under /run/strait/addresses records the namespace that holds it; a file whose
// namespace no longer exists is stale and reused. The returned func releases the address.
func allocate(br netns.Bridge, nsName string) (netip.Addr, func() error, error) {
	dir := "/run/strait/addresses"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return netip.Addr{}, nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	subnet := br.Gateway.Masked()
	for a, i := subnet.Addr().Next(), 0; subnet.Contains(a) && i < 4096; a, i = a.Next(), i+1 {
		if a == br.Gateway.Addr() {
			continue
		}
		path := dir + "/" + a.String()
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if errors.Is(err, os.ErrExist) {
			holder, rerr := os.ReadFile(path)
			if rerr == nil && len(holder) > 0 && !netns.Exists(string(holder)) {
				_ = os.Remove(path) // stale: try it again
				f, err = os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			}
		}
		if err != nil {
			continue
		}
		_, werr := f.WriteString(nsName)
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			_ = os.Remove(path)
			return netip.Addr{}, nil, fmt.Errorf("recording address %s: %w", a, werr)
		}
		return a, func() error { return os.Remove(path) }, nil
	}
	return netip.Addr{}, nil, fmt.Errorf("no free address on %s", subnet)
}

// relay forwards TCP connections from a listener to a fixed address.
type relay struct {
	net.Listener
	to string
	wg sync.WaitGroup
}

// startRelay listens on listen and forwards every connection to to.
func startRelay(listen, to string) (*relay, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("relaying %s: %w", to, err)
	}
	r := &relay{Listener: ln, to: to}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go r.pipe(c)
		}
	}()
	return r, nil
}

func (r *relay) pipe(c net.Conn) {
	defer c.Close()
	up, err := net.DialTimeout("tcp", r.to, 5*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); up.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); c.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	<-done
	<-done
}

// Close stops accepting; open connections end with their peers.
func (r *relay) Close() error {
	err := r.Listener.Close()
	r.wg.Wait()
	return err
}
