package mesh

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"

	"github.com/cespare/xxhash/v2"
	"google.golang.org/protobuf/proto"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/registry"
)

// Fingerprints are 64-bit content hashes of a snapshot's inputs. Translation keeps its output
// from one snapshot to the next keyed by them: output whose inputs hash the same is reused
// (the same objects), so that an unchanged resource is neither rebuilt nor re-marshaled. Equal
// content always hashes equal; different content hashes differently except with negligible
// probability (xxhash64).

// fingerprints are computed once per snapshot, on first use.
type fingerprints struct {
	once      sync.Once
	services  map[ServiceKey]uint64     // service content, without endpoints
	endpoints map[ServiceKey]uint64     // the service's endpoints
	config    uint64                    // everything but endpoints, see ConfigHash
	mesh      uint64                    // MeshConfig
	objects   map[*config.Object]uint64 // every config object of the snapshot
}

func (s *Snapshot) fingerprints() *fingerprints {
	f := &s.prints
	f.once.Do(func() {
		f.services = make(map[ServiceKey]uint64, len(s.Services))
		f.endpoints = make(map[ServiceKey]uint64, len(s.Endpoints))
		f.objects = make(map[*config.Object]uint64)
		mh := xxhash.New()
		writeProto(mh, s.Mesh)
		f.mesh = mh.Sum64()
		h := xxhash.New()
		writeUint(h, f.mesh)
		for _, svc := range s.Services {
			sh := serviceHash(svc)
			f.services[svc.Key()] = sh
			writeUint(h, sh)
			f.endpoints[svc.Key()] = endpointsHash(s.Endpoints[svc.Key()])
		}
		kinds := make([]config.Kind, 0, len(s.Configs))
		for k := range s.Configs {
			kinds = append(kinds, k)
		}
		slices.Sort(kinds)
		for _, k := range kinds {
			for _, o := range s.Configs[k] {
				oh := objectHash(o)
				f.objects[o] = oh
				if k != config.ServiceEntry && k != config.WorkloadEntry {
					writeUint(h, oh) // theirs is in the services (hashed above) and the endpoints
				}
			}
		}
		f.config = h.Sum64()
	})
	return f
}

// ServiceHash returns the content hash of a service of this snapshot (every field, not its
// endpoints).
func (s *Snapshot) ServiceHash(svc *registry.Service) uint64 {
	if v, ok := s.fingerprints().services[svc.Key()]; ok {
		return v
	}
	return serviceHash(svc)
}

// EndpointsHash returns the content hash of the endpoints of the service with key k.
func (s *Snapshot) EndpointsHash(k ServiceKey) uint64 {
	if v, ok := s.fingerprints().endpoints[k]; ok {
		return v
	}
	return endpointsHash(s.Endpoints[k])
}

// ConfigHash returns a hash of everything in the snapshot except service endpoints: MeshConfig,
// every config object other than ServiceEntry and WorkloadEntry, and every service's content.
// Two snapshots with equal ConfigHash differ at most in endpoints, so output that does not read
// endpoints (outbound listeners and routes) is the same for both.
func (s *Snapshot) ConfigHash() uint64 { return s.fingerprints().config }

// MeshHash returns the content hash of the snapshot's MeshConfig.
func (s *Snapshot) MeshHash() uint64 { return s.fingerprints().mesh }

// ObjectHash returns the content hash of a config object: kind, metadata (name, namespace,
// labels, annotations, creation time) and spec. The snapshot's objects are hashed once, with the
// other fingerprints; another object is hashed on every call.
func (s *Snapshot) ObjectHash(o *config.Object) uint64 {
	if o == nil {
		return 0
	}
	if v, ok := s.fingerprints().objects[o]; ok {
		return v
	}
	return objectHash(o)
}

func objectHash(o *config.Object) uint64 {
	h := xxhash.New()
	writeString(h, string(o.Kind))
	writeString(h, o.Namespace)
	writeString(h, o.Name)
	writeMap(h, o.Labels)
	writeMap(h, o.Annotations)
	writeUint(h, uint64(o.CreationTimestamp.UnixNano()))
	if o.Spec != nil {
		writeProto(h, o.Spec)
	}
	return h.Sum64()
}

func serviceHash(svc *registry.Service) uint64 {
	h := xxhash.New()
	writeString(h, svc.Hostname)
	writeString(h, svc.Namespace)
	writeStrings(h, svc.Addresses)
	writeUint(h, uint64(len(svc.Ports)))
	for _, p := range svc.Ports {
		writeString(h, p.Name)
		writeUint(h, uint64(p.Number))
		writeString(h, string(p.Protocol))
		writeUint(h, uint64(p.TargetPort))
	}
	writeUint(h, uint64(svc.Resolution))
	writeBool(h, svc.MeshExternal)
	writeStrings(h, svc.ExportTo)
	writeMap(h, svc.Labels)
	writeBool(h, svc.Selector != nil)
	writeMap(h, svc.Selector)
	writeStrings(h, svc.SubjectAltNames)
	writeString(h, svc.Origin)
	writeUint(h, uint64(svc.Created.UnixNano()))
	return h.Sum64()
}

func endpointsHash(eps []*registry.Endpoint) uint64 {
	h := xxhash.New()
	writeUint(h, uint64(len(eps)))
	for _, ep := range eps {
		writeString(h, ep.Address)
		writeUint(h, uint64(ep.Port))
		writeString(h, ep.ServicePortName)
		writeMap(h, ep.Labels)
		writeString(h, ep.Locality)
		writeUint(h, uint64(ep.Weight))
		writeString(h, ep.ServiceAccount)
		writeString(h, ep.Network)
		writeBool(h, ep.Healthy)
		writeString(h, ep.WorkloadName)
		writeString(h, ep.Namespace)
	}
	return h.Sum64()
}

// The writers below frame every value with its length, so that concatenations cannot collide.

func writeString(h *xxhash.Digest, s string) {
	writeUint(h, uint64(len(s)))
	_, _ = h.WriteString(s)
}

func writeStrings(h *xxhash.Digest, ss []string) {
	writeUint(h, uint64(len(ss)))
	for _, s := range ss {
		writeString(h, s)
	}
}

func writeUint(h *xxhash.Digest, v uint64) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	_, _ = h.Write(b[:])
}

func writeBool(h *xxhash.Digest, v bool) {
	if v {
		writeUint(h, 1)
	} else {
		writeUint(h, 0)
	}
}

func writeMap(h *xxhash.Digest, m map[string]string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	writeUint(h, uint64(len(keys)))
	for _, k := range keys {
		writeString(h, k)
		writeString(h, m[k])
	}
}

// writeProto hashes a message's deterministic encoding; a message that cannot be marshaled
// hashes its type and address, so that it never equals another one.
func writeProto(h *xxhash.Digest, m proto.Message) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		writeString(h, fmt.Sprintf("unmarshalable %T %p", m, m))
		return
	}
	writeUint(h, uint64(len(b)))
	_, _ = h.Write(b)
}
