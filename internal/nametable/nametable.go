// Package nametable is the wire format of the DNS name table straitd sends each sidecar: the
// names the proxy may resolve (its Sidecar scope) and their addresses. It is the contract between
// controlplane/translate (which encodes it) and proxy/dns (which decodes it), as
// istio.networking.nds.v1.NameTable is between istiod and istio-agent.
//
// go-control-plane does not carry Istio's NDS type, so the table travels in internal/ecdstable's
// envelope (an ECDS resource, whose type the ADS server and its cache already know) named Name,
// whose TypedStruct has type_url TypeURL and a Struct value:
//
//	{"hosts": {"reviews.default.svc.cluster.local": {"ips": ["240.240.12.7"],
//	                                                "altHosts": ["reviews", "reviews.default", "reviews.default.svc"]}}}
package nametable

import (
	"fmt"
	"net/netip"
	"sort"

	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/internal/ecdstable"
)

// Name is the resource name of the name table, the only ECDS resource a sidecar asks for when
// its DNS proxy is on.
const Name = "strait.nametable"

// TypeURL identifies the table inside its TypedStruct.
const TypeURL = "type.strait.io/strait.dns.v1.NameTable"

// Limits on a decoded table, so that a bad resource cannot make the proxy allocate without bound.
const (
	MaxHosts    = 100000
	MaxIPs      = 64 // per host
	MaxAltHosts = 8  // per host
)

// Host is one name of the table with its addresses and the other names that resolve to them.
type Host struct {
	IPs      []string // IPv4 and IPv6 addresses
	AltHosts []string // short names valid from the proxy's namespace
}

// Table maps a fully qualified name (without trailing dot) to its entry.
type Table map[string]Host

// Encode returns the table as the typed_config of its ECDS resource, named Name. Its encoding
// is deterministic for equal tables.
func Encode(t Table) (*anypb.Any, error) {
	hosts := make(map[string]*structpb.Value, len(t))
	for name, h := range t {
		entry := map[string]*structpb.Value{"ips": ecdstable.StringValues(h.IPs)}
		if len(h.AltHosts) > 0 {
			entry["altHosts"] = ecdstable.StringValues(h.AltHosts)
		}
		hosts[name] = structpb.NewStructValue(&structpb.Struct{Fields: entry})
	}
	v := &structpb.Struct{Fields: map[string]*structpb.Value{"hosts": structpb.NewStructValue(&structpb.Struct{Fields: hosts})}}
	a, err := ecdstable.Encode(TypeURL, v)
	if err != nil {
		return nil, fmt.Errorf("encoding name table: %w", err)
	}
	return a, nil
}

// Decode parses the name table resource name (Name) with typed_config typedConfig. Every
// address must parse; names are returned as sent.
func Decode(name string, typedConfig *anypb.Any) (Table, error) {
	v, err := ecdstable.Decode(name, typedConfig, Name, TypeURL)
	if err != nil {
		return nil, fmt.Errorf("name table: %w", err)
	}
	hosts := v.GetFields()["hosts"].GetStructValue().GetFields()
	if len(hosts) > MaxHosts {
		return nil, fmt.Errorf("name table: %d hosts, at most %d", len(hosts), MaxHosts)
	}
	out := make(Table, len(hosts))
	names := make([]string, 0, len(hosts))
	for n := range hosts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		f := hosts[name].GetStructValue().GetFields()
		ips, err := ecdstable.StringList(f["ips"], MaxIPs, 0)
		if err != nil {
			return nil, fmt.Errorf("name table: host %q: ips: %w", name, err)
		}
		for _, ip := range ips {
			if _, err := netip.ParseAddr(ip); err != nil {
				return nil, fmt.Errorf("name table: host %q: %w", name, err)
			}
		}
		alts, err := ecdstable.StringList(f["altHosts"], MaxAltHosts, 0)
		if err != nil {
			return nil, fmt.Errorf("name table: host %q: altHosts: %w", name, err)
		}
		out[name] = Host{IPs: ips, AltHosts: alts}
	}
	return out, nil
}
