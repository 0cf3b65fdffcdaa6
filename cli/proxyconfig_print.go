package cli

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// The tables follow istioctl proxy-config's: the same columns, cell texts, row order and
// tabwriter settings, so that what users read (and grep) in istioctl's output reads the same here.

// ---- clusters ----

// clusterFilter is `cluster`'s --fqdn, --port, --subset and --direction: like istioctl, plain
// substring tests on the cluster name (direction|port|subset|fqdn).
type clusterFilter struct {
	fqdn, subset, direction string
	port                    int
}

func (f clusterFilter) match(c *clusterv3.Cluster) bool {
	name := c.GetName()
	switch {
	case f.fqdn != "" && !strings.Contains(name, f.fqdn),
		f.direction != "" && !strings.Contains(name, f.direction),
		f.subset != "" && !strings.Contains(name, f.subset),
		f.port != 0 && !strings.Contains(name, fmt.Sprintf("|%d|", f.port)):
		return false
	}
	return true
}

// subsetKey is a cluster name split as Istio's direction|port|subset|fqdn; ok is false for other
// names (BlackHoleCluster, PassthroughCluster, ...).
type subsetKey struct {
	direction, subset, fqdn string
	port                    int
	ok                      bool
}

func parseSubsetKey(name string) subsetKey {
	parts := strings.Split(name, "|")
	if len(parts) != 4 {
		return subsetKey{fqdn: name}
	}
	port, _ := strconv.Atoi(parts[1])
	return subsetKey{direction: parts[0], port: port, subset: parts[2], fqdn: parts[3], ok: true}
}

// clusterKeyLess orders cluster names by FQDN, subset, port, direction (istioctl's order).
func clusterKeyLess(a, b string) bool {
	x, y := parseSubsetKey(a), parseSubsetKey(b)
	switch {
	case x.fqdn != y.fqdn:
		return x.fqdn < y.fqdn
	case x.subset != y.subset:
		return x.subset < y.subset
	case x.port != y.port:
		return x.port < y.port
	}
	return x.direction < y.direction
}

