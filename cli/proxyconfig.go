package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/strait-mesh/strait/internal/node"
)

// proxyConfig holds what every `strait proxy-config` subcommand shares: where output goes, how
// proxies are reached and the clock that VALID CERT is judged by.
type proxyConfig struct {
	g      *globals
	client *http.Client
	now    func() time.Time
}

// pcFlags are the flags every subcommand has.
type pcFlags struct {
	output string // short, json or yaml
	file   string // a saved /config_dump (or /clusters?format=json) instead of a live proxy
}

// newProxyConfig returns `strait proxy-config` (alias pc), istioctl proxy-config's commands over a
// strait-proxy's (or an Envoy's) admin interface.
func newProxyConfig(g *globals) *cobra.Command {
	return (&proxyConfig{g: g, client: &http.Client{Timeout: 15 * time.Second}, now: time.Now}).command()
}

// command builds the command tree over pc.
func (pc *proxyConfig) command() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "proxy-config",
		Aliases: []string{"pc"},
		Short:   "Show a proxy's clusters, listeners, routes, endpoints and secrets, as istioctl proxy-config does",
		Long: `proxy-config reads a proxy's configuration from its admin interface (GET /config_dump, and
/clusters?format=json for endpoints) and prints it as istioctl proxy-config does.

PROXY is the proxy's admin address (host:port, or just the IP for port 15000), or a proxy as
strait proxy-status names it: its node ID, NAME.NAMESPACE, or NAME when that is unique. A name is
looked up in straitd (--straitd); its admin address is taken to be the node's IP on port 15000 (as
strait run's explicit mode and strait up's ingress use) and is checked against the node ID the proxy
reports. When that does not fit, pass the admin address.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(pc.clusterCmd(), pc.listenerCmd(), pc.routeCmd(), pc.endpointCmd(), pc.secretCmd(), pc.allCmd(), pc.bootstrapCmd(), pc.logCmd())
	return cmd
}

// addCommonFlags registers -o and --file and checks the arguments: one PROXY, or none with --file.
func addCommonFlags(cmd *cobra.Command, f *pcFlags) {
	cmd.Flags().StringVarP(&f.output, "output", "o", "short", "output format: short, json or yaml")
	cmd.Flags().StringVarP(&f.file, "file", "f", "", "read a saved config dump (curl ADMIN/config_dump) instead of asking a proxy")
	cmd.Args = func(cmd *cobra.Command, args []string) error {
		switch {
		case f.file != "" && len(args) > 0:
			return errors.New("give either PROXY or --file, not both")
		case f.file == "" && len(args) != 1:
			return fmt.Errorf("want exactly one PROXY (an admin address host:port, or a proxy name as strait proxy-status shows it), got %d arguments", len(args))
		}
		switch f.output {
		case "short", "json", "yaml":
			return nil
		}
		return fmt.Errorf("unknown output format %q: want short, json or yaml", f.output)
	}
}

// pcSource is where a subcommand's data comes from: a live proxy's admin interface or a file.
type pcSource struct {
	pc    *proxyConfig
	admin string // the proxy's admin address; "" with --file
	raw   []byte // the config dump (or, with --file, the file), once fetched
}

// source resolves PROXY (or opens --file).
func (pc *proxyConfig) source(ctx context.Context, args []string, f *pcFlags) (*pcSource, error) {
	if f.file != "" {
		b, err := os.ReadFile(f.file)
		if err != nil {
			return nil, fmt.Errorf("reading the saved config: %w", err)
		}
		return &pcSource{pc: pc, raw: b}, nil
	}
	t, err := pc.resolve(ctx, args[0])
	if err != nil {
		return nil, err
	}
	return &pcSource{pc: pc, admin: t.admin, raw: t.dump}, nil
}

// configDump returns the raw config dump.
func (s *pcSource) configDump(ctx context.Context) ([]byte, error) {
	if s.raw == nil {
		b, err := s.pc.adminGet(ctx, s.admin, "/config_dump")
		if err != nil {
			return nil, err
		}
		s.raw = b
	}
	return s.raw, nil
}

// decodedDump returns the decoded config dump.
func (s *pcSource) decodedDump(ctx context.Context) (*configDump, error) {
	raw, err := s.configDump(ctx)
	if err != nil {
		return nil, err
	}
	return parseConfigDump(raw)
}

// endpoints returns the cluster statuses `endpoint` shows: the proxy's /clusters?format=json, or
// the EDS part of its config dump when it does not serve that (d, when not nil, is that dump
// decoded); with --file, whichever of the two the file holds.
func (s *pcSource) endpoints(ctx context.Context, d *configDump) ([]*adminv3.ClusterStatus, error) {
	if s.admin == "" && !isConfigDump(s.raw) {
		return parseClusters(s.raw)
	}
	if s.admin != "" {
		b, err := s.pc.adminGet(ctx, s.admin, "/clusters?format=json")
		if err == nil {
			return parseClusters(b)
		}
		if !errors.Is(err, errNotServed) {
			return nil, err
		}
	}
	if d == nil {
		var err error
		if d, err = s.decodedDump(ctx); err != nil {
			return nil, err
		}
	}
	return d.edsStatuses()
}

// proxyTarget is a resolved PROXY argument.
type proxyTarget struct {
	admin string // host:port of the admin interface
	dump  []byte // the /config_dump fetched to check a name's guessed address, if any
}

// resolve turns the PROXY argument into an admin address: an address as given, or a proxy name
// looked up in straitd's /debug/syncz.
func (pc *proxyConfig) resolve(ctx context.Context, arg string) (proxyTarget, error) {
	if addr, ok := adminAddress(arg); ok {
		return proxyTarget{admin: addr}, nil
	}
	body, err := fetch(ctx, pc.g.addr, "/debug/syncz")
	if err != nil {
		return proxyTarget{}, fmt.Errorf("%q is not an admin address (host:port), so looking it up as a proxy name: %w", arg, err)
	}
	var entries []struct {
		Proxy string `json:"proxy"`
		// AdminAddress is the proxy's admin address if straitd reports it (from the node
		// metadata ADMIN_ADDRESS that strait-proxy sends); the node's IP:15000 is tried otherwise.
		AdminAddress string `json:"adminAddress"`
	}
	if err := json.Unmarshal(body, &entries); err != nil {
		return proxyTarget{}, fmt.Errorf("reading straitd's /debug/syncz: %w", err)
	}
	var matches []int
	for i, e := range entries {
		if e.Proxy == arg {
			matches = []int{i}
			break
		}
		if id, err := node.Parse(e.Proxy); err == nil && (id.Name+"."+id.Namespace == arg || id.Name == arg) {
			matches = append(matches, i)
		}
	}
	switch len(matches) {
	case 0:
		return proxyTarget{}, fmt.Errorf("no proxy named %q is connected to straitd at %s (strait proxy-status lists them); or pass the proxy's admin address (host:port)", arg, pc.g.addr)
	case 1:
	default:
		names := make([]string, len(matches))
		for i, m := range matches {
			names[i] = entries[m].Proxy
		}
		return proxyTarget{}, fmt.Errorf("%q names %d proxies: %s; give the node ID or NAME.NAMESPACE", arg, len(matches), strings.Join(names, ", "))
	}
	e := entries[matches[0]]
	if e.AdminAddress != "" {
		return proxyTarget{admin: e.AdminAddress}, nil
	}
	id, err := node.Parse(e.Proxy)
	if err != nil {
		return proxyTarget{}, fmt.Errorf("proxy %s: %w", e.Proxy, err)
	}
	guess := net.JoinHostPort(id.IP, "15000")
	dump, err := pc.adminGet(ctx, guess, "/config_dump")
	if err == nil {
		var got string
		if got, err = dumpNodeID(dump); err == nil && got != e.Proxy {
			err = fmt.Errorf("the admin interface there belongs to %s", got)
		}
	}
	if err != nil {
		return proxyTarget{}, fmt.Errorf("proxy %s: straitd does not know its admin address, and %s (its IP, port 15000) is not it: %w; pass the admin address (host:port) instead", e.Proxy, guess, err)
	}
	return proxyTarget{admin: guess, dump: dump}, nil
}

// adminAddress reports whether arg is an admin address: host:port, http://host:port, or an IP
// alone (port 15000, Istio's admin port).
func adminAddress(arg string) (string, bool) {
	s := strings.TrimSuffix(strings.TrimPrefix(arg, "http://"), "/")
	if ip, err := netip.ParseAddr(s); err == nil {
		return net.JoinHostPort(ip.String(), "15000"), true
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || strings.Contains(host, "~") {
		return "", false
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", false
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), true
}

// errNotServed is adminGet's error for a 404: the proxy does not serve that path.
var errNotServed = errors.New("not served")

// adminGet fetches path from the admin interface at admin.
func (pc *proxyConfig) adminGet(ctx context.Context, admin, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+path, nil)
	if err != nil {
		return nil, fmt.Errorf("asking the proxy admin at %s for %s: %w", admin, path, err)
	}
	resp, err := pc.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("asking the proxy admin at %s for %s (is the proxy running?): %w", admin, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("reading %s from the proxy admin at %s: %w", path, admin, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return b, nil
	case http.StatusNotFound:
		return nil, fmt.Errorf("proxy admin at %s: %s: %w", admin, path, errNotServed)
	}
	return nil, fmt.Errorf("proxy admin at %s answered %s for %s: %s", admin, resp.Status, path, strings.TrimSpace(string(b)))
}

func (pc *proxyConfig) clusterCmd() *cobra.Command {
	var f pcFlags
	var cf clusterFilter
	cmd := &cobra.Command{
		Use:     "cluster PROXY",
		Aliases: []string{"clusters", "c"},
		Short:   "Show a proxy's clusters (SERVICE FQDN, PORT, SUBSET, DIRECTION, TYPE, DESTINATION RULE)",
		RunE:    listRunE(pc, &f, "clusters", (*configDump).clusterList, &cf, writeClusterTable),
	}
	addCommonFlags(cmd, &f)
	cmd.Flags().StringVar(&cf.fqdn, "fqdn", "", "only clusters whose name contains this service FQDN")
	cmd.Flags().IntVar(&cf.port, "port", 0, "only clusters of this port")
	cmd.Flags().StringVar(&cf.subset, "subset", "", "only clusters whose name contains this subset")
	cmd.Flags().StringVar(&cf.direction, "direction", "", "only clusters of this direction (inbound or outbound)")
	return cmd
}

func (pc *proxyConfig) listenerCmd() *cobra.Command {
	var f pcFlags
	var lf listenerFilter
	cmd := &cobra.Command{
		Use:     "listener PROXY",
		Aliases: []string{"listeners", "l"},
		Short:   "Show a proxy's listeners (ADDRESSES, PORT, MATCH, DESTINATION)",
		RunE:    listRunE(pc, &f, "listeners", (*configDump).listenerList, &lf, writeListenerTable),
	}
	addCommonFlags(cmd, &f)
	cmd.Flags().StringVar(&lf.address, "address", "", "only listeners on this address")
	cmd.Flags().Uint32Var(&lf.port, "port", 0, "only listeners on this port")
	cmd.Flags().StringVar(&lf.typ, "type", "", "only listeners of this type (HTTP, TCP, HTTP+TCP)")
	cmd.Flags().BoolVar(&lf.verbose, "verbose", true, "one row per filter chain with its MATCH and DESTINATION (false: ADDRESSES, PORT, TYPE)")
	return cmd
}

func (pc *proxyConfig) routeCmd() *cobra.Command {
	var f pcFlags
	var rf routeFilter
	cmd := &cobra.Command{
		Use:     "route PROXY",
		Aliases: []string{"routes", "r"},
		Short:   "Show a proxy's routes (NAME, VHOST NAME, DOMAINS, MATCH, VIRTUAL SERVICE)",
		RunE:    listRunE(pc, &f, "routes", (*configDump).routeList, &rf, writeRouteTable),
	}
	addCommonFlags(cmd, &f)
	cmd.Flags().StringVar(&rf.name, "name", "", "only the route configuration of this name (e.g. the port, 9080)")
	cmd.Flags().BoolVar(&rf.verbose, "verbose", true, "one row per route (false: NAME, VIRTUAL HOSTS)")
	return cmd
}

func (pc *proxyConfig) endpointCmd() *cobra.Command {
	var f pcFlags
	var ef endpointFilter
	cmd := &cobra.Command{
		Use:     "endpoint PROXY",
		Aliases: []string{"endpoints", "ep"},
		Short:   "Show a proxy's endpoints (ENDPOINT, STATUS, OUTLIER CHECK, CLUSTER)",
		Long: `endpoint shows each cluster's endpoints as the proxy sees them (GET /clusters?format=json): health
