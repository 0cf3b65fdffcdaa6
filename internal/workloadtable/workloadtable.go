// Package workloadtable is the wire format of the workload table straitd sends each strait-proxy:
// every workload the registry knows, by address and by SPIFFE identity, with the labels Istio's
// standard metrics give a peer (workload, namespace, app, version, canonical service and
// revision, cluster). It is the contract between controlplane/translate (which builds and
// encodes it) and proxy/telemetry (which decodes and compiles it); docs/observability.md
// ("Peer metadata") explains why a table replaces Istio's peer metadata headers.
//
// Like the DNS name table (internal/nametable) it travels in internal/ecdstable's envelope: an
// ECDS resource named Name whose TypedStruct has type_url TypeURL and a Struct value:
//
//	{"trustDomains": ["cluster.local"],
//	 "workloads": [{"name": "reviews-v1", "namespace": "default", "serviceAccount": "reviews",
//	                "addresses": ["10.1.0.7"], "app": "reviews", "version": "v1",
//	                "canonicalService": "reviews", "canonicalRevision": "v1", "sidecar": true}]}
//
// Empty strings are left out. straitd sends it to proxies whose node metadata says WORKLOAD_TABLE=true
// (internal/node.MetaWorkloadTable); an Envoy never asks for it.
package workloadtable

import (
	"errors"
	"fmt"
	"net/netip"

	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/internal/ecdstable"
)

// Name is the resource name of the workload table.
const Name = "strait.workloads"

// TypeURL identifies the table inside its TypedStruct.
const TypeURL = "type.strait.io/strait.telemetry.v1.WorkloadTable"

// Limits on a table, so that a bad resource cannot make the proxy allocate without bound and
// the resource stays well inside gRPC's default 4 MiB message (about 250 bytes per workload).
// straitd keeps the first MaxWorkloads workloads (by namespace and name) and reports the rest.
const (
	MaxWorkloads    = 10000
	MaxAddresses    = 16 // per workload
	MaxTrustDomains = 16
	MaxValueLen     = 253 // bytes per string value (a DNS name's length)
)

// Istio's labels a workload's metric labels come from.
const (
	LabelApp               = "app"
	LabelVersion           = "version"
	LabelK8sName           = "app.kubernetes.io/name"
	LabelK8sVersion        = "app.kubernetes.io/version"
	LabelCanonicalName     = "service.istio.io/canonical-name"
	LabelCanonicalRevision = "service.istio.io/canonical-revision"
	LabelWorkloadName      = "service.istio.io/workload-name"
	LabelCluster           = "topology.istio.io/cluster"
)

// Workload is one entry of the table. Empty strings are unknown.
type Workload struct {
	Name, Namespace string
	// ServiceAccount with Namespace and a trust domain of the table is the workload's SPIFFE
	// identity spiffe://<td>/ns/<namespace>/sa/<serviceAccount>; empty: none.
	ServiceAccount string
	// Addresses are the workload's IP addresses.
	Addresses                                    []string
	App, Version                                 string
	CanonicalService, CanonicalRevision, Cluster string
	// Sidecar reports that the workload runs a sidecar (label security.istio.io/tlsMode=istio),
	// the only peers of which Istio learns labels on a plaintext connection.
	Sidecar bool
}

// Table is the workload table: the mesh's trust domain (first) and its aliases, and the
// workloads.
type Table struct {
	TrustDomains []string
	Workloads    []Workload
}

// Canonical returns a workload's canonical service and revision with Istio's fallbacks:
// service.istio.io/canonical-name, app.kubernetes.io/name, app, then the workload name;
// service.istio.io/canonical-revision, app.kubernetes.io/version, version, then "latest".
func Canonical(labels map[string]string, workloadName string) (service, revision string) {
	service = firstSet(labels[LabelCanonicalName], labels[LabelK8sName], labels[LabelApp], workloadName)
	revision = firstSet(labels[LabelCanonicalRevision], labels[LabelK8sVersion], labels[LabelVersion], "latest")
	return service, revision
}

