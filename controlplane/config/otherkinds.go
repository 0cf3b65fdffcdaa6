package config

import (
	"fmt"
	"strings"
)

// Documents that are not one of Kinds are refused, with a message that says why: a kind of
// Istio's API (or the Gateway API, which Istio implements) that Strait does not decode yet, or an
// object that is not Istio configuration at all (a Kubernetes Service or Deployment in the same
// file). Of Kubernetes' own kinds only the core "v1" Secret is read (gateway credentials). Either way the document is refused as a whole, with one error and without reading its
// other fields, so that the user never sees a misleading complaint about fields of an API Strait
// does not read.

// notYetKinds lists, by API group, the kinds of Istio's API that Strait does not decode yet.
var notYetKinds = map[string][]string{
	Group:                 {"ProxyConfig"},
	"extensions.istio.io": {"WasmPlugin"},
}

// notYetGroups are API groups none of whose kinds Strait decodes yet: the Gateway API, whose
// Gateway is not Istio's networking.istio.io Gateway.
var notYetGroups = []string{
	"gateway.networking.k8s.io", "gateway.networking.x-k8s.io",
	"inference.networking.k8s.io", "inference.networking.x-k8s.io",
}

// notYetSupported reports whether kind in group is a kind of Istio's API (or the Gateway API)
// that Strait does not decode yet.
func notYetSupported(group, kind string) bool {
	for _, g := range notYetGroups {
		if group == g {
			return true
		}
	}
	for _, k := range notYetKinds[group] {
		if kind == k {
			return true
		}
	}
	return false
}

// isIstioGroup reports whether group is one of Istio's API groups ("*.istio.io").
func isIstioGroup(group string) bool {
	return group == "istio.io" || strings.HasSuffix(group, ".istio.io")
}

// refuseKind returns why a document with this apiVersion and kind is refused without decoding
// it, or "" when the document is decoded (it is one of Kinds, or its kind or apiVersion is wrong
// in a way the decoder reports field by field). Both strings may be empty.
func refuseKind(apiVersion, kind string) string {
	if kind == "" || apiVersion == "" {
		return ""
	}
	group := apiGroup(apiVersion)
	switch {
	case knownKind(Kind(kind)) && group == GroupFor(Kind(kind)):
		return ""
	case notYetSupported(group, kind):
		return fmt.Sprintf("kind %s (%s) is not supported yet", kind, group)
	case knownKind(Kind(kind)) || isIstioGroup(group):
		// A kind of ours with the wrong apiVersion, or a misspelt Istio kind: reported by the
		// decoder as an unsupported apiVersion or kind.
		return ""
	}
	return fmt.Sprintf("kind %s (apiVersion %s) is not an Istio object; Strait reads only Istio configuration and Secrets: %s",
		quoteKind(kind), quoteKind(apiVersion), kindList())
}

// quoteKind quotes s for a message when it is not a plain name (letters, digits, '.', '/', '-').
func quoteKind(s string) string {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '/' || r == '-') {
			return quoteShort(s)
		}
	}
	if len(s) > 64 {
		return quoteShort(s)
	}
	return s
}