// writeClusterTable writes SERVICE FQDN, PORT, SUBSET, DIRECTION, TYPE, DESTINATION RULE.
func writeClusterTable(w io.Writer, clusters []*clusterv3.Cluster, f clusterFilter) error {
	tw := tabwriter.NewWriter(w, 0, 8, 5, ' ', 0)
	fmt.Fprintln(tw, "SERVICE FQDN\tPORT\tSUBSET\tDIRECTION\tTYPE\tDESTINATION RULE")
	for _, c := range clusters {
		if !f.match(c) {
			continue
		}
		k := parseSubsetKey(c.GetName())
		if k.ok {
			subset := k.subset
			if subset == "" {
				subset = "-"
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", k.fqdn, k.port, subset, k.direction, clusterType(c), describeManagement(c.GetMetadata()))
		} else {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t%s\t%s\n", c.GetName(), clusterType(c), describeManagement(c.GetMetadata()))
		}
	}
	return tw.Flush()
}

// clusterType is the discovery type (EDS, STATIC, ORIGINAL_DST, ...) or a custom cluster type's name.
func clusterType(c *clusterv3.Cluster) string {
	if ct := c.GetClusterType(); ct != nil {
		return ct.GetName()
	}
	return c.GetType().String()
}

// describeManagement names the Istio object a resource came from, from the istio filter
// metadata's "config" path (/apis/GROUP/VERSION/namespaces/NS/KIND/NAME) as NAME.NS.
func describeManagement(md *corev3.Metadata) string {
	cfg, ok := md.GetFilterMetadata()["istio"].GetFields()["config"]
	if !ok {
		return ""
	}
	parts := strings.Split(cfg.GetStringValue(), "/")
	// "", "apis", group, version, "namespaces", ns, kind, name
	if len(parts) != 8 || parts[1] != "apis" || parts[4] != "namespaces" {
		return "<unknown>"
	}
	return parts[7] + "." + parts[5]
}

// ---- listeners ----

// listenerFilter is `listener`'s --address, --port, --type and --verbose.
type listenerFilter struct {
	address string
	port    uint32
	typ     string
	verbose bool
}

func (f listenerFilter) match(l *listenerv3.Listener) bool {
	if f.address != "" && !slices.ContainsFunc(listenerAddresses(l), func(a string) bool { return strings.EqualFold(a, f.address) }) {
		return false
	}
	if f.port != 0 && listenerPort(l) != f.port {
		return false
	}
	return f.typ == "" || strings.EqualFold(listenerType(l), f.typ)
}

// listenerAddresses returns the listener's address and its additional addresses.
func listenerAddresses(l *listenerv3.Listener) []string {
	addrs := []string{addressHost(l.GetAddress())}
	for _, a := range l.GetAdditionalAddresses() {
		addrs = append(addrs, addressHost(a.GetAddress()))
	}
	return addrs
}

func addressHost(a *corev3.Address) string {
	if sa := a.GetSocketAddress(); sa != nil {
		return sa.GetAddress()
	}
	return a.GetPipe().GetPath()
}

func listenerPort(l *listenerv3.Listener) uint32 {
	return l.GetAddress().GetSocketAddress().GetPortValue()
}

// filterChains returns the filter chains, the default one last.
func filterChains(l *listenerv3.Listener) []*listenerv3.FilterChain {
	chains := slices.Clone(l.GetFilterChains())
	if dc := l.GetDefaultFilterChain(); dc != nil {
		chains = append(chains, dc)
	}
	return chains
}

// The network filters the listener table looks into, by name or by config type.
const (
	hcmFilterName = "envoy.filters.network.http_connection_manager"
	tcpFilterName = "envoy.filters.network.tcp_proxy"
	blackHole     = "BlackHoleCluster"
)

func isHCM(f *listenerv3.Filter) bool {
	return f.GetName() == hcmFilterName || f.GetTypedConfig().MessageIs((*hcmv3.HttpConnectionManager)(nil))
}

func isTCPProxy(f *listenerv3.Filter) bool {
	return f.GetName() == tcpFilterName || f.GetTypedConfig().MessageIs((*tcpv3.TcpProxy)(nil))
}

// tcpProxyCluster returns a TCP proxy filter's cluster, "" when it cannot be read.
func tcpProxyCluster(f *listenerv3.Filter) string {
	var tp tcpv3.TcpProxy
	if f.GetTypedConfig().UnmarshalTo(&tp) != nil {
		return ""
	}
	return tp.GetCluster()
}

// listenerType is HTTP, TCP, HTTP+TCP or UNKNOWN by the filters of its chains (TCP proxies to
// the BlackHoleCluster do not count).
func listenerType(l *listenerv3.Listener) string {
	nHTTP, nTCP := 0, 0
	for _, fc := range filterChains(l) {
		for _, f := range fc.GetFilters() {
			switch {
			case isHCM(f):
				nHTTP++
			case isTCPProxy(f) && tcpProxyCluster(f) != blackHole:
				nTCP++
			}
		}
	}
	switch {
	case nHTTP > 0 && nTCP > 0:
		return "HTTP+TCP"
	case nHTTP > 0:
		return "HTTP"
	case nTCP > 0:
		return "TCP"
	}
	return "UNKNOWN"
}

// writeListenerTable writes ADDRESSES, PORT, MATCH, DESTINATION: a row per filter chain
// (ADDRESSES, PORT, TYPE: a row per listener, without --verbose).
func writeListenerTable(w io.Writer, listeners []*listenerv3.Listener, f listenerFilter) error {
	ls := filterSlice(listeners, f.match)
	sort.SliceStable(ls, func(i, j int) bool {
		if a, b := listenerPort(ls[i]), listenerPort(ls[j]); a != b {
			return a < b
		}
		if a, b := addressHost(ls[i].GetAddress()), addressHost(ls[j].GetAddress()); a != b {
			return a < b
		}
		return listenerType(ls[i]) < listenerType(ls[j])
	})
	tw := tabwriter.NewWriter(w, 0, 8, 1, ' ', 0)
	if f.verbose {
		fmt.Fprintln(tw, "ADDRESSES\tPORT\tMATCH\tDESTINATION")
	} else {
		fmt.Fprintln(tw, "ADDRESSES\tPORT\tTYPE")
	}
	for _, l := range ls {
		addrs, port := strings.Join(listenerAddresses(l), ","), listenerPort(l)
		if !f.verbose {
			fmt.Fprintf(tw, "%s\t%d\t%s\n", addrs, port, listenerType(l))
			continue
		}
		type row struct{ match, dest string }
		var rows []row
		for _, fc := range filterChains(l) {
			rows = append(rows, row{describeChainMatch(fc.GetFilterChainMatch()), describeChainDestination(fc.GetFilters())})
		}
		sort.SliceStable(rows, func(i, j int) bool { return rows[i].dest > rows[j].dest })
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", addrs, port, r.match, r.dest)
		}
	}
	return tw.Flush()
}

