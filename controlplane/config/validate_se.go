package config

import (
	"fmt"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

// validateServiceEntry checks a ServiceEntry as Istio does, including the rules tying resolution
// to endpoints and addresses.
func validateServiceEntry(fe *fieldErrs, se *networking.ServiceEntry) {
	if len(se.Hosts) == 0 {
		fe.add("spec.hosts", "at least one host is required")
	}
	for i, h := range se.Hosts {
		p := fmt.Sprintf("spec.hosts[%d]", i)
		switch {
		case h == "*":
			fe.add(p, "host \"*\" is not allowed in a ServiceEntry")
		case strings.Contains(h, "/"):
			fe.add(p, "host %s must not contain a namespace", quoteShort(h))
		default:
			if msg := wildcardHostErr(h); msg != "" {
				fe.add(p, "%s", msg)
			}
		}
	}
	cidr := false
	for i, a := range se.Addresses {
		p := fmt.Sprintf("spec.addresses[%d]", i)
		switch {
		case isIP(a):
		case isCIDR(a):
			cidr = true
		default:
			fe.add(p, "address %s is not an IP address or CIDR", quoteShort(a))
		}
	}
	portNames := map[string]bool{}
	portNumbers := map[uint32]bool{}
	eachItem(fe, "spec.ports", se.Ports, "port", func(_ int, p string, port *networking.ServicePort) {
		validatePort(fe, p+".number", port.Number)
		if port.TargetPort != 0 {
			validatePort(fe, p+".targetPort", port.TargetPort)
		}
		validatePortName(fe, p+".name", port.Name, true)
		validateProtocol(fe, p+".protocol", port.Protocol, false)
		if port.Name != "" && portNames[port.Name] {
			fe.add(p+".name", "duplicate port name %s", quoteShort(port.Name))
		}
		portNames[port.Name] = true
		if portNumbers[port.Number] {
			fe.add(p+".number", "duplicate port number %d", port.Number)
		}
		portNumbers[port.Number] = true
	})
	if se.WorkloadSelector != nil {
		if len(se.Endpoints) > 0 {
			fe.add("spec.workloadSelector", "only one of workloadSelector and endpoints may be set")
		}
		validateWorkloadSelector(fe, "spec.workloadSelector", se.WorkloadSelector.Labels)
	}
	unixEndpoint := false
	eachItem(fe, "spec.endpoints", se.Endpoints, "endpoint", func(_ int, p string, ep *networking.WorkloadEntry) {
		validateWorkloadEntry(fe, p, ep, true)
		if strings.HasPrefix(ep.Address, "unix://") {
			unixEndpoint = true
		}
		for _, name := range sortedStringKeys(ep.Ports) {
			if !portNames[name] {
				fe.add(p+".ports["+quoteShort(name)+"]", "port name %s is not a port of the ServiceEntry", quoteShort(name))
			}
		}
	})
	if unixEndpoint && len(se.Endpoints) > 1 {
		fe.add("spec.endpoints", "a unix:// endpoint must be the only endpoint")
	}
	switch se.Resolution {
	case networking.ServiceEntry_NONE:
		if len(se.Endpoints) > 0 {
			fe.add("spec.endpoints", "endpoints are not allowed with resolution NONE")
		}
	case networking.ServiceEntry_STATIC:
		for i, ep := range se.Endpoints {
			if ep != nil && ep.Address != "" && !isIP(ep.Address) && !strings.HasPrefix(ep.Address, "unix://") {
				fe.add(fmt.Sprintf("spec.endpoints[%d].address", i), "endpoint address %s must be an IP address or unix:// path with resolution STATIC", quoteShort(ep.Address))
			}
		}
	case networking.ServiceEntry_DNS, networking.ServiceEntry_DNS_ROUND_ROBIN:
		if cidr {
			fe.add("spec.addresses", "CIDR addresses are allowed only with resolution NONE or STATIC")
		}
		if len(se.Endpoints) == 0 {
			for i, h := range se.Hosts {
				if strings.HasPrefix(h, "*") {
					fe.add(fmt.Sprintf("spec.hosts[%d]", i), "wildcard host %s needs endpoints with resolution %s", quoteShort(h), se.Resolution)
				}
			}
		}
		for i, ep := range se.Endpoints {
			if ep == nil || ep.Address == "" || isIP(ep.Address) || strings.HasPrefix(ep.Address, "unix://") {
				continue
			}
			if msg := fqdnErr(ep.Address); msg != "" {
				fe.add(fmt.Sprintf("spec.endpoints[%d].address", i), "endpoint address %s is not an IP address or host name", quoteShort(ep.Address))
			}
		}
		if se.Resolution == networking.ServiceEntry_DNS_ROUND_ROBIN && len(se.Endpoints) > 1 {
			fe.add("spec.endpoints", "resolution DNS_ROUND_ROBIN allows at most one endpoint")
		}
	}
	validateExportTo(fe, "spec.exportTo", se.ExportTo)
	for i, san := range se.SubjectAltNames {
		if san == "" {
			fe.add(fmt.Sprintf("spec.subjectAltNames[%d]", i), "subject alt name must not be empty")
		}
	}
}

// validateWorkloadEntry checks a WorkloadEntry, or an endpoint of a ServiceEntry (inline), or the
// template of a WorkloadGroup (p "spec.template").
func validateWorkloadEntry(fe *fieldErrs, p string, we *networking.WorkloadEntry, inline bool) {
	template := p == "spec.template"
	switch {
	case we.Address == "":
		if !template && we.Network == "" {
			fe.add(p+".address", "address is required (unless network is set)")
		}
	case template:
		fe.add(p+".address", "address must not be set in a WorkloadGroup template")
	case strings.HasPrefix(we.Address, "unix://"):
		if len(we.Address) == len("unix://") {
			fe.add(p+".address", "unix socket path must not be empty")
		}
		if len(we.Ports) > 0 {
			fe.add(p+".ports", "ports are not allowed with a unix:// address")
		}
	case isIP(we.Address):
	default:
		if msg := fqdnErr(we.Address); msg != "" {
			fe.add(p+".address", "address %s is not an IP address, host name or unix:// path", quoteShort(we.Address))
		}
	}
	for _, name := range sortedStringKeys(we.Ports) {
		pp := p + ".ports[" + quoteShort(name) + "]"
		if !inline {
			validatePortName(fe, pp, name, true)
		}
		validatePort(fe, pp, we.Ports[name])
	}
	validateLabels(fe, p+".labels", we.Labels)
	if we.ServiceAccount != "" && !isDNS1123Subdomain(we.ServiceAccount) {
		fe.add(p+".serviceAccount", "invalid service account %s: %s", quoteShort(we.ServiceAccount), dns1123SubdomainMsg)
	}
	if we.Locality != "" {
		validateLocality(fe, p+".locality", we.Locality, false)
	}
	if we.Weight > 1<<24 {
		fe.add(p+".weight", "weight %d is too large", we.Weight)
	}
}

// validateWorkloadGroup checks a WorkloadGroup: its template and readiness probe.
func validateWorkloadGroup(fe *fieldErrs, wg *networking.WorkloadGroup) {
	if wg.Template == nil {
		fe.add("spec.template", "template is required")
	} else {
		validateWorkloadEntry(fe, "spec.template", wg.Template, false)
	}
	if wg.Metadata != nil {
		validateLabels(fe, "spec.metadata.labels", wg.Metadata.Labels)
		validateAnnotations(fe, "spec.metadata.annotations", wg.Metadata.Annotations)
	}
	pr := wg.Probe
	if pr == nil {
		return
	}
	validateNonNegative(fe, "spec.probe",
		namedInt{"initialDelaySeconds", pr.InitialDelaySeconds}, namedInt{"timeoutSeconds", pr.TimeoutSeconds},
		namedInt{"periodSeconds", pr.PeriodSeconds}, namedInt{"successThreshold", pr.SuccessThreshold},
		namedInt{"failureThreshold", pr.FailureThreshold})
	switch h := pr.HealthCheckMethod.(type) {
	case nil:
		fe.add("spec.probe", "one of httpGet, tcpSocket, exec or grpc is required")
	case *networking.ReadinessProbe_HttpGet:
		if !validateProbePort(fe, "httpGet", h.HttpGet == nil, h.HttpGet.GetPort()) {
			break
		}
		if s := h.HttpGet.Scheme; s != "" && !strings.EqualFold(s, "http") && !strings.EqualFold(s, "https") {
			fe.add("spec.probe.httpGet.scheme", "scheme %s must be HTTP or HTTPS", quoteShort(s))
		}
		for i, hdr := range h.HttpGet.HttpHeaders {
			if hdr != nil {
				validateHeaderName(fe, fmt.Sprintf("spec.probe.httpGet.httpHeaders[%d].name", i), hdr.Name)
			}
		}
	case *networking.ReadinessProbe_TcpSocket:
		validateProbePort(fe, "tcpSocket", h.TcpSocket == nil, h.TcpSocket.GetPort())
	case *networking.ReadinessProbe_Exec:
		if h.Exec == nil || len(h.Exec.Command) == 0 {
			fe.add("spec.probe.exec.command", "command is required")
		}
	case *networking.ReadinessProbe_Grpc:
		validateProbePort(fe, "grpc", h.Grpc == nil, h.Grpc.GetPort())
	}
}

// validateProbePort checks the port of the probe's method (httpGet, tcpSocket or grpc), which
// missing says is not set; false when it is not.
func validateProbePort(fe *fieldErrs, method string, missing bool, port uint32) bool {
	if missing {
		fe.add("spec.probe."+method, "%s must not be empty", method)
		return false
	}
	validatePort(fe, "spec.probe."+method+".port", port)
	return true
}
