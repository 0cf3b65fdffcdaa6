package config

import (
	"sort"
	"strconv"
	"strings"

	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
)

// maxSelectorLabels is the most labels a selector may list (the CRD's maxProperties).
const maxSelectorLabels = 4096

// validatePeerAuthentication checks a PeerAuthentication with Istio's rules (its validation
// webhook and the CRD's schema):
//   - selector.matchLabels: keys not empty, no wildcards, valid Kubernetes label keys and values;
//     a selector without labels is accepted (Istio only warns), and means no selector;
//   - portLevelMtls: only with a selector that has labels ("portLevelMtls requires selector"), at
//     least one port when set, ports in 1-65535, each entry set;
//   - every mode one of UNSET, DISABLE, PERMISSIVE, STRICT.
//
// A policy with a selector in the root namespace is valid: Istio's validation accepts it (and
// its policy composition then ignores it).
func validatePeerAuthentication(fe *fieldErrs, pa *security.PeerAuthentication) {
	validatePolicySelector(fe, "spec.selector", pa.GetSelector())
	if m := pa.GetMtls(); m != nil {
		validateMTLSMode(fe, "spec.mtls.mode", m.GetMode())
	}
	ports := pa.GetPortLevelMtls()
	if ports == nil {
		return
	}
	const path = "spec.portLevelMtls"
	if len(ports) == 0 {
		fe.add(path, "portLevelMtls must list at least one port when it is set")
		return
	}
	if len(pa.GetSelector().GetMatchLabels()) == 0 {
		fe.add(path, "portLevelMtls requires selector: a policy without selector.matchLabels applies to a whole namespace (or the mesh) and cannot set port-level mTLS")
	}
	keys := make([]uint32, 0, len(ports))
	for p := range ports {
		keys = append(keys, p)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	for _, p := range keys {
		pp := path + "[" + strconv.Quote(strconv.FormatUint(uint64(p), 10)) + "]"
		validatePort(fe, pp, p)
		m := ports[p]
		if m == nil {
			fe.add(pp, "port-level mTLS settings must not be null")
			continue
		}
		validateMTLSMode(fe, pp+".mode", m.GetMode())
	}
}

// validateMTLSMode checks that m is one of the modes Istio defines.
func validateMTLSMode(fe *fieldErrs, path string, m security.PeerAuthentication_MutualTLS_Mode) {
	if _, ok := security.PeerAuthentication_MutualTLS_Mode_name[int32(m)]; !ok {
		fe.add(path, "invalid mTLS mode %d (valid: UNSET, DISABLE, PERMISSIVE, STRICT)", int32(m))
	}
}

// validatePolicySelector checks the workload selector of a security policy. Unlike a
// networking workloadSelector it may have no labels: the policy then applies to every workload of
// its namespace.
func validatePolicySelector(fe *fieldErrs, path string, s *typev1beta1.WorkloadSelector) {
	labels := s.GetMatchLabels()
	if len(labels) == 0 {
		return
	}
	path += ".matchLabels"
	if len(labels) > maxSelectorLabels {
		fe.add(path, "selector has %d labels, more than the limit of %d", len(labels), maxSelectorLabels)
		return
	}
	rest := make(map[string]string, len(labels))
	for _, k := range sortedStringKeys(labels) {
		v := labels[k]
		switch {
		case k == "":
			fe.add(path, "empty label key is not allowed in a selector")
		case strings.Contains(k, "*"):
			fe.add(path+"["+quoteShort(k)+"]", "wildcards are not allowed in selector label keys")
		case strings.Contains(v, "*"):
			fe.add(path+"["+quoteShort(k)+"]", "wildcards are not allowed in selector label values")
		default:
			rest[k] = v
		}
	}
	validateLabels(fe, path, rest)
}