// Istio's ALPN sets, shown by name as istioctl does.
var alpnNames = []struct {
	name   string
	protos []string
}{
	{"App: HTTP TLS", []string{"http/1.0", "http/1.1", "h2c", "istio-http/1.0", "istio-http/1.1", "istio-h2"}},
	{"App: Istio HTTP Plain", []string{"istio", "istio-http/1.0", "istio-http/1.1", "istio-h2"}},
	{"App: TCP TLS", []string{"istio-peer-exchange", "istio"}},
	{"App: HTTP", []string{"http/1.0", "http/1.1", "h2c"}},
}

// describeChainMatch renders a filter chain match: SNI, transport, application protocols,
// destination addresses and port; ALL for a chain that matches everything.
func describeChainMatch(m *listenerv3.FilterChainMatch) string {
	var d []string
	if sn := m.GetServerNames(); len(sn) > 0 {
		d = append(d, "SNI: "+strings.Join(sn, ","))
	}
	if tp := m.GetTransportProtocol(); tp != "" {
		d = append(d, "Trans: "+tp)
	}
	if ap := m.GetApplicationProtocols(); len(ap) > 0 {
		name := "App: " + strings.Join(ap, ",")
		for _, n := range alpnNames {
			if slices.Equal(ap, n.protos) {
				name = n.name
				break
			}
		}
		d = append(d, name)
	}
	port := ""
	if m.GetDestinationPort() != nil {
		port = fmt.Sprintf(":%d", m.GetDestinationPort().GetValue())
	}
	if pr := m.GetPrefixRanges(); len(pr) > 0 {
		var cidrs []string
		for _, p := range pr {
			cidrs = append(cidrs, fmt.Sprintf("%s/%d", p.GetAddressPrefix(), p.GetPrefixLen().GetValue()))
		}
		d = append(d, "Addr: "+strings.Join(cidrs, ",")+port)
	} else if port != "" {
		d = append(d, "Addr: *"+port)
	}
	if len(d) == 0 {
		return "ALL"
	}
	return strings.Join(d, "; ")
}

// describeChainDestination says where a chain sends traffic: "Route: NAME" (RDS), an inline route
// summary, "Cluster: NAME", a special cluster's bare name, or Non-HTTP/Non-TCP.
func describeChainDestination(filters []*listenerv3.Filter) string {
	for _, f := range filters {
		switch {
		case isHCM(f):
			var hcm hcmv3.HttpConnectionManager
			if err := f.GetTypedConfig().UnmarshalTo(&hcm); err != nil {
				return err.Error()
			}
			if rc := hcm.GetRouteConfig(); rc != nil {
				return describeInlineRoute(rc)
			}
			if name := hcm.GetRds().GetRouteConfigName(); name != "" {
				return "Route: " + name
			}
			return "HTTP"
		case isTCPProxy(f):
			c := tcpProxyCluster(f)
			if c == blackHole {
				continue
			}
			return clusterRef(c)
		}
	}
	return "Non-HTTP/Non-TCP"
}

// clusterRef is "Cluster: NAME", or the name alone for Istio's special clusters
// (PassthroughCluster, BlackHoleCluster, InboundPassthroughCluster...).
func clusterRef(name string) string {
	if strings.Contains(name, "Cluster") {
		return name
	}
	return "Cluster: " + name
}

