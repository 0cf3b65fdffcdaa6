package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/strait-mesh/strait/controlplane/config/embedded"
)

// ExplicitInboundPort is the port an explicit-mode sidecar receives mesh traffic on, at the
// workload's address (the port Istio captures inbound traffic on).
const ExplicitInboundPort = 15006

// explicitLabel selects one explicit-mode workload instance for its Sidecar.
const explicitLabel = "strait.io/instance"

// startExplicit starts the workload without root, as Istio's Sidecar with capture mode NONE:
//
//   - the workload gets its own loopback address W (127.19.N.1) and an outbound address E
//     (127.19.N.2); the application listens on W:PORT;
//   - the sidecar receives mesh traffic at W:15006 (the auto-registered WorkloadEntry's port for
//     the service, from the WorkloadGroup template) and forwards it to the application (a Sidecar
//     ingress listener bound to W with defaultEndpoint 0.0.0.0:PORT, i.e. W:PORT);
//   - the sidecar offers every mesh service on E:SERVICE_PORT (a Sidecar egress listener bound
//     to E): the application calls E:PORT with the service's host name.
//
// The Sidecar is removed when the workload exits.
func (w *workload) startExplicit(ctx context.Context, proxyBin string, argv []string, stdin io.Reader, stdout, stderr io.Writer) (*exec.Cmd, error) {
	o := w.o
	if o.port == ExplicitInboundPort {
		return nil, fmt.Errorf("--port %d is the sidecar's inbound port in explicit mode", o.port)
	}
	wAddr, eAddr, release, err := allocateLoopback()
	if err != nil {
		return nil, err
	}
	w.defer_(release)
	w.ip = wAddr.String()
	instance := o.name + "-" + strings.ReplaceAll(w.ip, ".", "-")
	w.instanceLabels = map[string]string{explicitLabel: instance}
	sidecar := w.explicitSidecar(instance, eAddr)
	if err := w.register(ctx, map[string]uint32{w.portName(): ExplicitInboundPort}, sidecar); err != nil {
		return nil, err
	}
	w.defer_(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := embedded.NewClient(o.straitd).WithAdminToken(o.admin.token).Delete(ctx, "Sidecar", o.namespace, instance)
		return err
	})
	return w.startExplicitProcesses(ctx, proxyBin, eAddr, argv, stdin, stdout, stderr)
}

// explicitSidecar returns the Sidecar of an explicit-mode instance: ingress at the workload's
// address on ExplicitInboundPort to the application, egress to every service at eAddr.
func (w *workload) explicitSidecar(instance string, eAddr netip.Addr) string {
	o := w.o
	proto := ", protocol: " + strings.ToUpper(o.protocol)
	if p := strings.ToUpper(o.protocol); p == "" || p == "AUTO" {
		proto = ""
	}
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  workloadSelector:
    labels: {%[3]s: %[1]s}
  ingress:
  - port: {number: %[4]d, name: %[6]s%[5]s}
    bind: %[7]s
    defaultEndpoint: 0.0.0.0:%[8]d
  egress:
  - bind: %[9]s
    hosts: ["*/*"]
`, instance, o.namespace, explicitLabel, ExplicitInboundPort, proto, w.portName(), w.ip, o.port, eAddr)
}

// startExplicitProcesses starts the sidecar, waits until it is ready, and starts the application.
func (w *workload) startExplicitProcesses(ctx context.Context, proxyBin string, eAddr netip.Addr, argv []string, stdin io.Reader, stdout, stderr io.Writer) (*exec.Cmd, error) {
	o := w.o
	admin := net.JoinHostPort(w.ip, "15000")
	proxy := exec.Command(proxyBin, w.proxyArgs(append([]string{"--interception-mode", "NONE", "--admin-address", admin,
		"--dns-address", ""}, w.statusArgs()...)...)...) // no mesh DNS: sidecars share the host's loopback
	proxy.Stdout = &prefixWriter{w: stderr, prefix: "[" + o.name + " sidecar] "}
	proxy.Stderr = proxy.Stdout
	proxy.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	pp, err := startProc(proxy, (*exec.Cmd).Start)
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", proxyBin, err)
	}
	w.defer_(func() error { pp.stop(10 * time.Second); return nil })
	why := "no interception"
	if w.why != "" {
		why = w.why + "; no interception"
	}
	fmt.Fprintf(stderr, "strait run: explicit mode (%s): %s listens on %s:%d ($STRAIT_WORKLOAD_IP); "+
		"its sidecar receives mesh traffic at %s:%d and offers mesh services at %s:PORT ($STRAIT_OUTBOUND_IP) by host name\n",
		why, o.name, w.ip, o.port, w.ip, ExplicitInboundPort, eAddr)
	hc := &http.Client{Timeout: 2 * time.Second}
	if err := pollReady(ctx, hc, "http://"+admin+"/ready", pp); err != nil {
		return nil, err
	}
	app := exec.Command(argv[0], argv[1:]...)
	app.Stdin, app.Stdout, app.Stderr = stdin, stdout, stderr
	app.Env = append(w.appEnv("explicit"), "STRAIT_OUTBOUND_IP="+eAddr.String())
	app.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := app.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", argv[0], err)
	}
	return app, nil
}

// allocateLoopback picks 127.19.N.1 and 127.19.N.2 for an explicit-mode workload: a file per N
// under the temporary directory records the pid of the `strait run` holding it (a file whose
// process is gone is stale), and the addresses must be free to bind. The func releases them.
func allocateLoopback() (netip.Addr, netip.Addr, func() error, error) {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("strait-run-%d", os.Getuid()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return netip.Addr{}, netip.Addr{}, nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	for n := 0; n < 256; n++ {
		path := filepath.Join(dir, "explicit-"+strconv.Itoa(n))
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if errors.Is(err, os.ErrExist) {
			b, rerr := os.ReadFile(path)
			pid, perr := strconv.Atoi(strings.TrimSpace(string(b)))
			if rerr == nil && (perr != nil || syscall.Kill(pid, 0) == syscall.ESRCH) {
				_ = os.Remove(path)
				f, err = os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			}
		}
		if err != nil {
			continue
		}
		fmt.Fprintf(f, "%d\n", os.Getpid())
		f.Close()
		wAddr := netip.AddrFrom4([4]byte{127, 19, byte(n), 1})
		eAddr := netip.AddrFrom4([4]byte{127, 19, byte(n), 2})
		if !bindable(wAddr) || !bindable(eAddr) {
			continue // someone else's: keep our claim file so that we skip it next time too
		}
		return wAddr, eAddr, func() error { return os.Remove(path) }, nil
	}
	return netip.Addr{}, netip.Addr{}, nil, errors.New("no free loopback address pair in 127.19.0.0/16")
}

// bindable reports whether the sidecar's admin port can be bound on a.
func bindable(a netip.Addr) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort(a.String(), "15000"))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}
