// Package envoyfilter applies Istio's EnvoyFilter patches to the listeners, route
// configurations and clusters the generator built for one proxy, with Istio's semantics:
//
//   - Selection: an EnvoyFilter in the proxy's namespace applies to it, and one in the mesh root
//     namespace to every proxy, when its workloadSelector (if any) matches the proxy's labels.
//     Patch sets are applied root namespace first, then by priority, creation time and name;
//     the patches of one set in the order of configPatches.
//   - Context: a sidecar's inbound listeners (virtualInbound, and explicit inbound listeners:
//     traffic direction INBOUND), their inline route configurations and its inbound clusters are
//     SIDECAR_INBOUND; its other listeners, route configurations and clusters SIDECAR_OUTBOUND;
//     everything of a router (gateway) is GATEWAY. ANY matches all of them.
//   - Matches, operations and MERGE (protobuf merge semantics, typed configs of the same type
//     merged as messages) as istio.io's EnvoyFilter reference describes them (see match.go and
//     apply.go).
//
// Patching never modifies its input: a resource a patch changes is cloned first, so the
// generator's shared objects stay untouched. A patched resource that strait-proxy would not
// accept (Checker) is refused: the proxy keeps the unpatched resource and the refusal names the
// EnvoyFilters and patches that changed it.
package envoyfilter

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/translate/selection"
)

// Checker says whether strait-proxy accepts a resource: nil, or the error its compiler would
// NACK the resource with. Package proxycheck implements it with strait-proxy's own compilers.
type Checker interface {
	Listener(*listenerv3.Listener) error
	RouteConfiguration(*routev3.RouteConfiguration) error
	Cluster(*clusterv3.Cluster) error
}

// Patch is one config patch of an EnvoyFilter, its value decoded.
type Patch struct {
	// Object is the EnvoyFilter the patch belongs to.
	Object *config.Object
	// Index is the patch's position in spec.configPatches.
	Index   int
	ApplyTo networking.EnvoyFilter_ApplyTo
	Match   *networking.EnvoyFilter_EnvoyConfigObjectMatch
	Op      networking.EnvoyFilter_Patch_Operation
	// Value is the decoded patch value (config.DecodeEnvoyPatch); nil for REMOVE.
	Value proto.Message

	version *regexp.Regexp // match.proxy.proxyVersion, compiled
}

// Context returns the patch's match context (ANY when no match is given).
func (p *Patch) Context() networking.EnvoyFilter_PatchContext { return p.Match.GetContext() }

// String names the patch for reports: "EnvoyFilter ns/name spec.configPatches[i]".
func (p *Patch) String() string {
	return fmt.Sprintf("EnvoyFilter %s/%s spec.configPatches[%d]", p.Object.Namespace, p.Object.Name, p.Index)
}

// Set is the patches of the EnvoyFilters that apply to one workload, in application order.
type Set struct {
	Patches []*Patch
	// Errors are the patches that could not be compiled (values that no longer decode, which
	// validation normally prevents); they are left out.
	Errors []error
}

// Select returns the EnvoyFilters of efs that apply to a workload in namespace ns with labels,
// in Istio's order: the root namespace's before the workload namespace's, then by priority,
// creation time and name.
func Select(efs []*config.Object, ns string, labels map[string]string, root string) []*config.Object {
	return selection.Select(efs, ns, labels, root, envoyFilters)
}

// envoyFilters selects EnvoyFilters by workloadSelector (those with targetRefs attach to
// gateways and waypoints) and orders each namespace's by priority.
var envoyFilters = selection.Kind{
	Selector: func(o *config.Object) (map[string]string, bool) {
		ef, ok := o.Spec.(*networking.EnvoyFilter)
		if !ok || len(ef.GetTargetRefs()) > 0 {
			return nil, false
		}
		return ef.GetWorkloadSelector().GetLabels(), true
	},
	Priority: func(o *config.Object) int32 { return o.Spec.(*networking.EnvoyFilter).GetPriority() },
}

// Compile decodes the patches of the selected EnvoyFilters (in the order Select returns them).
func Compile(efs []*config.Object) *Set {
	s := &Set{}
	for _, o := range efs {
		ef := o.Spec.(*networking.EnvoyFilter)
		for i, cp := range ef.GetConfigPatches() {
			p := &Patch{Object: o, Index: i, ApplyTo: cp.GetApplyTo(), Match: cp.GetMatch(), Op: cp.GetPatch().GetOperation()}
			if err := compilePatch(p, cp); err != nil {
				s.Errors = append(s.Errors, fmt.Errorf("%s: %w (the patch is left out)", p, err))
				continue
			}
			s.Patches = append(s.Patches, p)
		}
	}
	return s
}

func compilePatch(p *Patch, cp *networking.EnvoyFilter_EnvoyConfigObjectPatch) error {
	if config.EnvoyPatchMessage(p.ApplyTo) == nil {
		return fmt.Errorf("applyTo %s is not supported yet", p.ApplyTo)
	}
	if p.Op != networking.EnvoyFilter_Patch_REMOVE {
		v, err := config.DecodeEnvoyPatch(p.ApplyTo, cp.GetPatch().GetValue())
		if err != nil {
			return fmt.Errorf("patch.%w", err)
		}
		p.Value = v
	}
	if pv := p.Match.GetProxy().GetProxyVersion(); pv != "" {
		re, err := regexp.Compile(pv)
		if err != nil {
			return fmt.Errorf("match.proxy.proxyVersion: %w", err)
		}
		p.version = re
	}
	return nil
}

// Proxy is what a patch's proxy match reads: the proxy's Istio version (node metadata
// ISTIO_VERSION) and its node metadata's string values.
type Proxy struct {
	Version  string
	Metadata map[string]string
}

// ForProxy returns the patches of s whose proxy match (proxyVersion, metadata) the proxy meets,
// and a key naming that list (the EnvoyFilters' content, by hash, and the patches' indexes),
// equal for every proxy that gets the same patches.
func (s *Set) ForProxy(px Proxy, hash func(*config.Object) uint64) ([]*Patch, string) {
	var out []*Patch
	var key strings.Builder
	for _, p := range s.Patches {
		if !proxyMatch(p, px) {
			continue
		}
		out = append(out, p)
		key.WriteString(p.Object.Namespace)
		key.WriteByte('/')
		key.WriteString(p.Object.Name)
		key.WriteByte('@')
		key.WriteString(strconv.FormatUint(hash(p.Object), 16))
		key.WriteByte('#')
		key.WriteString(strconv.Itoa(p.Index))
		key.WriteByte(';')
	}
	return out, key.String()
}

// proxyMatch reports whether px meets p's match.proxy: Istio matches proxyVersion as a regular
// expression against the proxy's ISTIO_VERSION (a proxy without one matches no proxyVersion) and
// metadata as exact values.
func proxyMatch(p *Patch, px Proxy) bool {
	if p.version != nil && (px.Version == "" || !p.version.MatchString(px.Version)) {
		return false
	}
	for k, v := range p.Match.GetProxy().GetMetadata() {
		if got, ok := px.Metadata[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// contextMatch reports whether a patch with context want applies to a resource of context got.
func contextMatch(want, got networking.EnvoyFilter_PatchContext) bool {
	return want == networking.EnvoyFilter_ANY || want == got
}