// describeInlineRoute summarizes a route configuration inside a listener: the cluster of a
// catch-all route, else each virtual host's domains and matches.
func describeInlineRoute(rc *routev3.RouteConfiguration) string {
	if vhs := rc.GetVirtualHosts(); len(vhs) == 1 && slices.Equal(vhs[0].GetDomains(), []string{"*"}) && len(vhs[0].GetRoutes()) == 1 {
		r := vhs[0].GetRoutes()[0]
		if c := r.GetRoute().GetCluster(); r.GetMatch().GetPrefix() == "/" && c != "" {
			return clusterRef(c)
		}
	}
	var vhosts []string
	for _, vh := range rc.GetVirtualHosts() {
		var ms []string
		for _, r := range vh.GetRoutes() {
			ms = append(ms, describeMatch(r.GetMatch()))
		}
		routes := strings.Join(ms, ", ")
		if d := vh.GetDomains(); len(d) == 1 && d[0] == "*" {
			vhosts = append(vhosts, routes)
		} else {
			vhosts = append(vhosts, strings.Join(d, "/")+" "+routes)
		}
	}
	return "Inline Route: " + strings.Join(vhosts, "; ")
}

// describeMatch renders a route's path match (headers and query parameters are not shown, as in
// istioctl): PREFIX*, PathPrefix:PATH, PATH, or regex RE.
func describeMatch(m *routev3.RouteMatch) string {
	var conds []string
	if p := m.GetPrefix(); p != "" {
		conds = append(conds, p+"*")
	}
	if p := m.GetPathSeparatedPrefix(); p != "" {
		conds = append(conds, "PathPrefix:"+p)
	}
	if p := m.GetPath(); p != "" {
		conds = append(conds, p)
	}
	if re := m.GetSafeRegex(); re != nil {
		conds = append(conds, "regex "+re.GetRegex())
	}
	return strings.Join(conds, " ")
}

// ---- routes ----

// routeFilter is `route`'s --name and --verbose.
type routeFilter struct {
	name    string
	verbose bool
}

func (f routeFilter) match(rc *routev3.RouteConfiguration) bool {
	return f.name == "" || f.name == rc.GetName()
}