and outlier detection. From a proxy without /clusters, or a saved config dump (--file), it shows the
endpoints the control plane sent (EDS), with their health and OUTLIER CHECK OK.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			src, err := pc.source(cmd.Context(), args, &f)
			if err != nil {
				return err
			}
			cs, err := src.endpoints(cmd.Context(), nil)
			if err != nil {
				return err
			}
			if f.output != "short" {
				return writeMessages(pc.g.stdout, f.output, filterSlice(cs, ef.matchCluster))
			}
			return writeEndpointTable(pc.g.stdout, cs, ef)
		},
	}
	addCommonFlags(cmd, &f)
	cmd.Flags().Lookup("file").Usage = "read a saved /clusters?format=json or config dump (its EDS part) instead of asking a proxy"
	cmd.Flags().StringVar(&ef.address, "address", "", "only endpoints of this IP")
	cmd.Flags().Uint32Var(&ef.port, "port", 0, "only endpoints of this port")
	cmd.Flags().StringVar(&ef.cluster, "cluster", "", "only endpoints of this cluster")
	cmd.Flags().StringVar(&ef.status, "status", "", "only endpoints of this health status (HEALTHY, UNHEALTHY, DEGRADED, ...)")
	return cmd
}

func (pc *proxyConfig) secretCmd() *cobra.Command {
	var f pcFlags
	cmd := &cobra.Command{
		Use:     "secret PROXY",
		Aliases: []string{"secrets", "s"},
		Short:   "Show a proxy's secrets (RESOURCE NAME, TYPE, STATUS, VALID CERT, SERIAL NUMBER, NOT AFTER, NOT BEFORE)",
		RunE: sectionRunE(pc, &f, "secrets", func(d *configDump) *adminv3.SecretsConfigDump { return d.secrets },
			func(sd *adminv3.SecretsConfigDump, _ *pcSource) error {
				return writeSecretTable(pc.g.stdout, sd, pc.now())
			}),
	}
	addCommonFlags(cmd, &f)
	return cmd
}

