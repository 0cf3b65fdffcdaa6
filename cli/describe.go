package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/strait-mesh/strait/controlplane/analysis"
	"github.com/strait-mesh/strait/controlplane/describe"
)

// newDescribe returns `strait describe service|workload NAME[.NS]`, istioctl x describe's views
// of what applies to a service or a workload. straitd computes the report (/debug/describe);
// this command only prints it.
func newDescribe(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "describe (service|workload) NAME[.NAMESPACE]",
		Aliases: []string{"x-describe"},
		Short:   "Describe what applies to a service or a workload and why (istioctl x describe)",
		Long: `describe shows what the live mesh applies to a service or a workload: the service's ports and
protocols, the VirtualServices that route it and their routes, the DestinationRule and its subsets
and traffic policies, the Gateways that expose it, the endpoints and their health, and the Sidecar,
PeerAuthentication, AuthorizationPolicies and RequestAuthentications that select its workloads.
straitd computes it from its current mesh snapshot (GET /debug/describe).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(describeCmd(g, describe.KindService, []string{"svc", "services"},
		"Describe a service: routes, subsets, policies, gateways, endpoints",
		"NAME is a hostname (reviews.default.svc.cluster.local), NAME.NAMESPACE (reviews.default) or a short\n"+
			"name in --namespace (reviews): its hostname's first label or its ServiceEntry's name."))
	cmd.AddCommand(describeCmd(g, describe.KindWorkload, []string{"pod", "workloads", "we"},
		"Describe a workload: the services it backs and what selects it",
		"NAME is a WorkloadEntry, a ServiceEntry endpoint or a connected proxy's workload name, as NAME.NAMESPACE\n"+
			"or NAME in --namespace; or the workload's IP address."))
	return cmd
}

func describeCmd(g *globals, kind string, aliases []string, short, long string) *cobra.Command {
	var namespace, output string
	cmd := &cobra.Command{
		Use:     kind + " NAME[.NAMESPACE]",
		Aliases: aliases,
		Short:   short,
		Long:    short + ".\n\n" + long,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch output {
			case "", "short", "json", "yaml":
			default:
				return fmt.Errorf("unknown output format %q: want json or yaml (default: istioctl's text)", output)
			}
			q := url.Values{"kind": {kind}, "name": {args[0]}}
			if namespace != "" {
				q.Set("namespace", namespace)
			}
			body, err := fetch(cmd.Context(), g.addr, describe.Path+"?"+q.Encode())
			if err != nil {
				return fmt.Errorf("describing %s %s: %w", kind, args[0], err)
			}
			if output == "json" || output == "yaml" {
				return writeRaw(g.stdout, output, body)
			}
			return printDescribe(g.stdout, kind, body)
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "`NAMESPACE` of NAME (default: NAME's .NAMESPACE suffix, else \"default\")")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output `FORMAT`: json or yaml (default: istioctl's text)")
	return cmd
}

// printDescribe prints a /debug/describe body of kind as istioctl x describe does.
func printDescribe(w io.Writer, kind string, body []byte) error {
	p := &describePrinter{}
	switch kind {
	case describe.KindService:
		var r describe.ServiceReport
		if err := json.Unmarshal(body, &r); err != nil {
			return fmt.Errorf("reading straitd's describe report: %w", err)
		}
		p.service(r, false)
		p.separator()
		for _, wp := range r.Workloads {
			p.policies(wp, 0)
		}
		p.warnings(r.Warnings)
	case describe.KindWorkload:
		var r describe.WorkloadReport
		if err := json.Unmarshal(body, &r); err != nil {
			return fmt.Errorf("reading straitd's describe report: %w", err)
		}
		p.workload(r)
	}
	_, err := io.WriteString(w, p.b.String())
	return err
}

// describePrinter accumulates the text of a report.
type describePrinter struct{ b strings.Builder }

func (p *describePrinter) line(indent int, format string, args ...any) {
	p.b.WriteString(strings.Repeat("   ", indent))
	fmt.Fprintf(&p.b, format, args...)
	p.b.WriteByte('\n')
}

func (p *describePrinter) separator() { p.line(0, "--------------------") }

func (p *describePrinter) workload(r describe.WorkloadReport) {
	wl := r.Workload
	p.line(0, "Workload: %s.%s", wl.Name, wl.Namespace)
	if wl.Address != "" {
		p.line(1, "Address: %s", wl.Address)
	}
	if len(wl.Labels) > 0 {
		p.line(1, "Labels: %s", labels(wl.Labels))
	}
	if wl.ServiceAccount != "" {
		p.line(1, "Service account: %s", wl.ServiceAccount)
	}
	src := wl.Source
	if wl.Origin != "" {
		src += " (" + wl.Origin + ")"
	}
	p.line(1, "Source: %s", src)
	if len(r.Proxies) == 0 {
		p.line(1, "Proxy: none connected")
	}
	for _, px := range r.Proxies {
		p.line(1, "Proxy: %s (%s)", px.ID, syncSummary(px.Status))
	}
	for _, s := range r.Services {
		p.separator()
		p.service(s, true)
	}
	p.separator()
	p.policies(r.Policies, 0)
	p.warnings(r.Warnings)
	for _, s := range r.Services {
		p.warnings(s.Warnings)
	}
}

func syncSummary(st map[string]string) string {
	var parts []string
	for _, t := range []string{"CDS", "LDS", "EDS", "RDS"} {
		v := st[t]
		if v == "" {
			v = "NOT SENT"
		}
		parts = append(parts, t+" "+v)
	}
	return strings.Join(parts, ", ")
}

// service prints a service's section; inWorkload leaves out endpoints and shows which subsets
// match the workload.
func (p *describePrinter) service(r describe.ServiceReport, inWorkload bool) {
	s := r.Service
	p.line(0, "Service: %s", s.Hostname)
	p.line(1, "Namespace: %s (%s)", s.Namespace, s.Origin)
	addr := "none"
	if len(s.Addresses) > 0 {
		addr = strings.Join(s.Addresses, ", ")
	}
	p.line(1, "Addresses: %s (resolution %s, %s)", addr, s.Resolution, s.Location)
	for _, port := range s.Ports {
		target := port.Number
		if port.TargetPort != 0 {
			target = port.TargetPort
		}
		p.line(1, "Port: %s %d/%s targets workload port %d", port.Name, port.Number, port.Protocol, target)
	}
	if !inWorkload {
		if len(r.Endpoints) == 0 {
			p.line(0, "Endpoints: none")
		} else {
			p.line(0, "Endpoints:")
		}
		for _, ep := range r.Endpoints {
			health := "HEALTHY"
			if !ep.Healthy {
				health = "UNHEALTHY"
			}
			what := ep.Workload
			if what == "" {
				what = "-"
			}
			extra := ""
			if ep.Proxy != "" {
				extra = " proxy " + ep.Proxy
			}
			p.line(1, "%s:%d (%s) %s %s%s", ep.Address, ep.Port, ep.ServicePort, what, health, extra)
		}
	}
	if dr := r.DestinationRule; dr != nil {
		p.line(0, "DestinationRule: %s/%s for %q", dr.Namespace, dr.Name, dr.Host)
		var matching, other, all []string
		for _, ss := range dr.Subsets {
			all = append(all, fmt.Sprintf("%s (%s, %d endpoint(s))", ss.Name, labels(ss.Labels), ss.Endpoints))
			if ss.Matches != nil && *ss.Matches {
				matching = append(matching, ss.Name)
			} else {
				other = append(other, ss.Name)
			}
		}
		if inWorkload && len(dr.Subsets) > 0 {
			if len(matching) > 0 {
				p.line(1, "Matching subsets: %s", strings.Join(matching, ","))
			} else {
				p.line(1, "No matching subsets")
			}
			if len(other) > 0 {
				p.line(2, "(Non-matching subsets %s)", strings.Join(other, ","))
			}
		} else if len(all) > 0 {
			p.line(1, "Subsets: %s", strings.Join(all, "; "))
		}
		p.trafficPolicy(dr.TrafficPolicy, 1)
		for _, ss := range dr.Subsets {
			if ss.TrafficPolicy != nil {
				p.line(1, "Subset %s:", ss.Name)
				p.trafficPolicy(ss.TrafficPolicy, 2)
			}
		}
	} else {
		p.line(0, "DestinationRule: none")
	}
	for _, vs := range r.VirtualServices {
		note := ""
		if vs.Reason == "destination" {
			note = ", routes to it"
		}
		p.line(0, "VirtualService: %s/%s (gateways %s%s)", vs.Namespace, vs.Name, strings.Join(vs.Gateways, ","), note)
		if vs.Shadowed != "" {
			p.line(1, "WARNING: ignored on the mesh gateway for this host: %s is older", vs.Shadowed)
		}
		count := map[string]int{}
		for _, rt := range vs.Routes {
			count[rt.Protocol]++
			p.route(rt)
		}
		var protos []string
		for k := range count {
			protos = append(protos, k)
		}
		sort.Strings(protos)
		for _, k := range protos {
			p.line(1, "%d %s route(s)", count[k], k)
		}
	}
	if len(r.VirtualServices) == 0 {
		p.line(0, "VirtualService: none (default routing to every endpoint)")
	}
	for _, gw := range r.Gateways {
		if gw.Missing {
			p.line(0, "Gateway: %s/%s (via VirtualService %s) does not exist", gw.Namespace, gw.Name, gw.VirtualService)
			continue
		}
		p.line(0, "Exposed on Gateway %s/%s (via VirtualService %s)", gw.Namespace, gw.Name, gw.VirtualService)
		if len(gw.Selector) > 0 {
			p.line(1, "Selector: %s", labels(gw.Selector))
		}
		for _, srv := range gw.Servers {
			p.line(1, "Server: %s", srv)
		}
	}
}

func (p *describePrinter) route(rt describe.RouteInfo) {
	head := rt.Protocol + " route"
	if rt.Name != "" {
		head += " " + strconvQuote(rt.Name)
	}
	if len(rt.Match) > 0 {
		head += " when " + strings.Join(rt.Match, " OR ")
	}
	p.line(1, "%s:", head)
	for _, d := range rt.Destinations {
		s := fmt.Sprintf("Route to host %q", d.Host)
		if d.Subset != "" {
			s += fmt.Sprintf(" subset %q", d.Subset)
		}
		if d.Port != 0 {
			s += fmt.Sprintf(" port %d", d.Port)
		}
		p.line(2, "%s with weight %d%%", s, d.Weight)
	}
	for _, o := range rt.Other {
		p.line(2, "%s", o)
	}
}

func strconvQuote(s string) string { return fmt.Sprintf("%q", s) }

func (p *describePrinter) trafficPolicy(tp *describe.TrafficPolicy, indent int) {
	if tp == nil {
		return
	}
	if tp.TLSMode != "" {
		p.line(indent, "Traffic Policy TLS Mode: %s", tp.TLSMode)
	}
	for _, s := range []struct {
		name string
		v    []string
	}{{"TLS", tp.TLS}, {"Load balancer", tp.LoadBalancer}, {"Connection pool", tp.ConnectionPool}, {"Outlier detection", tp.OutlierDetection}, {"Other", tp.Other}} {
		if len(s.v) > 0 {
			p.line(indent, "%s: %s", s.name, strings.Join(s.v, " "))
		}
	}
	for _, pl := range tp.PortLevel {
		p.line(indent, "Port %d:", pl.Port)
		pol := pl.Policy
		p.trafficPolicy(&pol, indent+1)
	}
}

// policies prints what selects a workload (or a group of a service's workloads).
func (p *describePrinter) policies(wp describe.WorkloadPolicies, indent int) {
	if len(wp.Workloads) > 0 {
		p.line(indent, "Workloads: %s", strings.Join(wp.Workloads, ", "))
	}
	sidecar := "none (mesh default)"
	if wp.Sidecar != "" {
		sidecar = wp.Sidecar
	}
	p.line(indent, "Sidecar: %s", sidecar)
	p.line(indent, "Effective PeerAuthentication:")
	if same(wp.MTLS) {
		p.line(indent+1, "Workload mTLS mode: %s", wp.MTLS[0].Mode)
	} else {
		for _, m := range wp.MTLS {
			p.line(indent+1, "Port %d mTLS mode: %s", m.Port, m.Mode)
		}
	}
	if len(wp.PeerAuthentications) > 0 {
		p.line(indent, "Applied PeerAuthentication:")
		p.line(indent+1, "%s", strings.Join(wp.PeerAuthentications, ", "))
	}
	if len(wp.AuthorizationPolicies) == 0 {
		p.line(indent, "AuthorizationPolicies: none (every request is allowed)")
	} else {
		p.line(indent, "AuthorizationPolicies:")
	}
	for _, ap := range wp.AuthorizationPolicies {
		s := fmt.Sprintf("%s/%s %s, %d rule(s)", ap.Namespace, ap.Name, ap.Action, ap.Rules)
		if ap.Provider != "" {
			s += ", provider " + ap.Provider
		}
		if ap.DryRun {
			s += " (dry run)"
		}
		p.line(indent+1, "%s", s)
	}
	if len(wp.RequestAuthentications) > 0 {
		p.line(indent, "RequestAuthentications: %s", strings.Join(wp.RequestAuthentications, ", "))
	}
}

// same reports whether every port has the first port's mode (and there is one).
func same(ms []describe.PortMode) bool {
	if len(ms) == 0 {
		return false
	}
	for _, m := range ms[1:] {
		if m.Mode != ms[0].Mode {
			return false
		}
	}
	return true
}

func (p *describePrinter) warnings(ws []string) {
	for _, w := range ws {
		p.line(0, "WARNING: %s", w)
	}
}

// labels renders labels sorted as "a=1, b=2".
func labels(m map[string]string) string {
	if len(m) == 0 {
		return "(none)"
	}
	return strings.Join(analysis.LabelPairs(m), ", ")
}
