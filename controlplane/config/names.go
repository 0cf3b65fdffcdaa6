package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strings"
)

// Name rules shared by decoding and validation: Kubernetes object names and labels, DNS names and
// Istio's host forms.

const (
	dns1123LabelMsg     = "must be a lower-case DNS-1123 label (at most 63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit)"
	dns1123SubdomainMsg = "must be a lower-case DNS-1123 subdomain (at most 253 characters of a-z, 0-9, '-' and '.', each part starting and ending with a letter or digit)"
)

var (
	dns1123LabelRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	// dnsLabelRE is a DNS label in host names, where Istio accepts upper case.
	dnsLabelRE      = regexp.MustCompile(`^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$`)
	qualifiedNameRE = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
	labelValueRE    = regexp.MustCompile(`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`)
	// httpTokenRE is an HTTP header field name (RFC 7230 token).
	httpTokenRE = regexp.MustCompile("^[!#$%&'*+\\-.^_`|~0-9A-Za-z]+$")
)

// isDNS1123Label reports whether s is a Kubernetes DNS-1123 label (namespace names, port names).
func isDNS1123Label(s string) bool {
	return len(s) <= 63 && dns1123LabelRE.MatchString(s)
}

// isDNS1123Subdomain reports whether s is a Kubernetes DNS-1123 subdomain (object names).
func isDNS1123Subdomain(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !isDNS1123Label(l) {
			return false
		}
	}
	return true
}

// qualifiedNameErr checks a Kubernetes qualified name ("prefix/name" or "name"), as used for label
// and annotation keys.
func qualifiedNameErr(k string) string {
	name := k
	if i := strings.IndexByte(k, '/'); i >= 0 {
		prefix := k[:i]
		name = k[i+1:]
		if !isDNS1123Subdomain(prefix) {
			return fmt.Sprintf("key %s: prefix %s", quoteShort(k), dns1123SubdomainMsg)
		}
	}
	if len(name) == 0 || len(name) > 63 || !qualifiedNameRE.MatchString(name) {
		return fmt.Sprintf("key %s: name part must be at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit", quoteShort(k))
	}
	return ""
}

// validateLabels checks label keys and values as Kubernetes does.
func validateLabels(fe *fieldErrs, path string, labels map[string]string) {
	for _, k := range sortedStringKeys(labels) {
		p := path + "[" + quoteShort(k) + "]"
		if msg := qualifiedNameErr(k); msg != "" {
			fe.add(p, "invalid label %s", msg)
		}
		if v := labels[k]; len(v) > 63 || !labelValueRE.MatchString(v) {
			fe.add(p, "invalid label value %s: must be at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit", quoteShort(v))
		}
	}
}

// maxAnnotationsSize is Kubernetes' limit on the total size of an object's annotations.
const maxAnnotationsSize = 256 << 10

// validateAnnotations checks annotation keys and total size as Kubernetes does.
func validateAnnotations(fe *fieldErrs, path string, ann map[string]string) {
	total := 0
	for _, k := range sortedStringKeys(ann) {
		total += len(k) + len(ann[k])
		if msg := qualifiedNameErr(k); msg != "" {
			fe.add(path+"["+quoteShort(k)+"]", "invalid annotation %s", msg)
		}
	}
	if total > maxAnnotationsSize {
		fe.add(path, "annotations are %d bytes, more than the limit of %d", total, maxAnnotationsSize)
	}
}

// labelsErr checks the dot-separated DNS labels of a host name, returning why they are invalid
// or "".
func labelsErr(name string) string {
	for _, l := range strings.Split(name, ".") {
		switch {
		case l == "":
			return "empty label (leading, trailing or double dot)"
		case len(l) > 63:
			return fmt.Sprintf("label %s is longer than 63 characters", quoteShort(l))
		case !dnsLabelRE.MatchString(l):
			return fmt.Sprintf("label %s must be letters, digits or '-', starting and ending with a letter or digit", quoteShort(l))
		}
	}
	return ""
}

// fqdnErr checks a DNS name without wildcards: at most 255 characters, labels of at most 63
// letters, digits and '-'. A trailing dot is allowed. Upper case is accepted, as Istio does.
func fqdnErr(host string) string {
	h := strings.TrimSuffix(host, ".")
	if h == "" {
		return "empty host name"
	}
	if len(h) > 255 {
		return fmt.Sprintf("host name %s is longer than 255 characters", quoteShort(host))
	}
	if msg := labelsErr(h); msg != "" {
		return fmt.Sprintf("invalid host name %s: %s", quoteShort(host), msg)
	}
	return ""
}

