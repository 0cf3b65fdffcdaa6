package analysis

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	meshconfig "istio.io/api/mesh/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/registry"
)

// Workload is a workload the caller knows to exist (a connected proxy, say), for the analyzers
// that look at what selectors select.
type Workload struct {
	Name      string
	Namespace string
	Labels    map[string]string
}

// Options tune Analyze. The zero value analyzes everything but Gateway selectors.
type Options struct {
	// CheckGatewaySelectors reports Gateways whose selector matches no known workload (IST0101
	// "Referenced selector not found"). Known workloads are the snapshot's WorkloadEntries,
	// WorkloadGroups and service endpoints, and Workloads. Leave it off when gateway proxies may
	// run without being known there (straitd does not register routers).
	CheckGatewaySelectors bool
	// Workloads are workloads known besides those the snapshot defines.
	Workloads []Workload
	// Locator, when set, gives each message the line of its field in the file it came from.
	Locator Locator
}

// analyzer is one analysis over a snapshot; it appends its messages with report.
type analyzer struct {
	name string
	run  func(c *context)
}

// analyzers is every analysis Analyze runs, in order.
var analyzers = []analyzer{
	{"virtualservice.DestinationHosts", analyzeDestinationHosts},
	{"virtualservice.DestinationRules", analyzeDestinationSubsets},
	{"virtualservice.Gateways", analyzeVirtualServiceGateways},
	{"virtualservice.ConflictingMeshGatewayHosts", analyzeConflictingMeshHosts},
	{"destinationrule.UnknownHost", analyzeDestinationRuleHosts},
	{"destinationrule.Conflicts", analyzeConflictingDestinationRules},
	{"gateway.Selector", analyzeGatewaySelectors},
	{"sidecar.Selectors", analyzeSidecarSelectors},
	{"service.PortNames", analyzePortNames},
	{"deprecation.Fields", analyzeDeprecatedFields},
	{"telemetry.Providers", analyzeTelemetryProviders},
}

// context is what an analyzer reads and where it reports.
type context struct {
	snap      *mesh.Snapshot
	opts      Options
	workloads []Workload // known workloads, built on first use
	built     bool
	msgs      []Message
}

func (c *context) report(m Message) { c.msgs = append(c.msgs, m) }

// Analyze runs every analyzer over snap and returns their messages, sorted (see Sort). An
// analyzer that fails on some input (a bug) reports it as an error message about nothing rather
// than stopping the others; Analyze never panics. snap must not be nil.
func Analyze(snap *mesh.Snapshot, opts Options) []Message {
	c := &context{snap: snap, opts: opts}
	for _, a := range analyzers {
		runAnalyzer(c, a)
	}
	if opts.Locator != nil {
		for i := range c.msgs {
			m := &c.msgs[i]
			m.Line = opts.Locator.Line(m.Origin, config.Key{Kind: m.Resource.Kind, Namespace: m.Resource.Namespace, Name: m.Resource.Name}, m.Field)
		}
	}
	return Sort(c.msgs)
}

// AnalyzeObjects builds a snapshot of objs as straitd does (mesh.New) and analyzes it.
func AnalyzeObjects(meshCfg *meshconfig.MeshConfig, objs []*config.Object, opts Options) []Message {
	return Analyze(mesh.New(0, meshCfg, objs), opts)
}

func runAnalyzer(c *context, a analyzer) {
	defer func() {
		if r := recover(); r != nil {
			c.report(Message{Code: "IST0001", Name: "InternalError", Level: Error,
				Text: fmt.Sprintf("Internal error: analyzer %s failed: %v", a.name, r)})
		}
	}()
	a.run(c)
}

// objects returns the snapshot's objects of kind k whose spec is a T, oldest first.
func objects[T any](c *context, k config.Kind) []typed[T] {
	var out []typed[T]
	for _, o := range c.snap.Configs[k] {
		if spec, ok := o.Spec.(T); ok {
			out = append(out, typed[T]{o, spec})
		}
	}
	return out
}

// typed is an object with its spec as its concrete type.
type typed[T any] struct {
	obj  *config.Object
	spec T
}

// knownWorkloads returns the workloads the snapshot defines (WorkloadEntries, WorkloadGroup
// templates, ServiceEntry endpoints and registry endpoints) and those of Options.Workloads,
// one per namespace and name.
func (c *context) knownWorkloads() []Workload {
	if c.built {
		return c.workloads
	}
	c.built = true
	seen := map[string]bool{}
	add := func(w Workload) {
		k := w.Namespace + "/" + w.Name
		if w.Name == "" || seen[k] {
			return
		}
		seen[k] = true
		c.workloads = append(c.workloads, w)
	}
	for _, w := range c.opts.Workloads {
		add(w)
	}
	for _, t := range objects[*networking.WorkloadEntry](c, config.WorkloadEntry) {
		add(Workload{Name: t.obj.Name, Namespace: t.obj.Namespace, Labels: t.spec.GetLabels()})
	}
	for _, t := range objects[*networking.WorkloadGroup](c, config.WorkloadGroup) {
		add(Workload{Name: t.obj.Name, Namespace: t.obj.Namespace, Labels: t.spec.GetMetadata().GetLabels()})
	}
	for _, t := range objects[*networking.ServiceEntry](c, config.ServiceEntry) {
		for i, ep := range t.spec.GetEndpoints() {
			name := ep.GetAddress()
			if name == "" {
				name = fmt.Sprintf("%s-%d", t.obj.Name, i)
			}
			add(Workload{Name: name, Namespace: t.obj.Namespace, Labels: ep.GetLabels()})
		}
	}
	keys := make([]registry.ServiceKey, 0, len(c.snap.Endpoints))
	for k := range c.snap.Endpoints {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Namespace != keys[j].Namespace {
			return keys[i].Namespace < keys[j].Namespace
		}
		return keys[i].Hostname < keys[j].Hostname
	})
	for _, k := range keys {
		for _, ep := range c.snap.Endpoints[k] {
			name := ep.WorkloadName
			if name == "" {
				name = ep.Address
			}
			ns := ep.Namespace
			if ns == "" {
				ns = k.Namespace
			}
			add(Workload{Name: name, Namespace: ns, Labels: ep.Labels})
		}
	}
	return c.workloads
}

// SelectorString formats labels as Kubernetes prints a label selector: "k1=v1,k2=v2", sorted.
func SelectorString(labels map[string]string) string { return strings.Join(LabelPairs(labels), ",") }

// LabelPairs lists labels as "key=value", sorted by key.
func LabelPairs(labels map[string]string) []string {
	parts := make([]string, 0, len(labels))
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		parts = append(parts, k+"="+labels[k])
	}
	return parts
}

// fullName returns "namespace/name" of o.
func fullName(o *config.Object) string { return o.Namespace + "/" + o.Name }