func (pc *proxyConfig) allCmd() *cobra.Command {
	var f pcFlags
	var cf clusterFilter
	var lf listenerFilter
	var rf routeFilter
	var ef endpointFilter
	var port uint32
	var address string
	cmd := &cobra.Command{
		Use:     "all PROXY",
		Aliases: []string{"a"},
		Short:   "Show a proxy's clusters, listeners, routes, secrets and endpoints; -o json|yaml: its whole config dump",
		RunE: func(cmd *cobra.Command, args []string) error {
			src, err := pc.source(cmd.Context(), args, &f)
			if err != nil {
				return err
			}
			raw, err := src.configDump(cmd.Context())
			if err != nil {
				return err
			}
			if f.output != "short" {
				return writeRaw(pc.g.stdout, f.output, raw)
			}
			d, err := parseConfigDump(raw)
			if err != nil {
				return err
			}
			cf.port, lf.port, ef.port = int(port), port, port
			lf.address, ef.address = address, address
			lf.verbose, rf.verbose = true, true
			cs, err := src.endpoints(cmd.Context(), d)
			if err != nil && !errors.Is(err, errNoEDS) {
				return err
			}
			return writeAll(pc.g.stdout, d, cs, cf, lf, rf, ef, pc.now())
		},
	}
	addCommonFlags(cmd, &f)
	cmd.Flags().StringVar(&cf.fqdn, "fqdn", "", "only clusters whose name contains this service FQDN")
	cmd.Flags().StringVar(&cf.subset, "subset", "", "only clusters whose name contains this subset")
	cmd.Flags().StringVar(&cf.direction, "direction", "", "only clusters of this direction (inbound or outbound)")
	cmd.Flags().Uint32Var(&port, "port", 0, "only clusters, listeners and endpoints of this port")
	cmd.Flags().StringVar(&address, "address", "", "only listeners and endpoints of this address")
	cmd.Flags().StringVar(&lf.typ, "type", "", "only listeners of this type (HTTP, TCP, HTTP+TCP)")
	cmd.Flags().StringVar(&rf.name, "name", "", "only the route configuration of this name")
	cmd.Flags().StringVar(&ef.cluster, "cluster", "", "only endpoints of this cluster")
	cmd.Flags().StringVar(&ef.status, "status", "", "only endpoints of this health status")
	return cmd
}