// wildcardHostErr checks a host that may start with a wildcard: "*", "*.example.com",
// "*example.com" or an ordinary name. The wildcard may only be in the first label.
func wildcardHostErr(host string) string {
	if host == "" {
		return "empty host name"
	}
	if host == "*" {
		return ""
	}
	if len(host) > 255 {
		return fmt.Sprintf("host name %s is longer than 255 characters", quoteShort(host))
	}
	first, rest, hasRest := strings.Cut(host, ".")
	if strings.Contains(rest, "*") || strings.Contains(first[min(1, len(first)):], "*") {
		return fmt.Sprintf("invalid host %s: a wildcard '*' is allowed only at the start of the first label", quoteShort(host))
	}
	if tail, wild := strings.CutPrefix(first, "*"); wild {
		if tail != "" && (len(tail) > 62 || !dnsLabelRE.MatchString(strings.TrimPrefix(tail, "-"))) {
			return fmt.Sprintf("invalid host %s: %s is not a valid wildcard label", quoteShort(host), quoteShort(first))
		}
	} else if msg := labelsErr(first); msg != "" {
		return fmt.Sprintf("invalid host %s: %s", quoteShort(host), msg)
	}
	if hasRest && rest != "" { // a trailing dot is allowed
		if msg := labelsErr(strings.TrimSuffix(rest, ".")); msg != "" {
			return fmt.Sprintf("invalid host %s: %s", quoteShort(host), msg)
		}
	}
	return ""
}

// isIP reports whether s is an IPv4 or IPv6 address (without zone).
func isIP(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Zone() == ""
}

// isCIDR reports whether s is an IP prefix such as 10.0.0.0/8.
func isCIDR(s string) bool {
	_, err := netip.ParsePrefix(s)
	return err == nil
}

// namespacedHostErr checks a "namespace/host" reference as used by Sidecar egress hosts and
// Gateway servers. The namespace part may be "*", "." or a namespace name ("~" only when allowNone);
// the host part is a wildcard host. When requireNS is false a bare host is accepted.
func namespacedHostErr(h string, requireNS, allowNone bool) string {
	ns, host, found := strings.Cut(h, "/")
	if !found {
		if requireNS {
			return fmt.Sprintf("host %s must be of the form namespace/dnsName", quoteShort(h))
		}
		return wildcardHostErr(h)
	}
	switch {
	case ns == "*" || ns == ".":
	case ns == "~":
		if !allowNone {
			return fmt.Sprintf("host %s: namespace \"~\" is not allowed here", quoteShort(h))
		}
	case !isDNS1123Label(ns):
		return fmt.Sprintf("host %s: namespace %s must be \"*\", \".\" or a namespace name", quoteShort(h), quoteShort(ns))
	}
	if strings.Contains(host, "/") {
		return fmt.Sprintf("host %s must be of the form namespace/dnsName", quoteShort(h))
	}
	return wildcardHostErr(host)
}

// validatePort checks a port number in 1-65535.
func validatePort(fe *fieldErrs, path string, n uint32) {
	if n == 0 || n > 65535 {
		fe.add(path, "port number %d must be in 1-65535", n)
	}
}

// protocols are the port protocols Istio understands (case-insensitive).
var protocols = map[string]bool{
	"GRPC": true, "GRPC-WEB": true, "HTTP": true, "HTTP_PROXY": true, "HTTP2": true, "HTTPS": true,
	"TCP": true, "TLS": true, "UDP": true, "MONGO": true, "REDIS": true, "MYSQL": true,
}

// validateProtocol checks a port protocol name.
func validateProtocol(fe *fieldErrs, path, p string, required bool) {
	if p == "" {
		if required {
			fe.add(path, "protocol is required")
		}
		return
	}
	if !protocols[strings.ToUpper(p)] {
		fe.add(path, "unsupported protocol %s (want one of HTTP, HTTPS, HTTP2, GRPC, GRPC-WEB, TCP, TLS, MONGO, REDIS, MYSQL, UDP)", quoteShort(p))
	}
}

// validatePortName checks a port name: a DNS-1123 label.
func validatePortName(fe *fieldErrs, path, name string, required bool) {
	if name == "" {
		if required {
			fe.add(path, "port name is required")
		}
		return
	}
	if !isDNS1123Label(name) {
		fe.add(path, "invalid port name %s: %s", quoteShort(name), dns1123LabelMsg)
	}
}

// validateExportTo checks exportTo values: ".", "*", "~" or namespace names, no duplicates, and
// "*" or "~" only on their own.
func validateExportTo(fe *fieldErrs, path string, vals []string) {
	seen := map[string]bool{}
	for i, v := range vals {
		p := fmt.Sprintf("%s[%d]", path, i)
		switch {
		case v == "." || v == "*" || v == "~":
		case !isDNS1123Label(v):
			fe.add(p, "invalid exportTo value %s: must be \".\", \"*\", \"~\" or a namespace name", quoteShort(v))
		}
		if seen[v] {
			fe.add(p, "duplicate exportTo value %s", quoteShort(v))
		}
		seen[v] = true
	}
	if len(vals) > 1 && (seen["*"] || seen["~"]) {
		fe.add(path, "\"*\" and \"~\" cannot be combined with other exportTo values")
	}
}

// validateHeaderName checks an HTTP header name.
func validateHeaderName(fe *fieldErrs, path, name string) {
	if name == "" {
		fe.add(path, "header name must not be empty")
		return
	}
	n := name
	if strings.HasPrefix(n, ":") {
		n = n[1:]
	}
	if !httpTokenRE.MatchString(n) {
		fe.add(path, "invalid header name %s", quoteShort(name))
	}
}

func sortedStringKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
