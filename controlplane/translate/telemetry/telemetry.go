// Package telemetry resolves which Telemetry resources and MeshConfig telemetry providers apply
// to a proxy, with Istio's inheritance (root namespace, then the workload's namespace, then the
// first Telemetry whose selector matches the workload; a later level overrides each field it
// sets), and builds what they mean for Envoy, as istiod does
// (https://istio.io/latest/docs/reference/config/telemetry/):
//
//   - tracing: the connection manager's tracing with the envoy.tracers.zipkin or
//     envoy.tracers.opentelemetry provider, sampling, Istio's tags and custom tags, per mode
//     (CLIENT: sidecar outbound and gateways; SERVER: sidecar inbound); with no Telemetry and
//     no default tracing provider, MeshConfig's legacy defaultConfig.tracing (zipkin) when
//     enableTracing is on and its collector is in the registry;
//   - access logging: envoy.access_loggers.file logs of the selected envoyFileAccessLog
//     providers, with a CEL filter (envoy.access_loggers.extension_filters.cel); with no
//     Telemetry and no default access log provider, MeshConfig's accessLogFile;
//   - metrics: the istio.stats filter (stats.PluginConfig) carrying metric overrides (dropped
//     metrics, tags added or removed, the TCP reporting interval), only where a Telemetry
//     overrides something: strait-proxy records Istio's standard metrics without it.
//
// Build is a pure function of its inputs and safe for concurrent use.
package telemetry

import (
	"cmp"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	meshconfig "istio.io/api/mesh/v1alpha1"
	tpb "istio.io/api/telemetry/v1alpha1"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/registry"
	"github.com/strait-mesh/strait/controlplane/translate/listener"
	"github.com/strait-mesh/strait/controlplane/translate/selection"
)

// Workload is the proxy whose telemetry is built.
type Workload struct {
	Namespace string
	Labels    map[string]string
	// Name is the workload (or pod) name, the last fallback of the canonical service.
	Name string
	// ServiceCluster is the proxy's xDS node cluster (Istio's service cluster,
	// "<canonical service>.<namespace>"), the OpenTelemetry service name; empty: derived.
	ServiceCluster string
	// ClusterID and MeshID are the node's CLUSTER_ID and MESH_ID metadata (Istio's tags).
	ClusterID, MeshID string
	// Router is true for gateways: every connection manager is a client's, and spans get an
	// upstream child span, as istiod configures gateways.
	Router bool
}

// Inputs are what telemetry is built from.
type Inputs struct {
	// Mesh is the mesh config (extensionProviders, defaultProviders, enableTracing,
	// defaultConfig.tracing, accessLogFile...).
	Mesh *meshconfig.MeshConfig
	// Telemetries are every Telemetry object.
	Telemetries []*config.Object
	// Services is the registry, where tracing collectors are looked up.
	Services []*registry.Service
	// DomainSuffix is the cluster DNS domain, for the legacy zipkin address's short names.
	DomainSuffix string
}

// Result is a workload's telemetry in both directions.
type Result struct {
	Client, Server listener.Telemetry
	// Errs are the problems found (a provider that is not defined, not of the right kind, or
	// whose service is not in the registry): that provider is left out.
	Errs []error
}

// Build returns the telemetry of workload w.
func Build(in Inputs, w Workload) Result {
	var r Result
	applied := applicable(in, w)
	modes := []struct {
		mode tpb.WorkloadMode
		out  *listener.Telemetry
	}{{tpb.WorkloadMode_CLIENT, &r.Client}, {tpb.WorkloadMode_SERVER, &r.Server}}
	if w.Router {
		modes = modes[:1]
	}
	seen := map[string]bool{}
	report := func(err error) {
		if err != nil && !seen[err.Error()] {
			seen[err.Error()] = true
			r.Errs = append(r.Errs, err)
		}
	}
	for _, m := range modes {
		m.out.Tracing, m.out.RequestID = buildTracing(in, w, applied, m.mode, report)
		m.out.AccessLogSet, m.out.AccessLog = buildAccessLogs(in, applied, m.mode, report)
		m.out.HTTPStats, m.out.TCPStats = buildStats(in, applied, m.mode, w.Router, report)
	}
	return r
}