// listRunE is the RunE of a subcommand that lists one kind of resource of the config dump (what,
// e.g. "clusters"), filtered by the subcommand's flags (filter, read when the command runs):
// -o json|yaml prints the matching resources, short prints table's table of them.
func listRunE[M proto.Message, F interface{ match(M) bool }](pc *proxyConfig, f *pcFlags, what string, list func(*configDump) ([]M, error), filter *F, table func(io.Writer, []M, F) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		d, err := pc.decodedDump(cmd.Context(), args, f)
		if err != nil {
			return err
		}
		ms, err := list(d)
		if err != nil {
			return err
		}
		if len(ms) == 0 {
			return fmt.Errorf("no %s found in the proxy's config dump", what)
		}
		if f.output != "short" {
			return writeMessages(pc.g.stdout, f.output, filterSlice(ms, (*filter).match))
		}
		return table(pc.g.stdout, ms, *filter)
	}
}

// sectionRunE is the RunE of a subcommand that shows one section of the config dump (name, e.g.
// "secrets"; get returns nil when the dump has none): -o json|yaml prints the section, short
// prints it with short, which is also given where the dump came from.
func sectionRunE[M interface {
	comparable
	proto.Message
}](pc *proxyConfig, f *pcFlags, name string, get func(*configDump) M, short func(M, *pcSource) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		src, err := pc.source(cmd.Context(), args, f)
		if err != nil {
			return err
		}
		d, err := src.decodedDump(cmd.Context())
		if err != nil {
			return err
		}
		var none M
		m := get(d)
		if m == none {
			return fmt.Errorf("the proxy's config dump has no %s section", name)
		}
		if f.output != "short" {
			return writeMessage(pc.g.stdout, f.output, m)
		}
		return short(m, src)
	}
}

// decodedDump resolves PROXY (or opens --file) and decodes its config dump.
func (pc *proxyConfig) decodedDump(ctx context.Context, args []string, f *pcFlags) (*configDump, error) {
	src, err := pc.source(ctx, args, f)
	if err != nil {
		return nil, err
	}
	return src.decodedDump(ctx)
}