func firstSet(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// stringFields are the string fields of a workload entry, by their key in the resource.
var stringFields = [...]struct {
	key string
	of  func(*Workload) *string
}{
	{"name", func(w *Workload) *string { return &w.Name }},
	{"namespace", func(w *Workload) *string { return &w.Namespace }},
	{"serviceAccount", func(w *Workload) *string { return &w.ServiceAccount }},
	{"app", func(w *Workload) *string { return &w.App }},
	{"version", func(w *Workload) *string { return &w.Version }},
	{"canonicalService", func(w *Workload) *string { return &w.CanonicalService }},
	{"canonicalRevision", func(w *Workload) *string { return &w.CanonicalRevision }},
	{"cluster", func(w *Workload) *string { return &w.Cluster }},
}

// Encode returns the table as the typed_config of its ECDS resource, named Name. Its encoding
// is deterministic for equal tables (the workloads keep their order). It refuses a table beyond
// the limits.
func Encode(t Table) (*anypb.Any, error) {
	if err := check(t); err != nil {
		return nil, fmt.Errorf("encoding workload table: %w", err)
	}
	ws := make([]*structpb.Value, len(t.Workloads))
	for i := range t.Workloads {
		w := &t.Workloads[i]
		f := make(map[string]*structpb.Value, len(stringFields)+2)
		for _, sf := range stringFields {
			if v := *sf.of(w); v != "" {
				f[sf.key] = structpb.NewStringValue(v)
			}
		}
		if len(w.Addresses) > 0 {
			f["addresses"] = ecdstable.StringValues(w.Addresses)
		}
		if w.Sidecar {
			f["sidecar"] = structpb.NewBoolValue(true)
		}
		ws[i] = structpb.NewStructValue(&structpb.Struct{Fields: f})
	}
	v := &structpb.Struct{Fields: map[string]*structpb.Value{
		"trustDomains": ecdstable.StringValues(t.TrustDomains),
		"workloads":    structpb.NewListValue(&structpb.ListValue{Values: ws}),
	}}
	a, err := ecdstable.Encode(TypeURL, v)
	if err != nil {
		return nil, fmt.Errorf("encoding workload table: %w", err)
	}
	return a, nil
}

// check applies the limits to a table.
func check(t Table) error {
	if len(t.TrustDomains) > MaxTrustDomains {
		return fmt.Errorf("trustDomains: %d, at most %d", len(t.TrustDomains), MaxTrustDomains)
	}
	if len(t.Workloads) > MaxWorkloads {
		return fmt.Errorf("workloads: %d, at most %d", len(t.Workloads), MaxWorkloads)
	}
	for i, w := range t.Workloads {
		if len(w.Addresses) > MaxAddresses {
			return fmt.Errorf("workloads[%d].addresses: %d, at most %d", i, len(w.Addresses), MaxAddresses)
		}
	}
	return nil
}

// Decode parses the workload table resource name (Name) with typed_config typedConfig. Every
// address must be an IP address and every string at most MaxValueLen bytes; unknown fields are
// refused, naming them.
func Decode(name string, typedConfig *anypb.Any) (Table, error) {
	v, err := ecdstable.Decode(name, typedConfig, Name, TypeURL)
	if err != nil {
		return Table{}, fmt.Errorf("workload table: %w", err)
	}
	var t Table
	for k, v := range v.GetFields() {
		switch k {
		case "trustDomains":
			tds, err := ecdstable.StringList(v, MaxTrustDomains, MaxValueLen)
			if err != nil {
				return Table{}, fmt.Errorf("workload table: trustDomains: %w", err)
			}
			t.TrustDomains = tds
		case "workloads":
			l := v.GetListValue()
			if l == nil {
				return Table{}, errors.New("workload table: workloads: want a list")
			}
			if n := len(l.GetValues()); n > MaxWorkloads {
				return Table{}, fmt.Errorf("workload table: workloads: %d, at most %d", n, MaxWorkloads)
			}
			t.Workloads = make([]Workload, len(l.GetValues()))
			for i, wv := range l.GetValues() {
				w, err := decodeWorkload(wv)
				if err != nil {
					return Table{}, fmt.Errorf("workload table: workloads[%d]%w", i, err)
				}
				t.Workloads[i] = w
			}
		default:
			return Table{}, fmt.Errorf("workload table: field %q is not supported", k)
		}
	}
	return t, nil
}

// decodeWorkload parses one entry; its errors start with ".field: " or ": ".
func decodeWorkload(v *structpb.Value) (Workload, error) {
	s := v.GetStructValue()
	if s == nil {
		return Workload{}, errors.New(": want an object")
	}
	var w Workload
	for k, f := range s.GetFields() {
		switch k {
		case "sidecar":
			b, ok := f.GetKind().(*structpb.Value_BoolValue)
			if !ok {
				return Workload{}, errors.New(".sidecar: want a bool")
			}
			w.Sidecar = b.BoolValue
			continue
		case "addresses":
			as, err := ecdstable.StringList(f, MaxAddresses, MaxValueLen)
			if err != nil {
				return Workload{}, fmt.Errorf(".addresses: %w", err)
			}
			for _, a := range as {
				if _, err := netip.ParseAddr(a); err != nil {
					return Workload{}, fmt.Errorf(".addresses: %w", err)
				}
			}
			w.Addresses = as
			continue
		}
		dst := stringField(&w, k)
		if dst == nil {
			return Workload{}, fmt.Errorf(".%s: not supported", k)
		}
		str, ok := f.GetKind().(*structpb.Value_StringValue)
		if !ok {
			return Workload{}, fmt.Errorf(".%s: want a string", k)
		}
		if len(str.StringValue) > MaxValueLen {
			return Workload{}, fmt.Errorf(".%s: %d bytes, at most %d", k, len(str.StringValue), MaxValueLen)
		}
		*dst = str.StringValue
	}
	return w, nil
}

// stringField returns the string field of w whose key is key, or nil.
func stringField(w *Workload, key string) *string {
	for _, sf := range stringFields {
		if sf.key == key {
			return sf.of(w)
		}
	}
	return nil
}