// Key renders t for cache keys: two Telemetry values with the same key are the same.
func Key(t listener.Telemetry) string {
	var b strings.Builder
	for _, m := range []proto.Message{t.Tracing, t.RequestID, t.HTTPStats, t.TCPStats} {
		if m != nil && m.ProtoReflect().IsValid() {
			enc, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
			fmt.Fprintf(&b, "%x|", enc)
		} else {
			b.WriteString("-|")
		}
	}
	if t.AccessLogSet {
		b.WriteString("logs")
		for _, a := range t.AccessLog {
			enc, _ := proto.MarshalOptions{Deterministic: true}.Marshal(a)
			fmt.Fprintf(&b, "|%x", enc)
		}
	}
	return b.String()
}

// applied are the Telemetry specs that apply to a workload, in override order: root namespace,
// namespace, workload.
type applied struct {
	specs []*tpb.Telemetry
	names []string // "ns/name" of each, for messages
}

// owner names the applied Telemetries for messages: "Telemetry istio-system/mesh, default/a",
// or MeshConfig's defaultProviders when none applies.
func (a applied) owner() string {
	if len(a.names) == 0 {
		return "MeshConfig defaultProviders"
	}
	return "Telemetry " + strings.Join(a.names, ", ")
}

// applicable selects the Telemetries of w as istiod does: the root namespace's Telemetry without
// selector, then the workload namespace's Telemetry without selector, then the first (oldest)
// Telemetry of the workload's namespace whose selector matches its labels. Of several
// Telemetries without selector in one namespace (which Istio calls invalid), the oldest counts.
func applicable(in Inputs, w Workload) applied {
	root := in.Mesh.GetRootNamespace()
	// Selected, the root namespace's come first, each namespace's oldest first: the first of
	// each level counts (cmp.Or keeps it).
	var rootWide, nsWide, workload *config.Object
	for _, o := range selection.Select(in.Telemetries, w.Namespace, w.Labels, root, telemetries) {
		scoped := len(o.Spec.(*tpb.Telemetry).GetSelector().GetMatchLabels()) > 0
		switch {
		case !scoped && o.Namespace == root:
			rootWide = cmp.Or(rootWide, o)
		case !scoped:
			nsWide = cmp.Or(nsWide, o)
		case o.Namespace == w.Namespace: // one with selector in the root namespace selects only its own workloads
			workload = cmp.Or(workload, o)
		}
	}
	var out applied
	for _, o := range []*config.Object{rootWide, nsWide, workload} {
		if o != nil {
			out.specs = append(out.specs, o.Spec.(*tpb.Telemetry))
			out.names = append(out.names, o.Namespace+"/"+o.Name)
		}
	}
	return out
}

// telemetries selects Telemetries by selector.
var telemetries = selection.Kind{Selector: func(o *config.Object) (map[string]string, bool) {
	t, ok := o.Spec.(*tpb.Telemetry)
	return t.GetSelector().GetMatchLabels(), ok
}}

// lookupProvider finds an extension provider by name (case-insensitive, as istiod).
func lookupProvider(mc *meshconfig.MeshConfig, name string) *meshconfig.MeshConfig_ExtensionProvider {
	for _, p := range mc.GetExtensionProviders() {
		if strings.EqualFold(p.GetName(), name) {
			return p
		}
	}
	return nil
}

// providerNames returns the names of refs.
func providerNames(refs []*tpb.ProviderRef) []string {
	out := make([]string, 0, len(refs))
	for _, r := range refs {
		out = append(out, r.GetName())
	}
	return out
}

// appliesTo reports whether a selector's mode includes mode.
func appliesTo(selected, mode tpb.WorkloadMode) bool {
	return selected == tpb.WorkloadMode_CLIENT_AND_SERVER || selected == mode
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(fmt.Sprintf("encoding %T: %v", m, err)) // only fails for invalid messages we build
	}
	return a
}