// writeRouteTable writes NAME, VHOST NAME, DOMAINS, MATCH, VIRTUAL SERVICE, a row per route that
// does not just pass traffic through (NAME, VIRTUAL HOSTS without --verbose).
func writeRouteTable(w io.Writer, routes []*routev3.RouteConfiguration, f routeFilter) error {
	tw := tabwriter.NewWriter(w, 0, 8, 5, ' ', 0)
	if f.verbose {
		fmt.Fprintln(tw, "NAME\tVHOST NAME\tDOMAINS\tMATCH\tVIRTUAL SERVICE")
	} else {
		fmt.Fprintln(tw, "NAME\tVIRTUAL HOSTS")
	}
	for _, rc := range routes {
		if !f.match(rc) {
			continue
		}
		if !f.verbose {
			fmt.Fprintf(tw, "%s\t%d\n", rc.GetName(), len(rc.GetVirtualHosts()))
			continue
		}
		for _, vh := range rc.GetVirtualHosts() {
			domains := describeRouteDomains(vh.GetDomains())
			for _, r := range vh.GetRoutes() {
				if r.GetRoute().GetCluster() == "PassthroughCluster" {
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", rc.GetName(), vh.GetName(), domains, describeMatch(r.GetMatch()), describeManagement(r.GetMetadata()))
			}
			if len(vh.GetRoutes()) == 0 {
				fmt.Fprintf(tw, "%s\t%s\t%s\t/*\t404\n", rc.GetName(), vh.GetName(), domains)
			}
		}
	}
	return tw.Flush()
}

// describeRouteDomains shortens a virtual host's domains as istioctl does: the ones without a
// port, the long forms dropped when a short one is there, at most two and a count of the rest.
func describeRouteDomains(domains []string) string {
	if len(domains) <= 1 {
		return strings.Join(domains, "")
	}
	var noPort []string
	for _, d := range domains {
		switch c := strings.Count(d, ":"); {
		case c == 0:
			noPort = append(noPort, d)
		case c > 2 && strings.HasSuffix(d, "]"): // a bare IPv6 address
			noPort = append(noPort, d)
		}
	}
	have := map[string]bool{}
	for _, d := range noPort {
		have[d] = true
	}
	var short []string
	for _, d := range noPort {
		if s := strings.TrimSuffix(d, ".svc.cluster.local"); s != d && have[s] {
			continue
		}
		if s := strings.TrimSuffix(d, ".svc"); s != d && have[s] {
			continue
		}
		short = append(short, d)
	}
	if len(short) > 2 {
		return fmt.Sprintf("%s + %d more...", strings.Join(short[:2], ", "), len(short)-2)
	}
	return strings.Join(short, ", ")
}

// ---- endpoints ----

// endpointFilter is `endpoint`'s --address, --port, --cluster and --status.
type endpointFilter struct {
	address, cluster, status string
	port                     uint32
}

func (f endpointFilter) match(h *adminv3.HostStatus, cluster string) bool {
	switch {
	case f.address != "" && !strings.EqualFold(hostAddress(h), f.address),
		f.port != 0 && h.GetAddress().GetSocketAddress().GetPortValue() != f.port,
		f.cluster != "" && !strings.EqualFold(cluster, f.cluster),
		f.status != "" && !strings.EqualFold(h.GetHealthStatus().GetEdsHealthStatus().String(), f.status):
		return false
	}
	return true
}

// matchCluster keeps a cluster if one of its hosts matches (what -o json prints, as istioctl).
func (f endpointFilter) matchCluster(cs *adminv3.ClusterStatus) bool {
	return slices.ContainsFunc(cs.GetHostStatuses(), func(h *adminv3.HostStatus) bool { return f.match(h, cs.GetName()) })
}

// hostAddress is an endpoint's IP, or unix://PATH for a pipe.
func hostAddress(h *adminv3.HostStatus) string {
	if sa := h.GetAddress().GetSocketAddress(); sa != nil {
		return sa.GetAddress()
	}
	return "unix://" + h.GetAddress().GetPipe().GetPath()
}

// writeEndpointTable writes ENDPOINT, STATUS, OUTLIER CHECK, CLUSTER, ordered by address, port,
// cluster.
func writeEndpointTable(w io.Writer, clusters []*adminv3.ClusterStatus, f endpointFilter) error {
	type row struct {
		addr          string
		port          uint32
		cluster       string
		status        string
		outlierFailed bool
	}
	var rows []row
	for _, cs := range clusters {
		for _, h := range cs.GetHostStatuses() {
			if f.match(h, cs.GetName()) {
				rows = append(rows, row{hostAddress(h), h.GetAddress().GetSocketAddress().GetPortValue(), cs.GetName(),
					h.GetHealthStatus().GetEdsHealthStatus().String(), h.GetHealthStatus().GetFailedOutlierCheck()})
			}
		}
	}
	sort.SliceStable(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		switch {
		case a.addr != b.addr:
			return a.addr < b.addr
		case a.port != b.port:
			return a.port < b.port
		}
		return a.cluster < b.cluster
	})
	tw := tabwriter.NewWriter(w, 0, 8, 5, ' ', 0)
	fmt.Fprintln(tw, "ENDPOINT\tSTATUS\tOUTLIER CHECK\tCLUSTER")
	for _, r := range rows {
		ep := r.addr
		if r.port != 0 {
			ep = net.JoinHostPort(r.addr, strconv.Itoa(int(r.port)))
		}
		outlier := "OK"
		if r.outlierFailed {
			outlier = "FAILED"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", ep, r.status, outlier, r.cluster)
	}
	return tw.Flush()
}

// ---- secrets ----

// secretRow is one row of the secret table.
type secretRow struct {
	name, typ, state    string
	valid               bool
	serial              string
	notAfter, notBefore string
}

// secretRows lists warming secrets, then active ones, as istioctl does.
func secretRows(sd *adminv3.SecretsConfigDump, now time.Time) ([]secretRow, error) {
	var rows []secretRow
	add := func(s *adminv3.SecretsConfigDump_DynamicSecret, state string) error {
		r := secretRow{name: s.GetName(), state: state}
		if s.GetSecret() != nil {
			sec, err := unpack[*tlsv3.Secret](s.GetSecret(), "secret "+s.GetName())
			if err != nil {
				return err
			}
			var pemData []byte
			switch {
			case sec.GetTlsCertificate() != nil:
				r.typ, pemData = "Cert Chain", inlineData(sec.GetTlsCertificate().GetCertificateChain())
			case sec.GetValidationContext() != nil:
				r.typ, pemData = "CA", inlineData(sec.GetValidationContext().GetTrustedCa())
			}
			if cert := firstCertificate(pemData); cert != nil {
				r.valid = now.After(cert.NotBefore) && now.Before(cert.NotAfter)
				r.serial = fmt.Sprintf("%x", cert.SerialNumber)
				r.notAfter = cert.NotAfter.UTC().Format(time.RFC3339)
				r.notBefore = cert.NotBefore.UTC().Format(time.RFC3339)
			}
		}
		rows = append(rows, r)
		return nil
	}
	for _, s := range sd.GetDynamicWarmingSecrets() {
		if err := add(s, "WARMING"); err != nil {
			return nil, err
		}
	}
	for _, s := range sd.GetDynamicActiveSecrets() {
		if err := add(s, "ACTIVE"); err != nil {
			return nil, err
		}
	}
	return rows, nil
}

// inlineData returns a DataSource's inline content (a file or environment source: nil, since
// only the proxy can read it).
func inlineData(ds *corev3.DataSource) []byte {
	switch v := ds.GetSpecifier().(type) {
	case *corev3.DataSource_InlineBytes:
		return v.InlineBytes
	case *corev3.DataSource_InlineString:
		return []byte(v.InlineString)
	}
	return nil
}

// firstCertificate parses the first PEM certificate of data; nil if there is none.
func firstCertificate(data []byte) *x509.Certificate {
	for len(data) > 0 {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			return nil
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil
		}
		return c
	}
	return nil
}

