package translate

import (
	"net/netip"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/internal/nametable"
)

// nameTableKey identifies the name table of one Sidecar scope.
type nameTableKey struct{ scope string }

// nameTablePrint is what a name table is built from: the services (config) and the mesh config
// (export defaults). Auto-allocated addresses are a function of the config, so they are covered.
type nameTablePrint struct{ config, mesh uint64 }

// nameTableResult is a memoized name table resource list, or the error that prevents it.
type nameTableResult struct {
	list []types.Resource
	err  error
}

// nameTable returns the ECDS resource list holding the name table of a sidecar's scope: every
// in-scope service with an address (a ServiceEntry address or an auto-allocated VIP) under its
// hostname, with the short names a client in the scope's namespace may use. It is built once per
// scope and snapshot, and carried over to the next snapshot while the config is unchanged.
func (g *generator) nameTable(snap *mesh.Snapshot, sc *mesh.Scope) ([]types.Resource, error) {
	key := nameTableKey{scope: sc.Key}
	r := nameTableSlot.Get(snap.Cache(), key, func() *nameTableResult {
		print := nameTablePrint{config: snap.ConfigHash(), mesh: snap.MeshHash()}
		return g.c.nameTables.Get(snap.Version, key, print, func() *nameTableResult {
			tc, err := nametable.Encode(buildNameTable(sc, g.opts.DomainSuffix))
			if err != nil {
				return &nameTableResult{err: err}
			}
			return &nameTableResult{list: []types.Resource{&corev3.TypedExtensionConfig{Name: nametable.Name, TypedConfig: tc}}}
		})
	})
	return r.list, r.err
}

// buildNameTable lists a scope's services with their IP addresses (CIDRs and unspecified
// addresses are not answers; wildcard hosts and services without an address are left out, as in
// Istio's NDS). Kubernetes-style hosts name.ns.svc.<suffix> get the alternative names Istio's
// DNS proxy answers: "name" from the same namespace, "name.ns" and "name.ns.svc" from any.
func buildNameTable(sc *mesh.Scope, suffix string) nametable.Table {
	t := make(nametable.Table, len(sc.Services))
	for _, svc := range sc.Services {
		if strings.Contains(svc.Hostname, "*") {
			continue
		}
		if _, dup := t[svc.Hostname]; dup {
			continue
		}
		var ips []string
		for _, a := range svc.Addresses {
			ip, err := netip.ParseAddr(a)
			if err != nil || ip.IsUnspecified() {
				continue
			}
			ips = append(ips, ip.String())
		}
		if len(ips) == 0 {
			continue
		}
		if len(ips) > nametable.MaxIPs {
			ips = ips[:nametable.MaxIPs]
		}
		h := nametable.Host{IPs: ips}
		if rest, ok := strings.CutSuffix(svc.Hostname, ".svc."+suffix); ok {
			if name, ns, ok := strings.Cut(rest, "."); ok && name != "" && ns != "" && !strings.Contains(ns, ".") {
				if ns == sc.Namespace {
					h.AltHosts = append(h.AltHosts, name)
				}
				h.AltHosts = append(h.AltHosts, name+"."+ns, name+"."+ns+".svc")
			}
		}
		t[svc.Hostname] = h
	}
	return t
}
