package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/strait-mesh/strait/controlplane/config/embedded"
	"github.com/strait-mesh/strait/internal/netns"
	"github.com/strait-mesh/strait/internal/vocab"
	"github.com/strait-mesh/strait/proxy/intercept"
)

// runOptions are the flags of `strait run`.
type runOptions struct {
	name, service, namespace, serviceAccount string
	labels                                   string
	port                                     uint32
	protocol                                 string
	address                                  string // ServiceEntry address (VIP), optional
	xds                                      string
	proxyBin                                 string
	mode                                     string // auto, netns or explicit
	bridge                                   string
	bridgeAddr                               string
	proxyUID                                 int
	captureDNS                               bool
	straitd                                  string
	admin                                    adminToken // for registering with straitd
	// The sidecar's identity agent (strait-proxy's flags of the same names); empty caAddress: none.
	caAddress, caRootCert, bootstrapTokenFile string
}

func newRun(g *globals) *cobra.Command {
	o := runOptions{}
	cmd := &cobra.Command{
		Use:   "run --name NAME --service SERVICE --port PORT [flags] -- COMMAND [ARGS...]",
		Short: "Run COMMAND as a mesh workload with its own sidecar",
		Long: "run registers SERVICE with straitd (a ServiceEntry and a WorkloadGroup) and starts COMMAND as a\n" +
			"workload with its own strait-proxy sidecar, which auto-registers its WorkloadEntry; the entry\n" +
			"is removed when the workload exits.\n\n" +
			"As root, the workload gets its own network namespace on a bridge (addresses from 198.18.0.0/15),\n" +
			"the sidecar runs as uid 1337 and netfilter interception (iptables, else nftables) sends the workload's TCP through it, as in\n" +
			"a pod: COMMAND is unchanged and unaware. Without root, explicit mode: the workload gets its own\n" +
			"127.x address, and the sidecar listens for it inbound and offers outbound listeners on loopback.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.straitd = g.addr
			var err error
			if o.admin, err = g.loadAdminToken(); err != nil {
				return err
			}
			return runWorkload(cmd.Context(), o, args, g.stdin, g.stdout, g.stderr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.name, "name", "", "workload name, e.g. reviews-v2 (also the WorkloadGroup's name)")
	f.StringVar(&o.service, "service", "", "service the workload serves, e.g. reviews (label app=SERVICE)")
	f.StringVar(&o.namespace, "namespace", "default", "namespace of the service and workload")
	f.StringVar(&o.serviceAccount, "service-account", "", "service account (default: SERVICE)")
	f.StringVar(&o.labels, "labels", "", "more workload labels, k=v comma-separated, e.g. version=v2")
	f.Uint32Var(&o.port, "port", 0, "port COMMAND serves on (also the service port)")
	f.StringVar(&o.protocol, "protocol", "HTTP", "protocol of the port: HTTP, HTTP2, GRPC, TCP, ... or auto (detected per connection)")
	f.StringVar(&o.address, "address", "", "a virtual IP for the service in its ServiceEntry (clients may call it)")
	f.StringVar(&o.xds, "xds", "", "straitd's ADS address (default: its mesh port, where the sidecar speaks xDS over mutual TLS as the workload's identity)")
	f.StringVar(&o.proxyBin, "proxy-bin", "", "strait-proxy binary (default: beside strait, else on PATH)")
	f.StringVar(&o.mode, "mode", "auto", "netns (root: namespace + iptables or nftables), explicit (loopback, no root) or auto")
	f.StringVar(&o.bridge, "bridge", "strait0", "bridge for workload namespaces (netns mode)")
	f.StringVar(&o.bridgeAddr, "bridge-address", "198.18.0.1/15", "the bridge's address and the workloads' subnet (netns mode)")
	f.IntVar(&o.proxyUID, "proxy-uid", 1337, "uid and gid of the sidecar (netns mode)")
	f.BoolVar(&o.captureDNS, "capture-dns", true, "netns mode: the sidecar answers DNS on 127.0.0.1:15053 (mesh names, the rest forwarded) and the app's DNS queries are sent there")
	f.StringVar(&o.caAddress, "ca-address", "", "straitd's CA (its TLS mesh port): the sidecar gets its workload certificate there (needs --ca-root-cert and --bootstrap-token-file; default: strait run mints the identity with straitd's admin token)")
	f.StringVar(&o.caRootCert, "ca-root-cert", "", "PEM file with the mesh's root certificates, for the sidecar's agent")
	f.StringVar(&o.bootstrapTokenFile, "bootstrap-token-file", "", "file with a bootstrap token straitd minted for the workload's namespace and service account")
	_ = cmd.MarkFlagRequired("name")
	_ = cmd.MarkFlagRequired("service")
	_ = cmd.MarkFlagRequired("port")
	return cmd
}

// workload is what run knows about the workload being started.
type workload struct {
	o      runOptions
	labels map[string]string
	host   string // the service's FQDN
	ip     string // the workload's address (the sidecar's --ip)
	// instanceLabels are the sidecar's labels beyond the workload's (not in the WorkloadGroup).
	instanceLabels map[string]string
	why            string // why explicit mode was chosen, if it was not asked for
	xds            string // ADS address as seen from the sidecar
	ca             string // the CA's address as seen from the sidecar; empty: no agent
	log            io.Writer
	cleanup        []func() error // run in reverse order
}

func (w *workload) defer_(f func() error) { w.cleanup = append(w.cleanup, f) }

// teardown runs the cleanups in reverse order and joins their errors.
func (w *workload) teardown() error {
	var errs []error
	for i := len(w.cleanup) - 1; i >= 0; i-- {
		if err := w.cleanup[i](); err != nil {
			errs = append(errs, err)
		}
	}
	w.cleanup = nil
	return errors.Join(errs...)
}

// newWorkload checks the options and builds the workload's description.
func newWorkload(o runOptions, log io.Writer) (*workload, error) {
	if o.serviceAccount == "" {
		o.serviceAccount = o.service
	}
	for flag, v := range map[string]string{"--name": o.name, "--service": o.service, "--namespace": o.namespace} {
		if !dnsLabel.MatchString(v) {
			return nil, fmt.Errorf("%s %q: want a lower-case DNS label", flag, v)
		}
	}
	if o.port == 0 || o.port > 65535 {
		return nil, fmt.Errorf("--port %d: want 1-65535", o.port)
	}
	w := &workload{o: o, labels: map[string]string{"app": o.service}, log: log,
		host: o.service + "." + o.namespace + ".svc.cluster.local"}
	if o.labels != "" {
		for _, kv := range strings.Split(o.labels, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return nil, fmt.Errorf("--labels: %q is not k=v", kv)
			}
			w.labels[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return w, nil
}

// dnsLabel is a lower-case DNS-1123 label.
var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// runWorkload implements `strait run`.
func runWorkload(ctx context.Context, o runOptions, argv []string, stdin io.Reader, stdout, stderr io.Writer) error {
	w, err := newWorkload(o, stderr)
	if err != nil {
		return err
	}
	mode := o.mode
	if mode == "auto" {
		mode = "netns"
		err := netns.Available()
		if err == nil {
			err = intercept.Available()
		}
		if err != nil {
			mode = "explicit"
			w.why = err.Error()
		}
	}
	if (o.caAddress == "") != (o.caRootCert == "") || (o.caAddress == "") != (o.bootstrapTokenFile == "") {
		return errors.New("--ca-address, --ca-root-cert and --bootstrap-token-file go together")
	}
	defer func() {
		if err := w.teardown(); err != nil {
			fmt.Fprintf(stderr, "strait run: cleaning up: %v\n", err)
		}
	}()
	if o.caAddress == "" {
		// The sidecar's identity: a bootstrap token for the workload's namespace and service
		// account, minted with the admin token that registers it anyway.
		if err := w.mintIdentity(ctx); err != nil {
			return err
		}
	}
	w.ca = w.o.caAddress
	xds := o.xds
	switch {
	case xds != "":
	case w.ca != "":
		xds = w.ca // xDS on the mesh port, as the workload's identity
	default:
		host, _, err := net.SplitHostPort(strings.TrimPrefix(strings.TrimPrefix(o.straitd, "http://"), "https://"))
		if err != nil {
			return fmt.Errorf("--straitd %q: %w", o.straitd, err)
		}
		xds = net.JoinHostPort(host, "15010")
	}
	w.xds = xds
	proxyBin, err := findProxy(o.proxyBin)
	if err != nil {
		return err
	}
	var app *exec.Cmd
	switch mode {
	case "netns":
		app, err = w.startNetns(ctx, proxyBin, argv, stdin, stdout, stderr)
	case "explicit":
		app, err = w.startExplicit(ctx, proxyBin, argv, stdin, stdout, stderr)
	default:
		return fmt.Errorf("--mode %q: want auto, netns or explicit", o.mode)
	}
	if err != nil {
		return err
	}
	return waitApp(ctx, app)
}

// waitApp waits for the application to exit; on ctx's end it sends SIGTERM (SIGKILL after 10 s).
// A non-zero exit is returned as an error carrying the exit code.
func waitApp(ctx context.Context, app *exec.Cmd) error {
	done := make(chan error, 1)
	go func() { done <- app.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = app.Process.Signal(syscall.SIGTERM)
		select {
		case err = <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-app.Process.Pid, syscall.SIGKILL)
			err = <-done
		}
		if err != nil && ctx.Err() != nil {
			return nil // stopped by us
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", app.Path, err)
	}
	return nil
}

// findProxy locates strait-proxy.
func findProxy(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "strait-proxy")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("strait-proxy")
	if err != nil {
		return "", errors.New("strait-proxy not found beside strait or on PATH (use --proxy-bin)")
	}
	return p, nil
}

// register ensures the ServiceEntry and the WorkloadGroup exist in straitd. templatePorts, when
// set, map service port names to the ports auto-registered entries receive traffic on; extra are
// more YAML documents to apply with them.
func (w *workload) register(ctx context.Context, templatePorts map[string]uint32, extra string) error {
	doc := w.documents(templatePorts, extra)
	_, err := embedded.NewClient(w.o.straitd).WithAdminToken(w.o.admin.token).Apply(ctx, []embedded.Document{{Origin: "strait run " + w.o.name, Data: doc}}, false)
	if err != nil {
		return fmt.Errorf("registering %s with straitd: %w", w.o.name, w.o.admin.explain("strait run", err))
	}
	return nil
}

// documents returns the YAML register applies.
func (w *workload) documents(templatePorts map[string]uint32, extra string) string {
	o := w.o
	keys := make([]string, 0, len(w.labels))
	for k := range w.labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var labels strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&labels, "      %s: %q\n", k, w.labels[k])
	}
	proto := strings.ToUpper(o.protocol)
	protoField := ", protocol: " + proto
	if proto == "" || proto == "AUTO" {
		protoField = "" // detected per connection, as Istio does for undeclared protocols
	}
	addresses := ""
	if o.address != "" {
		addresses = fmt.Sprintf("  addresses: [%q]\n", o.address)
	}
	tmplPorts := ""
	if len(templatePorts) > 0 {
		names := make([]string, 0, len(templatePorts))
		for n := range templatePorts {
			names = append(names, n)
		}
		sort.Strings(names)
		tmplPorts = "    ports:\n"
		for _, n := range names {
			tmplPorts += fmt.Sprintf("      %s: %d\n", n, templatePorts[n])
		}
	}
	doc := fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  hosts: [%[3]s]
%[4]s  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: %[5]d, name: %[10]s%[6]s}]
  workloadSelector:
    labels: {app: %[1]q}
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: %[7]s, namespace: %[2]s}
spec:
  metadata:
    labels:
%[8]s  template:
    serviceAccount: %[9]s
%[11]s`, o.service, o.namespace, w.host, addresses, o.port, protoField, o.name, labels.String(), o.serviceAccount,
		w.portName(), tmplPorts)
	if extra != "" {
		doc += "---\n" + extra
	}
	return doc
}

// portName is the ServiceEntry's name of the workload's port.
func (w *workload) portName() string {
	p := strings.ToLower(w.o.protocol)
	if p == "" || p == "auto" {
		p = "port"
	}
	return fmt.Sprintf("%s-%d", p, w.o.port)
}

// proxyArgs returns strait-proxy's flags for the workload.
func (w *workload) proxyArgs(extra ...string) []string {
	all := map[string]string{}
	for k, v := range w.labels {
		all[k] = v
	}
	for k, v := range w.instanceLabels {
		all[k] = v
	}
	keys := make([]string, 0, len(all))
	for k := range all {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var labels []string
	for _, k := range keys {
		labels = append(labels, k+"="+all[k])
	}
	args := []string{"--mode", "sidecar", "--xds-address", w.xds,
		"--workload-name", w.o.name, "--namespace", w.o.namespace, "--ip", w.ip,
		"--labels", strings.Join(labels, ","), "--service-account", w.o.serviceAccount,
		"--workload-group", w.o.name}
	if w.ca != "" {
		args = append(args, "--ca-address", w.ca, "--ca-root-cert", w.o.caRootCert, "--bootstrap-token-file", w.o.bootstrapTokenFile)
	}
	return append(args, extra...)
}

// statusArgs are the sidecar's Istio status ports on the workload's address, where Prometheus
// scrapes a pod's proxy: 15020 (the proxy's metrics merged with the application's, and
// /healthz/ready), 15021 (/healthz/ready) and 15090 (the proxy's own /stats/prometheus).
func (w *workload) statusArgs() []string {
	return []string{"--status-address", net.JoinHostPort(w.ip, strconv.Itoa(vocab.StatusPort)),
		"--health-address", net.JoinHostPort(w.ip, strconv.Itoa(vocab.HealthPort)),
		"--prometheus-address", net.JoinHostPort(w.ip, strconv.Itoa(vocab.PrometheusPort))}
}

// appEnv is the environment of COMMAND: the caller's, plus where the workload is.
func (w *workload) appEnv(mode string) []string {
	return append(os.Environ(),
		"STRAIT_MODE="+mode,
		"STRAIT_WORKLOAD_NAME="+w.o.name,
		"STRAIT_WORKLOAD_IP="+w.ip,
		fmt.Sprintf("STRAIT_PORT=%d", w.o.port),
		"STRAIT_SERVICE_HOST="+w.host)
}

// prefixWriter writes each line with a prefix, a whole line per Write on w so that lines of
// processes sharing w do not mix. A partial last line waits for its end.
type prefixWriter struct {
	w      io.Writer
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if len(p.buf) == 0 {
				p.buf = append(p.buf, p.prefix...)
			}
			p.buf = append(p.buf, b...)
			return n, nil
		}
		if len(p.buf) == 0 {
			p.buf = append(p.buf, p.prefix...)
		}
		p.buf = append(p.buf, b[:i+1]...)
		_, err := p.w.Write(p.buf)
		p.buf = p.buf[:0]
		if err != nil {
			return 0, err
		}
		b = b[i+1:]
	}
	return n, nil
}

// mintIdentity gets the sidecar an identity from straitd: a bootstrap token for the workload's
// namespace and service account and the trust bundle, in files of a private temporary directory
// removed with the workload.
func (w *workload) mintIdentity(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "strait-run-identity-")
	if err != nil {
		return err
	}
	w.defer_(func() error { return os.RemoveAll(dir) })
	args, err := mintIdentity(ctx, w.o.straitd, w.o.admin.token, "", filepath.Join(dir, "id"), w.o.namespace, w.o.serviceAccount)
	if err != nil {
		return fmt.Errorf("strait run: the sidecar's identity: %w", w.o.admin.explain("strait run", err))
	}
	for i := 0; i+1 < len(args); i += 2 {
		switch args[i] {
		case "--ca-address":
			w.o.caAddress = args[i+1]
		case "--ca-root-cert":
			w.o.caRootCert = args[i+1]
		case "--bootstrap-token-file":
			w.o.bootstrapTokenFile = args[i+1]
		}
	}
	return nil
}