// writeSecretTable writes RESOURCE NAME, TYPE, STATUS, VALID CERT, SERIAL NUMBER, NOT AFTER,
// NOT BEFORE; VALID CERT is judged at now.
func writeSecretTable(w io.Writer, sd *adminv3.SecretsConfigDump, now time.Time) error {
	rows, err := secretRows(sd, now)
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		_, err := io.WriteString(w, "No active or warming secrets found.\n")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 5, 5, ' ', 0)
	fmt.Fprintln(tw, "RESOURCE NAME\tTYPE\tSTATUS\tVALID CERT\tSERIAL NUMBER\tNOT AFTER\tNOT BEFORE")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%t\t%s\t%s\t%s\n", r.name, r.typ, r.state, r.valid, r.serial, r.notAfter, r.notBefore)
	}
	return tw.Flush()
}

// ---- all ----

// writeAll writes the cluster, listener, route, secret and endpoint tables, a blank line apart.
func writeAll(w io.Writer, d *configDump, eps []*adminv3.ClusterStatus, cf clusterFilter, lf listenerFilter, rf routeFilter, ef endpointFilter, now time.Time) error {
	clusters, err := d.clusterList()
	if err != nil {
		return err
	}
	listeners, err := d.listenerList()
	if err != nil {
		return err
	}
	routes, err := d.routeList()
	if err != nil {
		return err
	}
	sections := []func() error{
		func() error { return writeClusterTable(w, clusters, cf) },
		func() error { return writeListenerTable(w, listeners, lf) },
		func() error { return writeRouteTable(w, routes, rf) },
		func() error { return writeSecretTable(w, d.secrets, now) },
		func() error { return writeEndpointTable(w, eps, ef) },
	}
	for i, s := range sections {
		if i > 0 {
			if _, err := io.WriteString(w, "\n"); err != nil {
				return err
			}
		}
		if err := s(); err != nil {
			return err
		}
	}
	return nil
}
